// The embedded session store: one process, nothing shared, nothing durable.
//
// Time comes only from the injected clock: an entry is expired when clock() >= its expiry,
// and is removed lazily when touched plus by a small incremental sweep on every write (so
// memory stays bounded without timers). The size bound (live records + tombstones) is kept by
// evicting the least-recently-used entry, tombstones first, with a rate-limited warning.
//
// Every method runs synchronously inside its async body, so each one is atomic: the same
// guarantees the Redis store gets from its Lua scripts.
import type { Clock } from '../clock.js';
import { flat, MemoryDirectory } from './memory-directory.js';
import { StoreUnavailableError } from '../errors.js';
import type { Logger } from '../log.js';
import { checkCreate, checkRotate, checkTtl, checkUpdate } from './checks.js';
import { lineageOf } from './lineage.js';
import { InProcessFeed } from './revocations.js';
import type { LoadResult, RenewalAlias, SessionStore, WriteResult } from './types.js';

export interface MemoryStoreOptions {
  clock: Clock;
  /** Most entries (live records + tombstones) kept at once; the least recently used go first. */
  maxSessions: number;
  logger: Logger;
}

interface LiveEntry {
  /**
   * The record's bytes as a latin1 string (one character per byte): a string costs its length
   * and a 16-byte header, a Buffer of its own ~200 bytes more (its ArrayBuffer, backing store
   * and their bookkeeping), measured with the V8 heap statistics.
   */
  data: string;
  version: number;
  expiresAt: number;
}

interface Tombstone {
  deadline: number;
  expiresAt: number;
  /** Set when the id was renewed rather than revoked. */
  alias?: { successor: string; graceUntil: number; family: string };
}

interface Family {
  keys: Set<string>;
  expiresAt: number;
}

/** Entries examined per map by the incremental sweep on every write. */
const SWEEP_STEPS = 4;
/** At most one eviction warning per this many ms (by the injected clock). */
const EVICTION_WARN_INTERVAL_MS = 10_000;

export class MemoryStore implements SessionStore {
  readonly kind = 'memory' as const;

  private readonly clock: Clock;
  private readonly maxSessions: number;
  private readonly log: Logger;
  // Live records and tombstones are kept in least-recently-used-first order (re-inserted on
  // every use); the families map is not reordered.
  private readonly live = new Map<string, LiveEntry>();
  private readonly tombs = new Map<string, Tombstone>();
  /** Family indexes by familyId(): one per lineage, as on Redis Cluster. */
  private readonly families = new Map<string, Family>();
  private liveCursor: Iterator<[string, LiveEntry]> | undefined;
  private tombCursor: Iterator<[string, Tombstone]> | undefined;
  private familyCursor: Iterator<[string, Family]> | undefined;
  private closed = false;
  /** Users' sessions, log ids, the revoke-all time (memory-directory.ts). */
  readonly directory: MemoryDirectory;
  /** Revocations reach this process's connections only: there is no other process. */
  readonly revocationFeed: InProcessFeed;
  private lastEvictionWarn = -Infinity;
  private evictedSinceWarn = 0;

  constructor(options: MemoryStoreOptions) {
    if (!Number.isSafeInteger(options.maxSessions) || options.maxSessions < 1) {
      throw new RangeError(`maxSessions must be a positive integer, got ${options.maxSessions}`);
    }
    this.clock = options.clock;
    this.maxSessions = options.maxSessions;
    this.log = options.logger.child({ component: 'store', store: 'memory' });
    this.directory = new MemoryDirectory(
      options.clock,
      () => this.closed,
      () => this.revocationFeed.announce({ keys: [], all: true }),
    );
    this.revocationFeed = new InProcessFeed(this.log);
  }

  /** Entries currently held (live records + tombstones), expired ones not yet swept included. */
  get size(): number {
    return this.live.size + this.tombs.size;
  }

