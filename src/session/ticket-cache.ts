// The verified-ticket cache: ticket value → id, store key, log id, jar key and the record last
// opened, so a busy session does not verify, hash, derive or decrypt on every request.
import type { Cookie } from 'tough-cookie';
import { ByteCache } from '../util/byte-cache.js';
import { ownCopy, ownString } from '../util/buffers.js';
import { type LogHasher, storeKeyOf, tagOf } from './crypto.js';
import type { OpenedRecord, SessionMeta } from './record.js';
import type { TicketCodec } from './ticket.js';

/**
 * A verified ticket, remembered so a busy session does not pay for HMACs, hashes, key
 * derivation and decryption on every request.
 */
export interface KnownTicket {
  /** The ticket value this entry is cached under (undefined when not cached). */
  ticket?: string;
  sid: Buffer;
  key: string;
  logId: string;
  /** The jar key, derived on first use. */
  jarKey?: Buffer;
  /**
   * The record last opened for this id, with the version and authentication tag it was opened
   * from: a record that did not change since is not decrypted and parsed again. The tag is
   * compared too, so a different value under the same version (a restored backup, a hand
   * edit) is always opened and authenticated afresh.
   */
  opened?: { version: number; tag: string; record: OpenedRecord };
}
/**
 * The most memory the verified-ticket cache of one process keeps (estimated bytes, see
 * entryBytes): 12 MiB hold about 2 400 sessions of a five-cookie, ~560-byte jar, and keep the
 * process under 150 MB of RSS whatever the number of sessions (bench/README.md, "Memory per
 * session"). A session that is not in it costs one HMAC, hash, key derivation, decryption and
 * decoding on its next request, nothing else; a busy set of sessions that fits is served from
 * it as before.
 */
export const TICKET_CACHE_BYTES = 12 * 1024 * 1024;

/**
 * What one entry keeps alive, estimated from V8 heap measurements (node --expose-gc, heap used
 * and external memory after a full collection, over 5 000 entries; jars of 1 to 50 cookies of
 * 10 to 3 000 bytes), then raised by a fifth to what the bench's process showed: the entry with
 * its ticket, id, store key, log id and jar key ~1 100 bytes; an opened record ~400 bytes, plus
 * ~600 per cookie (a tough-cookie Cookie with its Dates), plus one byte per character of the
 * cookies' names, values, domains and paths (the strings, and the Cookie header remembered for
 * the jar).
 */
export const ENTRY_BYTES = 1100;
export const RECORD_BYTES = 400;
export const COOKIE_BYTES = 600;

/** The estimated bytes an entry keeps alive (see ENTRY_BYTES). */
export function entryBytes(known: KnownTicket): number {
  const opened = known.opened;
  if (opened === undefined) return ENTRY_BYTES;
  let chars = 0;
  for (const c of opened.record.cookies.values()) chars += c.key.length + c.value.length + (c.domain?.length ?? 0) + (c.path?.length ?? 0);
  return ENTRY_BYTES + RECORD_BYTES + opened.record.cookies.size * COOKIE_BYTES + chars;
}

/**
 * Verified tickets (ticket → id, store key, log id, jar key, last opened record), bounded by
 * bytes (TICKET_CACHE_BYTES), oldest written first out. Only tickets whose signature verified
 * are kept, so garbage cannot fill the cache with anything useful. A hit is the cache's own get.
 */
export class TicketCache {
  private readonly cache: ByteCache<string, KnownTicket>;

  constructor(
    private readonly codec: TicketCodec,
    private readonly hasher: LogHasher,
    budget = TICKET_CACHE_BYTES,
  ) {
    this.cache = new ByteCache(budget);
  }

  /** Entries held. */
  get size(): number {
    return this.cache.size;
  }

  /** Estimated bytes held. */
  get bytes(): number {
    return this.cache.bytes;
  }

  /** The entry of a ticket seen before (verified then), or undefined. */
  get(v: string): KnownTicket | undefined {
    return this.cache.get(v);
  }

  /** The cache entry of a ticket whose signature verifies (made and cached now), else undefined. */
  verified(v: string): KnownTicket | undefined {
    const sid = this.codec.verify(v);
    if (!sid) return undefined;
    // Cached: copies of their own, not slices that would keep a pooled chunk, or the whole
    // Cookie header the ticket was cut from, alive.
    const known = this.know(ownCopy(sid));
    const ticket = ownString(v);
    known.ticket = ticket;
    this.cache.set(ticket, known, ENTRY_BYTES);
    return known;
  }

  /** An uncached entry for a verified id. */
  know(sid: Buffer): KnownTicket {
    return { sid, key: storeKeyOf(sid), logId: this.hasher.hash(sid) };
  }

  /**
   * Caches what was just written under a ticket (new or cached), so that the next request with
   * it neither verifies, derives nor decrypts anything: the record is known by its version and tag.
   */
  remember(known: KnownTicket, version: number, data: Buffer, meta: SessionMeta, cookies: ReadonlyMap<string, Cookie>): void {
    let firstExpiry = Infinity;
    for (const cookie of cookies.values()) if (cookie.expires instanceof Date) firstExpiry = Math.min(firstExpiry, cookie.expires.getTime());
    this.opened(known, version, data, { meta: Object.freeze(meta), cookies, firstExpiry });
  }

  /**
   * Keeps `record`, opened from `data` at `version`, as the entry's last opened record (its
   * size is accounted for from now on, the entry becomes the newest).
   */
  opened(known: KnownTicket, version: number, data: Buffer, record: OpenedRecord): void {
    known.opened = { version, tag: tagOf(data), record };
    if (known.ticket !== undefined) this.cache.set(known.ticket, known, entryBytes(known));
  }

  /** Drops a dead id's cache entry (its opened jar with it): the cache holds live sessions. */
  forget(cached: KnownTicket | undefined): void {
    if (cached?.ticket !== undefined) this.cache.delete(cached.ticket);
  }
}
