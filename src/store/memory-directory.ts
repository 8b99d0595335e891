// The memory store's directory (DirectoryStore): users' entry sets, log ids and the revoke-all
// time, in maps of this process, each entry with its expiry by the injected clock. Bounded as
// the sessions are: every entry expires, an expired one is removed when it is next looked at, and
// every write sweeps a few of the oldest entries, so that entries nobody asks for again do not
// pile up.
import type { Clock } from '../clock.js';
import { StoreUnavailableError } from '../errors.js';
import type { DirectoryStore } from './types.js';

/** Entries looked at (and removed when expired) from the start of a map on each write. */
const SWEEP_PER_WRITE = 4;

/** The expiry of a packed log id entry (`<expiry, base 36>|<value>`). */
function expiryOf(packed: string): number {
  return parseInt(packed.slice(0, packed.indexOf('|')), 36);
}

/**
 * A copy of `s` as one flat string. A string built by concatenation is a tree of its pieces
 * (each kept alive with its own header); kept for long in a large map, the flat copy costs less.
 */
export function flat(s: string): string {
  // latin1 round-trips a string of latin1 characters, the only ones these maps normally see;
  // any other string is kept as it is.
  const copy = Buffer.from(s, 'latin1').toString('latin1');
  return copy === s ? copy : s;
}

interface Expiring<T> {
  value: T;
  expires: number;
}

export class MemoryDirectory implements DirectoryStore {
  private readonly users = new Map<string, Expiring<Map<string, string>>>();
  /**
   * Log id → `<expiry, base 36>|<value>`, one flat string: no object, number or string pieces
   * per entry (a log id is written for every new session id, so this map is as large as the
   * store; ~170 bytes an entry instead of ~430).
   */
  private readonly logIds = new Map<string, string>();
  private revokeAll: Expiring<number> | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly isClosed: () => boolean,
    /** Told after a revoke-all (the store's revocation feed announces it). */
    private readonly onRevokeAll: () => void = () => {},
  ) {}

  async putUserEntry(userKey: string, field: string, value: string, ttlMs: number): Promise<void> {
    this.assertOpen();
    const now = this.clock();
    let set = this.fresh(this.users, userKey, now);
    if (set === undefined) set = { value: new Map(), expires: now + ttlMs };
    // Re-inserted: the map stays in least-recently-written-first order for the sweep.
    this.users.delete(userKey);
    this.users.set(userKey, set);
    set.value.set(field, value);
    set.expires = Math.max(set.expires, now + ttlMs);
    this.sweep(this.users, now);
  }

  async userEntries(userKey: string): Promise<Map<string, string>> {
    this.assertOpen();
    return new Map(this.fresh(this.users, userKey, this.clock())?.value ?? []);
  }

  async dropUserEntries(userKey: string, fields: readonly string[]): Promise<void> {
    this.assertOpen();
    const set = this.fresh(this.users, userKey, this.clock());
    if (set === undefined) return;
    for (const f of fields) set.value.delete(f);
    if (set.value.size === 0) this.users.delete(userKey);
  }

  async putLogIndex(logId: string, value: string, ttlMs: number): Promise<void> {
    this.assertOpen();
    const now = this.clock();
    this.logIds.delete(logId);
    this.logIds.set(flat(logId), flat(`${Math.ceil(now + ttlMs).toString(36)}|${value}`));
    let seen = 0;
    for (const [key, packed] of this.logIds) {
      if (++seen > SWEEP_PER_WRITE) break;
      if (now >= expiryOf(packed)) this.logIds.delete(key);
    }
  }

  async getLogIndex(logId: string): Promise<string | undefined> {
    this.assertOpen();
    const packed = this.logIds.get(logId);
    if (packed === undefined) return undefined;
    if (this.clock() >= expiryOf(packed)) {
      this.logIds.delete(logId);
      return undefined;
    }
    return packed.slice(packed.indexOf('|') + 1);
  }

  async setRevokedBefore(time: number, ttlMs: number): Promise<void> {
    this.assertOpen();
    this.revokeAll = { value: time, expires: this.clock() + ttlMs };
    this.onRevokeAll();
  }

  /** Never an unhandled rejection (DirectoryStore.revokedBefore): a closed store's failure is handled here too. */
  revokedBefore(): Promise<number> {
    try {
      this.assertOpen();
    } catch (err) {
      const failed = Promise.reject(err);
      failed.catch(() => undefined);
      return failed;
    }
    const r = this.revokeAll;
    if (r === undefined) return ZERO;
    if (this.clock() >= r.expires) {
      this.revokeAll = undefined;
      return ZERO;
    }
    return Promise.resolve(r.value);
  }

  /** The entry at `key` unless it expired (then it is removed). */
  private fresh<T>(map: Map<string, Expiring<T>>, key: string, now: number): Expiring<T> | undefined {
    const e = map.get(key);
    if (e === undefined) return undefined;
    if (now < e.expires) return e;
    map.delete(key);
    return undefined;
  }

  private sweep<T>(map: Map<string, Expiring<T>>, now: number): void {
    let seen = 0;
    for (const [key, e] of map) {
      if (++seen > SWEEP_PER_WRITE) break;
      if (now >= e.expires) map.delete(key);
    }
  }

  private assertOpen(): void {
    if (this.isClosed()) throw new StoreUnavailableError('memory session store is closed');
  }
}

const ZERO: Promise<number> = Promise.resolve(0);
