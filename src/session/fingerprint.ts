// Keyed fingerprints of app cookies, for report-only mode (pipeline/report-only.ts): what a
// logout leaves in the store so that a later request presenting the same cookie can be
// recognized, without the store (or its logs) ever holding the cookie's value. Pure apart from
// the key derivation at construction.
import { createHmac, hkdfSync } from 'node:crypto';

/**
 * Values shorter than this are never fingerprinted: they cannot identify a session (`lang=en`,
 * `theme=dark`, a consent flag), and a value that many clients share would report every one of
 * them as a replay once any of them logged out.
 */
export const MIN_FINGERPRINT_VALUE_LENGTH = 16;

const SALT = Buffer.from('coatcheck/v1/fingerprint');
const INFO = Buffer.from('cookie-fingerprint');
/** 16 bytes of HMAC-SHA256, base64url: 22 characters, far from any collision between cookies. */
const FINGERPRINT_BYTES = 16;

/** May a cookie value be fingerprinted (long enough to name one session)? */
export function fingerprintable(value: string): boolean {
  return value.length >= MIN_FINGERPRINT_VALUE_LENGTH;
}

/**
 * HMAC-SHA256 of `name=value` under a key derived (HKDF) from each configured secret. Name and
 * value are taken together (a cookie name holds no `=`, so the input is unambiguous): the same
 * value under another name is another fingerprint. Recording uses the first secret's key; a
 * lookup tries every secret's, so a fingerprint recorded before a rotation (a new secret put
 * first, the old one kept) is still recognized.
 */
export class CookieFingerprinter {
  private readonly keys: readonly Buffer[];

  constructor(secrets: readonly string[]) {
    if (secrets.length === 0) throw new RangeError('at least one secret is required');
    this.keys = secrets.map((s) => Buffer.from(hkdfSync('sha256', Buffer.from(s, 'utf8'), SALT, INFO, 32)));
  }

  /** How many fingerprints `candidates` gives per cookie (one per configured secret). */
  get perCookie(): number {
    return this.keys.length;
  }

  /** The fingerprint a logout records for this cookie (the first secret's). */
  recorded(name: string, value: string): string {
    return this.digest(this.keys[0] as Buffer, name, value);
  }

  /** Every fingerprint this cookie may have been recorded under: the first secret's first. */
  candidates(name: string, value: string): string[] {
    return this.keys.map((k) => this.digest(k, name, value));
  }

  private digest(key: Buffer, name: string, value: string): string {
    // latin1: header strings are bytes as Node read them (one char per byte), so the input is exactly the bytes sent.
    return createHmac('sha256', key).update(`${name}=${value}`, 'latin1').digest().toString('base64url', 0, FINGERPRINT_BYTES);
  }
}
