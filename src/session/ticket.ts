// Tickets: the one cookie value the browser holds. `v1.<sid>.<mac>` where sid is 32 random
// bytes (base64url) and mac = HMAC-SHA256(secret, "v1.<sid>"). The first secret signs, every
// secret verifies, so secrets rotate without logging anyone out.
//
// An id's first LINEAGE_BYTES are its lineage: fresh for a browser's first session, copied by
// every id minted from an existing one (rotation at login, periodic renewal), so that the store
// can keep the keys of one chain of ids together (one Redis Cluster hash slot, store/lineage.ts).
// The other 29 bytes (232 bits) are always fresh.
import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';
import { pooledRandomBytes } from '../util/random.js';

export const SID_BYTES = 32;
/** The leading bytes of an id that the ids minted from it keep (its lineage). */
export const LINEAGE_BYTES = 3;
const PREFIX = 'v1.';
const B64_LEN = 43; // base64url of 32 bytes, no padding
const TICKET_RE = /^v1\.([A-Za-z0-9_-]{43})\.([A-Za-z0-9_-]{43})$/;

export type RandomSource = (size: number) => Buffer;

export class TicketCodec {
  private readonly keys: KeyObject[];
  private readonly random: RandomSource;

  constructor(secrets: readonly string[], random: RandomSource = pooledRandomBytes) {
    if (secrets.length === 0) throw new Error('at least one secret is required');
    this.keys = secrets.map((s) => createSecretKey(Buffer.from(s, 'utf8')));
    this.random = random;
  }

  /**
   * A new random session id and its signed ticket. With `from` (the id it replaces), the new id
   * keeps that id's lineage (its first LINEAGE_BYTES) and only the rest is fresh.
   */
  mint(from?: Buffer): { ticket: string; sid: Buffer } {
    let sid = this.random(SID_BYTES);
    if (sid.length !== SID_BYTES) throw new Error('random source returned the wrong size');
    if (from !== undefined) {
      if (from.length !== SID_BYTES) throw new Error('an id keeps the lineage of a whole id only');
      // A copy: the random source's Buffer is not ours to change.
      sid = Buffer.concat([from.subarray(0, LINEAGE_BYTES), sid.subarray(LINEAGE_BYTES)]);
    }
    return { ticket: this.sign(sid), sid };
  }

  /** The ticket of a known session id, signed with the first secret. */
  sign(sid: Buffer): string {
    const body = PREFIX + sid.toString('base64url');
    return `${body}.${this.mac(this.keys[0] as KeyObject, body).toString('base64url')}`;
  }

  /**
   * The session id of a well-formed ticket whose signature verifies under any secret,
   * otherwise undefined. Runs in time independent of where a signature differs.
   */
  verify(value: string): Buffer | undefined {
    if (value.length !== PREFIX.length + B64_LEN * 2 + 1) return undefined;
    const m = TICKET_RE.exec(value);
    if (!m) return undefined;
    const sidText = m[1] as string;
    const sid = Buffer.from(sidText, 'base64url');
    const given = Buffer.from(m[2] as string, 'base64url');
    // Reject non-canonical encodings (trailing bits), so one id has exactly one ticket.
    if (sid.length !== SID_BYTES || sid.toString('base64url') !== sidText) return undefined;
    if (given.length !== 32 || given.toString('base64url') !== m[2]) return undefined;
    const body = PREFIX + sidText;
    let ok = false;
    for (const key of this.keys) {
      // No early exit: every secret is tried.
      if (timingSafeEqual(this.mac(key, body), given)) ok = true;
    }
    return ok ? sid : undefined;
  }

  /**
   * Has the value the exact shape of a v1 ticket (signature not checked)? One that has the shape
   * but does not verify was crafted or tampered with; one without it is not a ticket at all.
   */
  static hasTicketShape(value: string): boolean {
    return value.length === PREFIX.length + B64_LEN * 2 + 1 && TICKET_RE.test(value);
  }

  private mac(key: KeyObject, body: string): Buffer {
    return createHmac('sha256', key).update(body).digest();
  }
}
