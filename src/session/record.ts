// The plaintext of a sealed session record: the session's metadata and its jar. Pure: no crypto,
// no I/O (the service seals and opens it; the store sees only bytes). Two formats are read:
//
// Format 3 (written now): binary, its first byte 0x03 (see encodeRecord). Every number a
// varint, each string as UTF-8 or, when a value is canonical base64url, base64 or lower-case hex
// (most apps' session cookies and tokens), as the bytes it encodes: a third (base64) or half
// (hex) shorter; a cookie's domain and path are written once for a run of cookies that share
// them. A five-cookie jar of ~560 bytes of name=value takes ~170 bytes less than in format 2.
//
// Format 2 (written before; still read, so an upgrade logs nobody out): one JSON array, its
// first byte `[`:
//
//   [2, created, deadline, touched, issued, family, user|null, bind|null,
//    field, value, flags, expires, creation, sameSite,     ← one cookie (see cookieTuple)
//    field, …]
//
// Every time but `created` is relative to `created` (ms), and cookies are kept in the order they
// were created: short numbers, and no per-process counter stored, keep a record small (one
// Redis string of a few hundred bytes for a typical jar).
import type { Cookie } from 'tough-cookie';
import { byCreation, cookieFromTuple, cookieTuple } from '../cookies/jar.js';
import { BINARY, decodeBinary, encodeBinary } from './record-binary.js';

/** A session's metadata. Times are ms since the epoch. */
export interface SessionMeta {
  /** When the session (its family's first id) was created. */
  created: number;
  /** The absolute deadline: created + absoluteTimeout. Nothing outlives it, tombstones included. */
  deadline: number;
  /** The last sliding touch (write of the idle TTL). */
  touched: number;
  /** Family id: every id minted from one login shares it. */
  family: string;
  /** When this id was issued (a renewal issues a new id; created stays). */
  issued: number;
  /** The app's user id, when known. */
  user?: string;
  /** Keyed hash of what the session is bound to (user agent, address prefix), when binding is on. */
  bind?: string;
}

/** An opened record. Shared between requests (cached): never mutate it. */
export interface OpenedRecord {
  readonly meta: Readonly<SessionMeta>;
  /** field → cookie, expired ones included. */
  readonly cookies: ReadonlyMap<string, Cookie>;
  /** The earliest expiry of a cookie in it (Infinity when none expires). */
  readonly firstExpiry: number;
}

const FORMAT = 2;
const HEADER = 8;
const STRIDE = 6;

/**
 * The record's plaintext in format 2 (JSON), as written before format 3: kept to test that
 * such records are still read, and to go back to if ever needed.
 */
export function encodeRecordJson(meta: SessionMeta, cookies: ReadonlyMap<string, Cookie>): string {
  const base = meta.created;
  let s = `[${FORMAT},${base},${meta.deadline - base},${meta.touched - base},${meta.issued - base},${JSON.stringify(meta.family)},${
    meta.user === undefined ? 'null' : JSON.stringify(meta.user)
  },${meta.bind === undefined ? 'null' : JSON.stringify(meta.bind)}`;
  for (const [field, cookie] of inCreationOrder(cookies)) {
    const [value, flags, expires, creation, sameSite] = cookieTuple(cookie, base);
    s += `,${JSON.stringify(field)},${JSON.stringify(value)},${flags},${num(expires)},${num(creation)},${sameSite}`;
  }
  return `${s}]`;
}

/** A number as JSON writes it (a non-finite one as null, which decodeRecord refuses). */
function num(n: number): string {
  return Number.isFinite(n) ? String(n) : 'null';
}

/** The jar's entries in creation order (a jar is nearly always in it already: then no sort). */
function inCreationOrder(cookies: ReadonlyMap<string, Cookie>): Iterable<[string, Cookie]> {
  let previous: Cookie | undefined;
  for (const cookie of cookies.values()) {
    if (previous !== undefined && byCreation(previous, cookie) > 0) return [...cookies].sort((a, b) => byCreation(a[1], b[1]));
    previous = cookie;
  }
  return cookies;
}

/**
 * Reads a record's plaintext, in either format (bytes as openRecord gives them, or format 2's
 * text); undefined when it is not one coatcheck wrote.
 */
export function decodeRecord(plain: string | Uint8Array): OpenedRecord | undefined {
  if (typeof plain === 'string') return decodeJson(plain);
  if (plain[0] === BINARY) return decodeBinary(plain);
  return decodeJson(Buffer.from(plain.buffer, plain.byteOffset, plain.length).toString('utf8'));
}

function decodeJson(text: string): OpenedRecord | undefined {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!Array.isArray(data) || data.length < HEADER || (data.length - HEADER) % STRIDE !== 0 || data[0] !== FORMAT) return undefined;
  const [, created, deadline, touched, issued, family, user, bind] = data as unknown[];
  if (!isInt(created) || !isInt(deadline) || !isInt(touched) || !isInt(issued)) return undefined;
  if (typeof family !== 'string' || family === '') return undefined;
  if ((user !== null && typeof user !== 'string') || (bind !== null && typeof bind !== 'string')) return undefined;
  const meta: SessionMeta = { created, deadline: created + deadline, touched: created + touched, family, issued: created + issued };
  if (typeof user === 'string') meta.user = user;
  if (typeof bind === 'string') meta.bind = bind;
  const cookies = new Map<string, Cookie>();
  let firstExpiry = Infinity;
  for (let i = HEADER, order = 0; i < data.length; i += STRIDE, order++) {
    const field: unknown = data[i];
    if (typeof field !== 'string' || cookies.has(field)) return undefined;
    const cookie = cookieFromTuple(field, data, i + 1, created, order);
    if (!cookie) return undefined;
    cookies.set(field, cookie);
    if (cookie.expires instanceof Date) firstExpiry = Math.min(firstExpiry, cookie.expires.getTime());
  }
  return { meta: Object.freeze(meta), cookies, firstExpiry };
}

/**
 * The record's plaintext (format 3, binary): metadata, then the jar's cookies (field → cookie)
 * in creation order.
 */
export function encodeRecord(meta: SessionMeta, cookies: ReadonlyMap<string, Cookie>): Buffer {
  return encodeBinary(meta, Array.from(inCreationOrder(cookies), ([, cookie]) => cookie));
}

/**
 * What one cookie counts against `limits.maxJarBytes`: its name, domain, path and value, plus
 * a fixed allowance for its attributes (about what it takes in a record).
 */
export function jarBytesOf(field: string, cookie: Cookie): number {
  return field.length + cookie.value.length + ATTRIBUTE_BYTES;
}
const ATTRIBUTE_BYTES = 32;

function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v);
}
