// Format 3 of a session record's plaintext (record.ts): binary, so that what Redis (or the
// memory store) keeps is close to what the app's cookies take. Pure.
//
//   0x03
//   varint created; zigzag deadline − created, touched − created, issued − created
//   str family; byte (1: a user follows, 2: a binding follows); [str user]; [str bind]
//   varint number of cookies, then each, in creation order:
//     byte  bits 0–2 flags (secure 1, httpOnly 2, hostOnly 4), bits 3–4 SameSite (0 none given,
//           1 strict, 2 lax, 3 none), bit 5: a domain and a path follow (else the previous
//           cookie's; the first cookie always has them)
//     str name; [str domain; str path]; str value
//     zigzag expires − created (0: a session cookie); zigzag creation − created
//
// A varint is 7 bits a byte, least significant first (numbers up to 2^53). A str is a varint
// (length << 2 | kind) and `length` bytes: kind 0 UTF-8 text; 1 the bytes of canonical base64url
// text (no padding), 2 of canonical padded base64, 3 of lower-case hex. A string is stored in
// one of the binary kinds only when encoding the bytes again gives exactly the same text, so
// every value reads back unchanged.
import type { Cookie } from 'tough-cookie';
import { cookieFromTuple, cookieTuple, type CookieTuple } from '../cookies/jar.js';
import type { OpenedRecord, SessionMeta } from './record.js';

/** The first byte of a format 3 record (a format 2 record, JSON, starts with `[`). */
export const BINARY = 0x03;

const HAS_USER = 1;
const HAS_BIND = 2;
const NEW_LOCATION = 0x20;

const TEXT = 0;
const BASE64URL = 1;
const BASE64 = 2;
const HEX = 3;
/** Shorter strings are kept as text: too little to gain. */
const MIN_PACKED = 8;
const HEX_RE = /^(?:[0-9a-f]{2})+$/;
const BASE64URL_RE = /^[A-Za-z0-9_-]+$/;
const BASE64_RE = /^[A-Za-z0-9+/]+={0,2}$/;

class Writer {
  buf: Buffer;
  pos = 0;
  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  byte(b: number): void {
    this.room(1);
    this.buf[this.pos++] = b;
  }

  varint(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`not a varint: ${n}`);
    this.room(8);
    while (n >= 0x80) {
      this.buf[this.pos++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    this.buf[this.pos++] = n;
  }

  zigzag(n: number): void {
    this.varint(n >= 0 ? n * 2 : -n * 2 - 1);
  }

  str(s: string): void {
    if (s.length >= MIN_PACKED) {
      const kind = HEX_RE.test(s) ? HEX : BASE64URL_RE.test(s) ? BASE64URL : BASE64_RE.test(s) ? BASE64 : TEXT;
      if (kind !== TEXT && this.packed(s, kind)) return;
    }
    const len = Buffer.byteLength(s, 'utf8');
    this.varint(len * 4 + TEXT);
    this.room(len);
    this.pos += this.buf.write(s, this.pos, 'utf8');
  }

  /**
   * Writes the bytes `s` encodes (hex, base64url or base64 text), when encoding them again gives
   * exactly `s`; else writes nothing and returns false.
   */
  private packed(s: string, kind: number): boolean {
    const encoding = kind === HEX ? 'hex' : kind === BASE64URL ? 'base64url' : 'base64';
    const start = this.pos;
    const n = kind === HEX ? s.length / 2 : kind === BASE64URL ? Math.floor((s.length * 3) / 4) : (s.length / 4) * 3 - (s.endsWith('==') ? 2 : s.endsWith('=') ? 1 : 0);
    if (!Number.isInteger(n)) return false;
    this.varint(n * 4 + kind);
    this.room(n);
    const at = this.pos;
    // Canonical text (checked without decoding and encoding again): its bytes give it back.
    if (canonical(s, kind) && this.buf.write(s, at, n, encoding) === n) {
      this.pos = at + n;
      return true;
    }
    this.pos = start;
    return false;
  }
}

/** Each base64 (and base64url) character's 6-bit value; -1 for others. */
const SEXTET = new Int8Array(128).fill(-1);
for (let i = 0; i < 64; i++) SEXTET['ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.charCodeAt(i)] = i;
SEXTET['-'.charCodeAt(0)] = 62;
SEXTET['_'.charCodeAt(0)] = 63;

/**
 * Is `s` (matched by its kind's pattern) the text its bytes encode to? Lower-case hex in pairs
 * always is. Base64 is when its length fits (no lone last character; padded to a multiple of 4
 * for `base64`) and the bits the last character holds beyond the last byte are zero: the
 * encoder writes them as zero, a decoder ignores them, so other bits would not come back.
 */
export function canonical(s: string, kind: number): boolean {
  if (kind === HEX) return true;
  let len = s.length;
  if (kind === BASE64) {
    if (len % 4 !== 0) return false;
    len -= s.endsWith('==') ? 2 : s.endsWith('=') ? 1 : 0;
  }
  const rest = len % 4;
  if (rest === 0) return true;
  if (rest === 1) return false;
  const last = SEXTET[s.charCodeAt(len - 1)] as number;
  return last >= 0 && (last & (rest === 2 ? 0x0f : 0x03)) === 0;
}

/** Format 3 of a record: `cookies` in the order they are to be kept. */
export function encodeBinary(meta: SessionMeta, cookies: readonly Cookie[]): Buffer {
  const base = meta.created;
  const w = new Writer(96 + cookies.length * 64 + cookies.reduce((n, c) => n + c.value.length, 0));
  w.byte(BINARY);
  w.varint(base);
  w.zigzag(meta.deadline - base);
  w.zigzag(meta.touched - base);
  w.zigzag(meta.issued - base);
  w.str(meta.family);
  w.byte((meta.user !== undefined ? HAS_USER : 0) | (meta.bind !== undefined ? HAS_BIND : 0));
  if (meta.user !== undefined) w.str(meta.user);
  if (meta.bind !== undefined) w.str(meta.bind);
  w.varint(cookies.length);
  let domain: string | undefined;
  let path: string | undefined;
  for (const cookie of cookies) {
    const [value, flags, expires, creation, sameSite] = cookieTuple(cookie, base);
    const d = cookie.domain ?? '';
    const p = cookie.path ?? '/';
    const moved = d !== domain || p !== path;
    w.byte(flags | (sameSite << 3) | (moved ? NEW_LOCATION : 0));
    w.str(cookie.key);
    if (moved) {
      w.str(d);
      w.str(p);
      domain = d;
      path = p;
    }
    w.str(value);
    w.zigzag(expires);
    w.zigzag(creation);
  }
  return w.buf.subarray(0, w.pos);
}

/** Thrown by the reader past the end or on a malformed number; decodeBinary gives undefined. */
class Malformed extends Error {}

class Reader {
  pos = 1;
  private readonly buf: Buffer;
  constructor(bytes: Uint8Array) {
    this.buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  }

  get done(): boolean {
    return this.pos === this.buf.length;
  }

  byte(): number {
    if (this.pos >= this.buf.length) throw new Malformed();
    return this.buf[this.pos++] as number;
  }

  varint(): number {
    let n = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      const b = this.byte();
      n += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (!Number.isSafeInteger(n)) throw new Malformed();
        return n;
      }
      scale *= 0x80;
    }
    throw new Malformed();
  }

