// How the Redis session store lays sessions out in Redis: key names and value encodings. The
// Lua scripts (scripts.ts) write these values and the store (../redis.ts) reads them. Pure: no
// I/O, no logging.
//
// Keys (every one behind the configured prefix):
//   `${prefix}s:${hash}`    one string per session, so a session costs one key and a load is
//                           one GET (or one key of an MGET);
//   `${prefix}f:${family}`  a set of the session keys minted from one login, made when an id is
//                           first renewed (an id that was never renewed is its own family); it
//                           expires at the latest absolute deadline of its members.
//   `${prefix}p:${fingerprint}`  report-only mode: a cookie fingerprint seen at a logout (no hash
//                           tag, on a cluster too; fingerprints.ts).
// A store key is `<tag>.<hash>` (lineage.ts); on one server (or a sentinel-watched master) the
// tag is left out, so these are exactly the keys written before lineages existed and an upgrade
// keeps every session. (Two keys that differ by their tag alone would share a Redis key; they
// never occur: tag and hash are both taken from one session id.)
//
// On Redis Cluster every key carries its lineage as a hash tag, so that the keys one script
// touches share a slot (the family key takes the tag of the session key it is written with):
//   `${prefix}{${tag}}s:${hash}`   `${prefix}{${tag}}f:${family}`
// Keys of the empty lineage (no tag) all use the tag `{.}` ('.' is no base64url character).
//
// A session key's value; its first byte is its type. Numbers are decimal.
//   live record: `L<version>:` followed by the caller's opaque data (binary: the sealed jar).
//   tombstone:   `R<deadline>` (ms since the epoch, by the Redis server's clock).
//   alias:       a renewed id: `N<grace deadline>|<own end of life>|<family>|<successor>`.
import { lineageOf, untagged } from '../lineage.js';
import type { LoadResult } from '../types.js';

/** The key names of one store's data, behind its prefix. */
export class KeyLayout {
  /**
   * @param cluster Redis Cluster: every key in its lineage's hash tag. Otherwise the layout
   *   written before lineages existed.
   */
  constructor(
    private readonly prefix: string,
    private readonly cluster = false,
  ) {}

  /** The string that holds one session (a live record, a tombstone or an alias). */
  session(key: string): string {
    return this.cluster ? `${this.prefix}{${lineageOf(key) || '.'}}s:${untagged(key)}` : `${this.prefix}s:${untagged(key)}`;
  }

  /** The set of the session keys of one family, in the lineage of `key` (a session key it is written or revoked with). */
  family(family: string, key: string): string {
    return this.cluster ? `${this.prefix}{${lineageOf(key) || '.'}}f:${family}` : `${this.prefix}f:${family}`;
  }
}

/** Type bytes. */
const LIVE = 0x4c; // L
const TOMBSTONE = 0x52; // R
const ALIAS = 0x4e; // N
const COLON = 0x3a;
/** The header of a new record (version 1), built once. */
const FIRST_HEADER = Buffer.from('L1:', 'latin1');
/** A version has at most 16 digits: the colon of `L<version>:` is at this index at the latest. */
const LAST_COLON_INDEX = 17;

/** The value of a live record: `L<version>:<data>`. */
export function liveValue(version: number, data: Buffer): Buffer {
  const header = version === 1 ? FIRST_HEADER : Buffer.from(`L${version}:`, 'latin1');
  return Buffer.concat([header, data]);
}

/**
 * A value this store would not have written as it is: what it loads as, and what is wrong with
 * it (for a warning). A damaged live record loads as no session; a damaged tombstone or alias
 * loads as revoked, never as live.
 */
export interface Damaged {
  state: 'damaged';
  loadsAs: LoadResult;
  problem: string;
}

/** A value that is no session record at all; `what` says what it is. */
export function corrupt(what: string): Damaged {
  return { state: 'damaged', loadsAs: { state: 'none' }, problem: `corrupt entry (${what}); treating it as no session` };
}

/** What a session key's value (null: no key) loads as. A live record's data is not copied. */
export function decodeValue(value: Buffer | null): LoadResult | Damaged {
  if (value === null) return { state: 'none' };
  const type = value[0];
  if (type === LIVE) return decodeLive(value);
  if (type === TOMBSTONE) {
    const deadline = Number(value.toString('latin1', 1));
    // A tombstone always wins, even a damaged one: a revoked session never comes back.
    if (!Number.isFinite(deadline) || value.length === 1) {
      return { state: 'damaged', loadsAs: { state: 'revoked', deadline: 0 }, problem: 'malformed tombstone; treating the session as revoked' };
    }
    return { state: 'revoked', deadline };
  }
  if (type === ALIAS) return decodeAlias(value);
  return corrupt('a value that is neither a record, an alias nor a tombstone');
}

/** `L<version>:<data>`, read without copying the data. */
function decodeLive(value: Buffer): LoadResult | Damaged {
  let version = 0;
  let i = 1;
  for (; i < value.length && i < LAST_COLON_INDEX; i++) {
    const c = value[i] as number;
    if (c === COLON) break;
    if (c < 0x30 || c > 0x39) return corrupt('a live record with a malformed header');
    version = version * 10 + (c - 0x30);
  }
  if (i === 1 || value[i] !== COLON || version < 1 || i + 1 >= value.length) return corrupt('a live record with a malformed header');
  return { state: 'live', version, data: value.subarray(i + 1) };
}

/** `N<grace deadline>|<own end of life>|<family>|<successor>`. */
function decodeAlias(value: Buffer): LoadResult | Damaged {
  const parts = value.toString('latin1', 1).split('|');
  const graceUntil = Number(parts[0]);
  const deadline = Number(parts[1]);
  const family = parts[2];
  const successor = parts[3];
  if (parts.length !== 4 || !parts[0] || !Number.isFinite(graceUntil) || !parts[1] || !Number.isFinite(deadline) || !family || !successor) {
    // A damaged alias is treated as dead, never as live.
    return {
      state: 'damaged',
      loadsAs: { state: 'revoked', deadline: Number.isFinite(deadline) ? deadline : 0 },
      problem: 'malformed renewal alias; treating the session as revoked',
    };
  }
  return { state: 'renewed', successor, graceUntil, deadline, family };
}
