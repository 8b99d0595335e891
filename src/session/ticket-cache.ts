// The verified-ticket cache: ticket value → id, store key, log id, jar key and the record last
// opened, so a busy session does not verify, hash, derive or decrypt on every request.
import type { Cookie } from 'tough-cookie';
import { FifoCache } from '../util/fifo-cache.js';
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
/** Most verified tickets cached per process. */
const TICKET_CACHE = 20_000;

/**
 * Verified tickets (ticket → id, store key, log id, jar key, last opened record). Only
 * tickets whose signature verified are kept, so garbage cannot fill the cache with anything
 * useful. A hit is the FIFO cache's own get.
 */
export class TicketCache extends FifoCache<string, KnownTicket> {
  constructor(
    private readonly codec: TicketCodec,
    private readonly hasher: LogHasher,
  ) {
    super(TICKET_CACHE);
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
    this.set(ticket, known);
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
    known.opened = { version, tag: tagOf(data), record: { meta: Object.freeze(meta), cookies, firstExpiry } };
    if (known.ticket !== undefined) this.set(known.ticket, known);
  }

  /** Drops a dead id's cache entry (its opened jar with it): the cache holds live sessions. */
  forget(cached: KnownTicket | undefined): void {
    if (cached?.ticket !== undefined) this.delete(cached.ticket);
  }
}