  zigzag(): number {
    const z = this.varint();
    return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
  }

  str(): string {
    const head = this.varint();
    const kind = head % 4;
    const len = (head - kind) / 4;
    const end = this.pos + len;
    if (end > this.buf.length) throw new Malformed();
    const start = this.pos;
    this.pos = end;
    if (len === 0) return '';
    return this.buf.toString(kind === TEXT ? 'utf8' : kind === BASE64URL ? 'base64url' : kind === BASE64 ? 'base64' : 'hex', start, end);
  }
}

/** Reads format 3; undefined when malformed. */
export function decodeBinary(plain: Uint8Array): OpenedRecord | undefined {
  try {
    return read(new Reader(plain));
  } catch (err) {
    if (err instanceof Malformed) return undefined;
    throw err;
  }
}

function read(r: Reader): OpenedRecord | undefined {
  const created = r.varint();
  const deadline = created + r.zigzag();
  const touched = created + r.zigzag();
  const issued = created + r.zigzag();
  const family = r.str();
  if (family === '') return undefined;
  const has = r.byte();
  if (has > (HAS_USER | HAS_BIND)) return undefined;
  const meta: SessionMeta = { created, deadline, touched, family, issued };
  if (has & HAS_USER) meta.user = r.str();
  if (has & HAS_BIND) meta.bind = r.str();
  const count = r.varint();
  const cookies = new Map<string, Cookie>();
  let firstExpiry = Infinity;
  let domain: string | undefined;
  let path: string | undefined;
  for (let order = 0; order < count; order++) {
    const head = r.byte();
    if (head > 0x3f) return undefined;
    const name = r.str();
    if (head & NEW_LOCATION) {
      domain = r.str();
      path = r.str();
    }
    if (domain === undefined || path === undefined) return undefined;
    const value = r.str();
    const tuple: CookieTuple = [value, head & 7, r.zigzag(), r.zigzag(), (head >> 3) & 3];
    const field = `${name};${domain};${path}`;
    if (cookies.has(field)) return undefined;
    const cookie = cookieFromTuple(field, tuple, 0, created, order);
    if (!cookie) return undefined;
    cookies.set(field, cookie);
    if (cookie.expires instanceof Date) firstExpiry = Math.min(firstExpiry, cookie.expires.getTime());
  }
  if (!r.done) return undefined;
  return { meta: Object.freeze(meta), cookies, firstExpiry };
}
