// Keys and encryption for data at rest. The store key is a hash of the session id (never the
// id itself), and each session's record (jar and metadata) is sealed with AES-256-GCM under a
// key derived from the id, so a copy of the store can neither be replayed as a ticket nor read.
import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync } from 'node:crypto';
import { randomView } from '../util/random.js';
import { LINEAGE_BYTES } from './ticket.js';

const IV_BYTES = 12;
const TAG_BYTES = 16;
const JAR_SALT = Buffer.from('coatcheck/v1/jar');
const JAR_INFO = Buffer.from('jar-encryption');

/**
 * The store key of a session id: `<lineage>.<hash>`. The hash is SHA-256 of the id, base64url:
 * one-way, so a key is no ticket. The lineage tag is the id's first LINEAGE_BYTES, base64url (4
 * characters), shared by every id minted from one browser's first session, so that a store can
 * keep them together (store/lineage.ts); it shows which keys descend from one first session,
 * and nothing of the other 232 bits of the id.
 */
export function storeKeyOf(sid: Buffer): string {
  return `${sid.toString('base64url', 0, LINEAGE_BYTES)}.${createHash('sha256').update(sid).digest('base64url')}`;
}

/** The 256-bit AES key that seals one session's jar. */
export function jarKeyOf(sid: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', sid, JAR_SALT, JAR_INFO, 32));
}

/** Seals `plaintext`, bound to `field` (as additional data) so values cannot be swapped between fields. */
export function seal(key: Buffer, field: string, plaintext: string): string {
  // The IV is a view of the random pool, used at once: copied into the output by concat below.
  const iv = randomView(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(field, 'utf8'));
  const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return Buffer.concat([iv, ct, cipher.getAuthTag()]).toString('base64url');
}

/** Opens a sealed value; undefined when it was tampered with, moved or is not ours. */
export function open(key: Buffer, field: string, sealed: string): string | undefined {
  const buf = Buffer.from(sealed, 'base64url');
  if (buf.length < IV_BYTES + TAG_BYTES) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, buf.subarray(0, IV_BYTES));
    decipher.setAAD(Buffer.from(field, 'utf8'));
    decipher.setAuthTag(buf.subarray(buf.length - TAG_BYTES));
    return Buffer.concat([decipher.update(buf.subarray(IV_BYTES, buf.length - TAG_BYTES)), decipher.final()]).toString('utf8');
  } catch {
    return undefined;
  }
}

/** Additional data of a sealed session record. */
const RECORD_AAD = Buffer.from('coatcheck/v2/record');

/** Seals a session record (its jar and metadata; text as UTF-8) as bytes: IV, ciphertext, tag. */
export function sealRecord(key: Buffer, plaintext: string | Uint8Array): Buffer {
  const iv = randomView(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(RECORD_AAD);
  const ct = typeof plaintext === 'string' ? cipher.update(plaintext, 'utf8') : cipher.update(plaintext);
  return Buffer.concat([iv, ct, cipher.final(), cipher.getAuthTag()]);
}

/**
 * Opens a sealed record: its plaintext bytes (record.ts decodes either format); undefined when
 * it was tampered with, moved from another session or is not ours.
 */
export function openRecord(key: Buffer, sealed: Buffer): Buffer | undefined {
  if (sealed.length < IV_BYTES + TAG_BYTES) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, IV_BYTES));
    decipher.setAAD(RECORD_AAD);
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    const head = decipher.update(sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES));
    const tail = decipher.final();
    return tail.length === 0 ? head : Buffer.concat([head, tail]);
  } catch {
    return undefined;
  }
}

/** Does `sealed` end with this authentication tag (from tagOf)? A cheap identity check of a sealed record. */
export function hasTag(sealed: Buffer, tag: string): boolean {
  return sealed.length >= TAG_BYTES && sealed.toString('latin1', sealed.length - TAG_BYTES) === tag;
}

/**
 * A sealed record's authentication tag, as a 16-character latin1 string: kept in a cache, it
 * pins no Buffer memory.
 */
export function tagOf(sealed: Buffer): string {
  return sealed.toString('latin1', sealed.length - TAG_BYTES);
}

/** Short keyed hashes of ids for logs: stable per process secret, useless to an attacker. */
export class LogHasher {
  private readonly key: Buffer;
  constructor(secret: string) {
    this.key = Buffer.from(hkdfSync('sha256', Buffer.from(secret, 'utf8'), Buffer.from('coatcheck/v1/log'), Buffer.from('log-id'), 32));
  }
  hash(id: Buffer | string): string {
    return createHmac('sha256', this.key).update(id).digest('base64url').slice(0, 12);
  }
}
