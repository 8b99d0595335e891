// The Redis store's directory (DirectoryStore, see ../types.ts), on the store's own connection.
// Keys, behind the prefix:
//   `${prefix}u:${userKey}`     a hash per user: one field per session family, the directory's
//                               sealed entry as value; it expires with the last of them.
//   `${prefix}l:${logId}`       a string per session id: where its session is (for a revocation
//                               by the log id an operator read in a log line).
//   `${prefix}revoked-before`   the revoke-all time, ms since the epoch.
// Each is one key, so on a Redis Cluster each command stays in one slot (the prefix has no hash
// tag, so the keys spread over the slots by their own names).
import { StoreUnavailableError } from '../../errors.js';
import type { DirectoryStore } from '../types.js';
import type { RedisClient } from './client.js';
import { WRONG_TYPE } from './load-batcher.js';

/** HSET, then a TTL at least `ttl` ms from now (kept when the hash lives longer already). */
const PUT_USER_ENTRY = `
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local ttl = tonumber(ARGV[3])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1`;

export class RedisDirectory implements DirectoryStore {
  private readonly revokeAllKey: string;
  /** The revoke-all time asked for in this event-loop turn: one read, in the turn's loads. */
  private revokedThisTurn: Promise<number> | undefined;

  constructor(
    private readonly client: RedisClient,
    private readonly prefix: string,
    /** Told after a revoke-all: the store's revocation feed announces it to every instance. */
    private readonly onRevokeAll: () => Promise<void> = async () => {},
  ) {
    this.revokeAllKey = `${prefix}revoked-before`;
  }

  async putUserEntry(userKey: string, field: string, value: string, ttlMs: number): Promise<void> {
    await this.client.run('directory', (redis) => redis.eval(PUT_USER_ENTRY, 1, this.userKey(userKey), field, value, String(Math.max(1, Math.ceil(ttlMs)))));
  }

  async userEntries(userKey: string): Promise<Map<string, string>> {
    const all = await this.client.run('directory', (redis) => redis.hgetall(this.userKey(userKey)));
    return new Map(Object.entries(all));
  }

  async dropUserEntries(userKey: string, fields: readonly string[]): Promise<void> {
    if (fields.length === 0) return;
    await this.client.run('directory', (redis) => redis.hdel(this.userKey(userKey), ...fields));
  }

  async putLogIndex(logId: string, value: string, ttlMs: number): Promise<void> {
    await this.client.run('directory', (redis) => redis.set(`${this.prefix}l:${logId}`, value, 'PX', Math.max(1, Math.ceil(ttlMs))));
  }

  async getLogIndex(logId: string): Promise<string | undefined> {
    return (await this.client.run('directory', (redis) => redis.get(`${this.prefix}l:${logId}`))) ?? undefined;
  }

  async setRevokedBefore(time: number, ttlMs: number): Promise<void> {
    await this.client.run('directory', (redis) => redis.set(this.revokeAllKey, String(time), 'PX', Math.max(1, Math.ceil(ttlMs))));
    await this.onRevokeAll();
  }

  /**
   * The revoke-all time. Read with the loads of this turn (one key more in their MGET, on a
   * cluster one GET more per turn), once per turn whatever the number of loads.
   */
  revokedBefore(): Promise<number> {
    if (this.revokedThisTurn !== undefined) return this.revokedThisTurn;
    const read = this.client.fetch(this.revokeAllKey).then((value) => {
      if (value === null) return 0;
      const n = value === WRONG_TYPE ? NaN : Number(value.toString('latin1'));
      // Not a time this store wrote: nothing says which sessions it ends, so none is served.
      if (!Number.isSafeInteger(n) || n < 0) throw new StoreUnavailableError(`redis key ${this.revokeAllKey} does not hold a time; refusing to serve sessions until it is fixed or deleted`);
      return n;
    });
    // Its callers await it after their load: one that gave up (the load failed) must not leave
    // it unhandled (DirectoryStore.revokedBefore). Once per turn, not per load.
    read.catch(noop);
    this.revokedThisTurn = read;
    setImmediate(() => {
      if (this.revokedThisTurn === read) this.revokedThisTurn = undefined;
    });
    return read;
  }

  private userKey(userKey: string): string {
    return `${this.prefix}u:${userKey}`;
  }
}

function noop(): void {}