  async start(): Promise<void> {
    this.assertOpen();
    this.log.warn(
      { maxSessions: this.maxSessions },
      'memory session store: sessions are neither shared between processes nor durable (a restart logs everyone out); use store.kind "redis" for more than one process',
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    this.live.clear();
    this.tombs.clear();
    this.families.clear();
    this.fingerprints.clear();
    this.liveCursor = undefined;
    this.tombCursor = undefined;
    this.familyCursor = undefined;
  }

  async ping(): Promise<void> {
    this.assertOpen();
  }

  /** In the process: always available until closed. */
  available(): boolean {
    return !this.closed;
  }

  async load(key: string): Promise<LoadResult> {
    this.assertOpen();
    const now = this.clock();
    const entry = this.getLive(key, now);
    if (entry) {
      this.touchLru(this.live, key, entry);
      // A copy: what a caller does with the Buffer it gets cannot reach the stored record.
      return { state: 'live', version: entry.version, data: Buffer.from(entry.data, 'latin1') };
    }
    const tomb = this.getTomb(key, now);
    if (tomb) {
      this.touchLru(this.tombs, key, tomb);
      if (tomb.alias) {
        const { successor, graceUntil, family } = tomb.alias;
        return { state: 'renewed', successor, graceUntil, deadline: tomb.deadline, family };
      }
      return { state: 'revoked', deadline: tomb.deadline };
    }
    return { state: 'none' };
  }

  async create(key: string, data: Buffer, ttlMs: number): Promise<boolean> {
    this.assertOpen();
    checkCreate(data, ttlMs);
    const now = this.clock();
    if (this.occupied(key, now)) return false;
    this.makeRoom(now, 1);
    this.live.set(flat(key), { data: data.toString('latin1'), version: 1, expiresAt: now + ttlMs });
    this.sweep(now);
    return true;
  }

  async update(key: string, version: number, data: Buffer, ttlMs: number): Promise<WriteResult> {
    this.assertOpen();
    checkUpdate(version, data, ttlMs);
    const now = this.clock();
    const entry = this.getLive(key, now);
    let result: WriteResult = 'gone';
    if (entry && entry.version !== version) result = 'conflict';
    else if (entry) {
      entry.data = data.toString('latin1');
      entry.version = version + 1;
      entry.expiresAt = now + ttlMs;
      this.touchLru(this.live, key, entry);
      result = 'ok';
    }
    this.sweep(now);
    return result;
  }

  async revoke(key: string, tombstoneTtlMs: number): Promise<boolean> {
    this.assertOpen();
    checkTtl(tombstoneTtlMs, 'tombstoneTtlMs');
    const now = this.clock();
    const wasLive = this.getLive(key, now) !== undefined;
    this.live.delete(key);
    this.tombs.delete(key);
    this.makeRoom(now, 1);
    this.tombs.set(key, { deadline: now + tombstoneTtlMs, expiresAt: now + tombstoneTtlMs });
    this.sweep(now);
    this.revocationFeed.announce({ keys: [key] });
    return wasLive;
  }

  async rotate(
    oldKey: string,
    oldVersion: number,
    oldTombstoneTtlMs: number,
    newKey: string,
    data: Buffer,
    ttlMs: number,
    alias?: RenewalAlias,
  ): Promise<WriteResult> {
    this.assertOpen();
    checkRotate(oldKey, oldVersion, oldTombstoneTtlMs, newKey, data, ttlMs, alias);
    const now = this.clock();
    const old = this.getLive(oldKey, now);
    if (!old || this.occupied(newKey, now)) {
      this.sweep(now);
      return 'gone';
    }
    if (old.version !== oldVersion) {
      this.sweep(now);
      return 'conflict';
    }
    // The old record turns into a tombstone (same count); the new record needs one slot.
    // (With maxSessions 1 that slot is the fresh tombstone's own: it is evicted.)
    this.live.delete(oldKey);
    const tomb: Tombstone = { deadline: now + oldTombstoneTtlMs, expiresAt: now + oldTombstoneTtlMs };
    if (alias) tomb.alias = { successor: alias.successor, graceUntil: alias.graceUntil, family: alias.family };
    this.tombs.set(oldKey, tomb);
    this.makeRoom(now, 1);
    this.live.set(flat(newKey), { data: data.toString('latin1'), version: 1, expiresAt: now + ttlMs });
    if (alias) this.join(familyId(alias.family, oldKey), alias.familyDeadline, oldKey, newKey);
    this.sweep(now);
    // A rotation at login ends the old id for good; a renewal (alias) keeps it one session.
    if (!alias) this.revocationFeed.announce({ keys: [oldKey] });
    return 'ok';
  }

  async revokeFamily(family: string, key: string, tombstoneTtlMs: number): Promise<number> {
    this.assertOpen();
    checkTtl(tombstoneTtlMs, 'tombstoneTtlMs');
    const now = this.clock();
    const id = familyId(family, key);
    const fam = this.families.get(id);
    this.families.delete(id);
    let revoked = 0;
    const members = fam && now < fam.expiresAt ? fam.keys : new Set<string>();
    for (const member of members) {
      if (member === key) continue;
      const wasLive = this.getLive(member, now) !== undefined;
      const tomb = this.getTomb(member, now);
      if (!wasLive && !tomb?.alias) continue;
      if (wasLive) revoked += 1;
      this.live.delete(member);
      this.tombs.set(member, { deadline: now + tombstoneTtlMs, expiresAt: now + tombstoneTtlMs });
    }
    // `key` always ends as a tombstone, whatever it held.
    if (this.getLive(key, now) !== undefined) revoked += 1;
    this.live.delete(key);
    this.tombs.delete(key);
    this.makeRoom(now, 1);
    this.tombs.set(key, { deadline: now + tombstoneTtlMs, expiresAt: now + tombstoneTtlMs });
    this.sweep(now);
    this.revocationFeed.announce({ family, keys: [key] });
    return revoked;
  }

  // ---- internals ----

  /** Adds keys to a family (by familyId); the family lives until its latest member's deadline. */
  private join(id: string, deadline: number, ...keys: string[]): void {
    const fam = this.families.get(id);
    if (fam) {
      for (const k of keys) fam.keys.add(k);
      fam.expiresAt = Math.max(fam.expiresAt, deadline);
    } else {
      this.families.set(id, { keys: new Set(keys), expiresAt: deadline });
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new StoreUnavailableError('memory session store is closed');
  }

  /** The live entry, removing it first when it has expired. */
  private getLive(key: string, now: number): LiveEntry | undefined {
    const entry = this.live.get(key);
    if (entry && now >= entry.expiresAt) {
      this.live.delete(key);
      return undefined;
    }
    return entry;
  }

  private getTomb(key: string, now: number): Tombstone | undefined {
    const tomb = this.tombs.get(key);
    if (tomb && now >= tomb.expiresAt) {
      this.tombs.delete(key);
      return undefined;
    }
    return tomb;
  }

  private occupied(key: string, now: number): boolean {
    return this.getLive(key, now) !== undefined || this.getTomb(key, now) !== undefined;
  }

  /** Moves an entry to the most-recently-used end. */
  private touchLru<V>(map: Map<string, V>, key: string, value: V): void {
    map.delete(key);
    map.set(key, value);
  }

  /**
   * Frees entries until `slots` more fit: expired ones first (no warning), then the least
   * recently used tombstone, then the least recently used live record (with a warning).
   */
  private makeRoom(now: number, slots: number): void {
    let evicted = 0;
    while (this.size + slots > this.maxSessions) {
      const tomb = firstEntry(this.tombs);
      if (tomb && now >= tomb[1].expiresAt) {
        this.tombs.delete(tomb[0]);
        continue;
      }
      const live = firstEntry(this.live);
      if (live && now >= live[1].expiresAt) {
        this.live.delete(live[0]);
        continue;
      }
      if (tomb) {
        this.tombs.delete(tomb[0]);
      } else if (live) {
        this.live.delete(live[0]);
      } else {
        break; // empty: nothing left to free
      }
      evicted += 1;
    }
    if (evicted > 0) this.noteEvictions(now, evicted);
  }

  private noteEvictions(now: number, count: number): void {
    this.evictedSinceWarn += count;
    if (now - this.lastEvictionWarn < EVICTION_WARN_INTERVAL_MS) return;
    this.log.warn(
      { evicted: this.evictedSinceWarn, maxSessions: this.maxSessions },
      'memory session store is full: evicted the least recently used sessions (raise store.maxSessions or use redis)',
    );
    this.lastEvictionWarn = now;
    this.evictedSinceWarn = 0;
  }

  /** Examines a few entries of each map from a cursor that survives between writes. */
  private sweep(now: number): void {
    this.liveCursor = sweepSome(this.live, this.liveCursor, now);
    this.tombCursor = sweepSome(this.tombs, this.tombCursor, now);
    this.familyCursor = sweepSome(this.families, this.familyCursor, now);
  }

  // ---- report-only mode: cookie fingerprints (types.ts FingerprintStore) ----

  /**
   * Fingerprints by their token, oldest first: their own map, bounded by maxSessions on its own
   * (a full map drops the oldest record first: a replay of it then goes unreported, nothing
   * else changes). Swept a few entries per write, like the sessions.
   */
  private readonly fingerprints = new Map<string, { at: number; expiresAt: number }>();
  private fingerprintCursor: Iterator<[string, { at: number; expiresAt: number }]> | undefined;

  async recordFingerprints(fingerprints: readonly string[], at: number, ttlMs: number): Promise<Array<number | null>> {
    this.assertOpen();
    checkTtl(ttlMs, 'ttlMs');
    const now = this.clock();
    const before = fingerprints.map((fp) => this.fingerprintAt(fp, now));
    for (const fp of fingerprints) {
      this.fingerprints.delete(fp);
      while (this.fingerprints.size >= this.maxSessions) {
        const oldest = firstEntry(this.fingerprints);
        if (oldest === undefined) break;
        this.fingerprints.delete(oldest[0]);
      }
      this.fingerprints.set(fp, { at, expiresAt: now + ttlMs });
    }
    this.fingerprintCursor = sweepSome(this.fingerprints, this.fingerprintCursor, now);
    return before;
  }

  async findFingerprints(fingerprints: readonly string[]): Promise<Array<number | null>> {
    this.assertOpen();
    const now = this.clock();
    return fingerprints.map((fp) => this.fingerprintAt(fp, now));
  }

  /** When `fp` was recorded, removing it first when it has expired. */
  private fingerprintAt(fp: string, now: number): number | null {
    const entry = this.fingerprints.get(fp);
    if (entry === undefined) return null;
    if (now >= entry.expiresAt) {
      this.fingerprints.delete(fp);
      return null;
    }
    return entry.at;
  }
}

function sweepSome<V extends { expiresAt: number }>(
  map: Map<string, V>,
  cursor: Iterator<[string, V]> | undefined,
  now: number,
): Iterator<[string, V]> | undefined {
  if (map.size === 0) return undefined;
  let it = cursor ?? map.entries();
  for (let i = 0; i < SWEEP_STEPS; i++) {
    const next = it.next();
    if (next.done) {
      // A finished Map iterator stays finished: start the next pass at the front.
      it = map.entries();
      continue;
    }
    const [key, value] = next.value;
    // Deleting the entry just returned is safe for a live Map iterator.
    if (now >= value.expiresAt) map.delete(key);
  }
  return it;
}

/**
 * A family's index is its id within the lineage of the keys written with it (`|` is in neither):
 * revokeFamily() reaches the members of its key's lineage, exactly as the Redis layout of a
 * cluster does, so that code tested here behaves the same there.
 */
function familyId(family: string, key: string): string {
  return `${lineageOf(key)}|${family}`;
}

function firstEntry<V>(map: Map<string, V>): [string, V] | undefined {
  for (const entry of map) return entry;
  return undefined;
}

