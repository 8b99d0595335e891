// The shared session store on Redis (ioredis).
//
// Data model: one string per session at `${prefix}s:${key}`, so a session costs one key and a
// load is one GET (or one key of an MGET, see load()):
//   live record: `L<version>:` followed by the caller's opaque data (binary: the sealed jar).
//   tombstone:   `R<deadline>` (ms since the epoch, by the Redis server's clock).
//   alias:       a renewed id: `N<grace deadline>|<own end of life>|<family>|<successor>`.
// Families: a set at `${prefix}f:${family}` of the session keys minted from one login, made
// when an id is first renewed (an id that was never renewed is its own family); it expires at
// the latest absolute deadline of its members. (Its members are read inside a script, so this
// layout needs a single Redis, not Redis Cluster.) Numbers are decimal. Every conditional write
// is one Lua script (atomic, one round trip) or one `SET … NX`.
//
// Fail fast: no offline queue, a per-command timeout, no per-command retries, explicit connect
// in start(). The client reconnects forever in the background (backoff capped at 1s) so the
// proxy recovers by itself; every failure surfaces as StoreUnavailableError.
import { Redis, type RedisOptions } from 'ioredis';
import { StoreUnavailableError } from '../errors.js';
import type { Logger } from '../log.js';
import { checkCreate, checkRotate, checkTtl, checkUpdate } from './checks.js';
import type { LoadResult, RenewalAlias, SessionStore, WriteResult } from './types.js';

export interface RedisStoreOptions {
  /** redis:// or rediss:// URL (credentials and db allowed). */
  url: string;
  /** Prepended to every key. */
  prefix: string;
  /** Per-command timeout in ms. */
  timeout: number;
  /** How long start() waits for Redis to answer, in ms. */
  connectTimeout: number;
  logger: Logger;
}

/** Longest pause between reconnect attempts. */
const MAX_RECONNECT_DELAY_MS = 1000;
/** At most one connection-error log line per this many ms. */
const ERROR_LOG_INTERVAL_MS = 10_000;
/** How long close() waits for QUIT before dropping the connection. */
const QUIT_TIMEOUT_MAX_MS = 1000;

// Shared Lua. A record's type is its first byte: L live, R tombstone, N alias.
const LUA_HELPERS = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function tombstone(key, ttl)
  redis.call('SET', key, 'R' .. string.format('%.0f', now_ms() + tonumber(ttl)), 'PX', ttl)
end
-- A key's type byte; '' when it is missing or not a string (a value of another type, which a
-- tombstone then replaces: revocation never fails on what it revokes).
local function type_byte(key)
  local t = redis.pcall('GETRANGE', key, 0, 0)
  if type(t) == 'string' then return t end
  return ''
end
local function live_version(key)
  return string.match(redis.call('GETRANGE', key, 0, 20), '^L(%d+):')
end
`;

/** KEYS[1] key; ARGV[1] expected version; ARGV[2] new value; ARGV[3] ttl. 1 ok, 0 gone, -1 conflict. */
const LUA_UPDATE = `${LUA_HELPERS}
local v = live_version(KEYS[1])
if not v then return 0 end
if v ~= ARGV[1] then return -1 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
`;

/** KEYS[1] key; ARGV[1] tombstone ttl. Returns 1 when a live record was revoked. */
const LUA_REVOKE = `${LUA_HELPERS}
local live = 0
if type_byte(KEYS[1]) == 'L' then live = 1 end
tombstone(KEYS[1], ARGV[1])
return live
`;

/**
 * KEYS[1] old, KEYS[2] new, KEYS[3] family set; ARGV[1] old version; ARGV[2] old ttl;
 * ARGV[3] new value; ARGV[4] new ttl; ARGV[5] grace deadline ('' for a tombstone);
 * ARGV[6] family; ARGV[7] successor; ARGV[8] family deadline. 1 ok, 0 gone, -1 conflict.
 */
const LUA_ROTATE = `${LUA_HELPERS}
local v = live_version(KEYS[1])
if not v then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if v ~= ARGV[1] then return -1 end
if ARGV[5] == '' then
  tombstone(KEYS[1], ARGV[2])
else
  local own_end = string.format('%.0f', now_ms() + tonumber(ARGV[2]))
  redis.call('SET', KEYS[1], 'N' .. ARGV[5] .. '|' .. own_end .. '|' .. ARGV[6] .. '|' .. ARGV[7], 'PX', ARGV[2])
  local left = redis.call('PTTL', KEYS[3])
  redis.call('SADD', KEYS[3], KEYS[1], KEYS[2])
  if left < 0 or now_ms() + left < tonumber(ARGV[8]) then redis.call('PEXPIREAT', KEYS[3], ARGV[8]) end
end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
return 1
`;

/**
 * KEYS[1] family set, KEYS[2] key; ARGV[1] tombstone ttl. Tombstones every live member and
 * alias, and the key whatever it holds. Returns how many live records were revoked.
 */
const LUA_REVOKE_FAMILY = `${LUA_HELPERS}
local revoked = 0
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if key ~= KEYS[2] then
    local t = type_byte(key)
    if t == 'L' or t == 'N' then
      tombstone(key, ARGV[1])
      if t == 'L' then revoked = revoked + 1 end
    end
  end
end
redis.call('DEL', KEYS[1])
if type_byte(KEYS[2]) == 'L' then revoked = revoked + 1 end
tombstone(KEYS[2], ARGV[1])
return revoked
`;

/** Record type bytes. */
const LIVE = 0x4c; // L
const TOMBSTONE = 0x52; // R
const ALIAS = 0x4e; // N
const COLON = 0x3a;
/** The `L1:` header of a new record. */
const FIRST_HEADER = Buffer.from('L1:', 'latin1');

/** Most loads sent in one MGET; more in one turn start another. */
const MAX_LOAD_BATCH = 256;

interface PendingLoad {
  key: string;
  resolve(result: LoadResult): void;
  reject(err: unknown): void;
}

type Arg = string | number | Buffer;
interface ScriptedRedis extends Redis {
  ccUpdate(key: string, ...args: Arg[]): Promise<number>;
  ccRevoke(key: string, ...args: Arg[]): Promise<number>;
  ccRotate(oldKey: string, newKey: string, familyKey: string, ...args: Arg[]): Promise<number>;
  ccRevokeFamily(familyKey: string, key: string, ...args: Arg[]): Promise<number>;
}

export class RedisStore implements SessionStore {
  readonly kind = 'redis' as const;

  private readonly url: string;
  private readonly prefix: string;
  private readonly timeout: number;
  private readonly connectTimeout: number;
  private readonly log: Logger;
  /** host:port for messages; never the password. */
  readonly address: string;

  private client: ScriptedRedis | undefined;
  private starting: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private wasReady = false;
  private lastErrorLog = -Infinity;
  private suppressedErrors = 0;
  /** Loads waiting for the end of this event-loop turn, sent together (see load()). */
  private pendingLoads: PendingLoad[] = [];
  /** The socket is corked until the end of this turn (see coalesceWrites). */
  private corked = false;

  constructor(options: RedisStoreOptions) {
    this.url = options.url;
    this.prefix = options.prefix;
    this.timeout = options.timeout;
    this.connectTimeout = options.connectTimeout;
    this.log = options.logger.child({ component: 'store', store: 'redis' });
    this.address = describeAddress(options.url);
  }

  start(): Promise<void> {
    if (this.closing) return Promise.reject(new StoreUnavailableError(`redis session store at ${this.address} is closed`));
    this.starting ??= this.doStart().catch((err: unknown) => {
      this.starting = undefined; // a later start() may try again
      throw err;
    });
    return this.starting;
  }

  private async doStart(): Promise<void> {
    const client = this.createClient();
    this.client = client;
    try {
      await this.waitReady(client);
      await this.run('ping', () => client.ping());
    } catch (err) {
      // Leave nothing running: no reconnect loop, no socket.
      this.client = undefined;
      dropConnection(client);
      throw err instanceof StoreUnavailableError
        ? err
        : new StoreUnavailableError(`redis at ${this.address} is not reachable: ${messageOf(err)}`, { cause: sanitize(err) });
    }
    this.log.info({ redis: this.address, prefix: this.prefix }, 'redis session store connected');
  }

  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  async ping(): Promise<void> {
    const client = this.ready();
    await this.run('ping', () => client.ping());
  }

  /**
   * Loads are batched: every load asked for during one turn of the event loop (the requests
   * parsed from all the sockets that were readable) goes out as one `MGET` when the turn ends,
   * instead of one `GET` each: one write and one reply to read for the lot, which under load
   * saves a system call or two per request. A load alone is a plain `GET`.
   */
  load(key: string): Promise<LoadResult> {
    try {
      this.ready();
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<LoadResult>((resolve, reject) => {
      const first = this.pendingLoads.length === 0;
      this.pendingLoads.push({ key, resolve, reject });
      if (this.pendingLoads.length >= MAX_LOAD_BATCH) this.flushLoads();
      else if (first) setImmediate(this.flushLoads);
    });
  }

  /**
   * Sends the loads asked for since the last flush (bound: called from setImmediate). Every
   * load of the batch settles exactly once, whatever fails.
   */
  private readonly flushLoads = (): void => {
    const batch = this.pendingLoads;
    if (batch.length === 0) return;
    this.pendingLoads = [];
    let sent: Promise<void>;
    try {
      const client = this.ready();
      sent =
        batch.length === 1
          ? client.getBuffer(this.keyOf((batch[0] as PendingLoad).key)).then(
              (value) => this.settle(batch[0] as PendingLoad, value),
              (err: unknown) => {
                const l = batch[0] as PendingLoad;
                // Not a value this store writes (another program's key under our prefix, or an
                // earlier data model): corrupt data, not an unavailable store. In an MGET such a
                // key reads as nil: no session too, without the warning.
                if (err instanceof Error && err.message.startsWith('WRONGTYPE')) l.resolve(this.corrupt(l.key, 'a key of another type'));
                else l.reject(this.unavailable('load', err));
              },
            )
          : client.mgetBuffer(batch.map((l) => this.keyOf(l.key))).then(
              (values) => {
                for (let i = 0; i < batch.length; i++) this.settle(batch[i] as PendingLoad, values[i] ?? null);
              },
              (err: unknown) => {
                const failure = this.unavailable('load', err);
                for (const l of batch) l.reject(failure);
              },
            );
    } catch (err) {
      for (const l of batch) l.reject(err instanceof StoreUnavailableError ? err : this.unavailable('load', err));
      return;
    }
    // Whatever is left unsettled by a throw in the handlers above fails (a second settle is a no-op).
    sent.catch((err: unknown) => {
      const failure = this.unavailable('load', err);
      for (const l of batch) l.reject(failure);
    });
  };

  /** Answers one load from its value; a failure to read it fails that load only. */
  private settle(l: PendingLoad, value: Buffer | null): void {
    try {
      l.resolve(this.parse(l.key, value));
    } catch (err) {
      l.reject(this.unavailable('load', err));
    }
  }

  async create(key: string, data: Buffer, ttlMs: number): Promise<boolean> {
    checkCreate(data, ttlMs);
    const client = this.ready();
    const value = Buffer.concat([FIRST_HEADER, data]);
    return (await this.run('create', () => client.set(this.keyOf(key), value, 'PX', ttlMs, 'NX'))) === 'OK';
  }

  async update(key: string, version: number, data: Buffer, ttlMs: number): Promise<WriteResult> {
    checkUpdate(version, data, ttlMs);
    const client = this.ready();
    const value = Buffer.concat([Buffer.from(`L${version + 1}:`, 'latin1'), data]);
    return writeResult(await this.run('update', () => client.ccUpdate(this.keyOf(key), version, value, ttlMs)));
  }

  async revoke(key: string, tombstoneTtlMs: number): Promise<boolean> {
    checkTtl(tombstoneTtlMs, 'tombstoneTtlMs');
    const client = this.ready();
    return (await this.run('revoke', () => client.ccRevoke(this.keyOf(key), tombstoneTtlMs))) === 1;
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
    checkRotate(oldVersion, oldTombstoneTtlMs, data, ttlMs, alias);
    const client = this.ready();
    const value = Buffer.concat([FIRST_HEADER, data]);
    const familyKey = this.familyKeyOf(alias?.family ?? '');
    const args: Arg[] = [
      oldVersion,
      oldTombstoneTtlMs,
      value,
      ttlMs,
      alias ? num(alias.graceUntil) : '',
      alias?.family ?? '',
      alias?.successor ?? '',
      alias ? num(alias.familyDeadline) : '',
    ];
    return writeResult(await this.run('rotate', () => client.ccRotate(this.keyOf(oldKey), this.keyOf(newKey), familyKey, ...args)));
  }

  async revokeFamily(family: string, key: string, tombstoneTtlMs: number): Promise<number> {
    checkTtl(tombstoneTtlMs, 'tombstoneTtlMs');
    const client = this.ready();
    return this.run('revokeFamily', () => client.ccRevokeFamily(this.familyKeyOf(family), this.keyOf(key), tombstoneTtlMs));
  }

  // ---- internals ----

  private keyOf(key: string): string {
    return `${this.prefix}s:${key}`;
  }

  private familyKeyOf(family: string): string {
    return `${this.prefix}f:${family}`;
  }

  private createClient(): ScriptedRedis {
    const options: RedisOptions = {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      // A command cut off by a dropped connection fails; it is never replayed later.
      autoResendUnfulfilledCommands: false,
      commandTimeout: this.timeout,
      connectTimeout: this.connectTimeout,
      // A connection that stops answering (peer frozen, packets dropped) is torn down and
      // rebuilt instead of timing out every command forever.
      socketTimeout: Math.max(2000, this.timeout * 4),
      // ioredis ends a dropped socket politely, then destroys it after this long.
      disconnectTimeout: 100,
      retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 5), MAX_RECONNECT_DELAY_MS),
      connectionName: 'coatcheck',
      disableClientInfo: true,
    };
    const client = new Redis(this.url, options) as ScriptedRedis;
    client.defineCommand('ccUpdate', { numberOfKeys: 1, lua: LUA_UPDATE });
    client.defineCommand('ccRevoke', { numberOfKeys: 1, lua: LUA_REVOKE });
    client.defineCommand('ccRotate', { numberOfKeys: 3, lua: LUA_ROTATE });
    client.defineCommand('ccRevokeFamily', { numberOfKeys: 2, lua: LUA_REVOKE_FAMILY });
    client.on('error', (err: unknown) => this.onError(err));
    client.on('ready', () => {
      if (this.wasReady) this.log.info({ redis: this.address }, 'redis connection restored');
      this.wasReady = true;
    });
    client.on('close', () => {
      if (this.wasReady && !this.closing && this.client === client) {
        this.logError('redis connection lost; reconnecting in the background', undefined);
      }
    });
    return client;
  }

  /** Resolves on 'ready'; rejects after connectTimeout, or when the client gives up. */
  private waitReady(client: ScriptedRedis): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let lastError: unknown;
      const finish = (err?: StoreUnavailableError) => {
        clearTimeout(timer);
        client.off('ready', onReady);
        client.off('end', onEnd);
        client.off('error', onErr);
        if (err) reject(err);
        else resolve();
      };
      const fail = (why: string) =>
        finish(
          new StoreUnavailableError(
            `redis at ${this.address} is not reachable (${why}${lastError !== undefined ? `: ${messageOf(lastError)}` : ''})`,
            lastError !== undefined ? { cause: sanitize(lastError) } : undefined,
          ),
        );
      const onReady = () => finish();
      const onEnd = () => fail('connection closed');
      const onErr = (err: unknown) => {
        lastError = err;
      };
      const timer = setTimeout(() => fail(`no answer within ${this.connectTimeout}ms`), this.connectTimeout);
      client.once('ready', onReady);
      client.once('end', onEnd);
      client.on('error', onErr);
      // A refused first attempt rejects here; the retry strategy keeps trying until the timer.
      client.connect().catch((err: unknown) => {
        lastError ??= err;
      });
    });
  }

  private ready(): ScriptedRedis {
    if (this.closing) throw new StoreUnavailableError(`redis session store at ${this.address} is closed`);
    if (!this.client) throw new StoreUnavailableError(`redis session store at ${this.address} is not started`);
    return this.client;
  }

  /** Runs one command; any failure or timeout becomes StoreUnavailableError. */
  private async run<T>(op: string, fn: () => Promise<T>): Promise<T> {
    try {
      this.coalesceWrites();
      return await fn();
    } catch (err) {
      throw this.unavailable(op, err);
    }
  }

  /**
   * Holds this turn's commands in the socket's buffer and writes them in one system call when
   * the turn ends (the socket is corked until a setImmediate): under load, the loads and writes
   * of the requests handled in one turn cost one write between them instead of one each. The
   * commands' timeouts run from when they were asked for, as before.
   */
  private coalesceWrites(): void {
    if (this.corked) return;
    const stream = (this.client as unknown as { stream?: { cork(): void; uncork(): void; writable?: boolean } } | undefined)?.stream;
    if (stream === undefined || typeof stream.cork !== 'function' || stream.writable === false) return;
    stream.cork();
    this.corked = true;
    setImmediate(() => {
      this.corked = false;
      stream.uncork();
    });
  }

  private unavailable(op: string, err: unknown): StoreUnavailableError {
    return new StoreUnavailableError(`redis ${op} failed at ${this.address}: ${messageOf(err)}`, { cause: sanitize(err) });
  }

  private onError(err: unknown): void {
    this.logError('redis connection error', err);
  }

  /** Logs connection trouble at most once per interval, counting what it skipped. */
  private logError(msg: string, err: unknown): void {
    const now = Date.now();
    if (now - this.lastErrorLog < ERROR_LOG_INTERVAL_MS) {
      this.suppressedErrors += 1;
      return;
    }
    this.lastErrorLog = now;
    const fields: Record<string, unknown> = { redis: this.address, suppressed: this.suppressedErrors };
    if (err !== undefined) {
      // Message and code only: a stack trace is noise in an operator's log, and ioredis errors
      // may carry command arguments.
      const e = sanitize(err);
      fields.err = { message: e.message, ...((e as { code?: string }).code ? { code: (e as { code?: string }).code } : {}) };
    }
    this.suppressedErrors = 0;
    this.log.warn(fields, msg);
  }

  private parse(key: string, value: Buffer | null): LoadResult {
    if (value === null) return { state: 'none' };
    const type = value[0];
    if (type === LIVE) {
      // `L<version>:<data>`, read without copying the data.
      let version = 0;
      let i = 1;
      for (; i < value.length && i < 17; i++) {
        const c = value[i] as number;
        if (c === COLON) break;
        if (c < 0x30 || c > 0x39) return this.corrupt(key, 'a live record with a malformed header');
        version = version * 10 + (c - 0x30);
      }
      if (i === 1 || value[i] !== COLON || version < 1 || i + 1 >= value.length) return this.corrupt(key, 'a live record with a malformed header');
      return { state: 'live', version, data: value.subarray(i + 1) };
    }
    if (type === TOMBSTONE) {
      const deadline = Number(value.toString('latin1', 1));
      // A tombstone always wins, even a damaged one: a revoked session never comes back.
      if (!Number.isFinite(deadline) || value.length === 1) {
        this.log.warn({ key: shortKey(key) }, 'redis session store: malformed tombstone; treating the session as revoked');
        return { state: 'revoked', deadline: 0 };
      }
      return { state: 'revoked', deadline };
    }
    if (type === ALIAS) {
      const parts = value.toString('latin1', 1).split('|');
      const graceUntil = Number(parts[0]);
      const deadline = Number(parts[1]);
      const family = parts[2];
      const successor = parts[3];
      if (parts.length !== 4 || !parts[0] || !Number.isFinite(graceUntil) || !parts[1] || !Number.isFinite(deadline) || !family || !successor) {
        // A damaged alias is treated as dead, never as live.
        this.log.warn({ key: shortKey(key) }, 'redis session store: malformed renewal alias; treating the session as revoked');
        return { state: 'revoked', deadline: Number.isFinite(deadline) ? deadline : 0 };
      }
      return { state: 'renewed', successor, graceUntil, deadline, family };
    }
    return this.corrupt(key, 'a value that is neither a record, an alias nor a tombstone');
  }

  private corrupt(key: string, what: string): LoadResult {
    this.log.warn({ key: shortKey(key) }, `redis session store: corrupt entry (${what}); treating it as no session`);
    return { state: 'none' };
  }

  private async doClose(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    if (client.status === 'ready') {
      const quitTimeout = Math.min(this.timeout + 250, QUIT_TIMEOUT_MAX_MS);
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          client.quit(),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error('quit timed out')), quitTimeout);
          }),
        ]);
      } catch {
        // Dropped below.
      } finally {
        clearTimeout(timer);
      }
    }
    dropConnection(client);
  }
}

/** Stops the reconnect loop and destroys the socket at once, leaving no timer behind. */
function dropConnection(client: Redis): void {
  client.disconnect(false);
  // disconnect() ends the socket politely and waits for the peer; a frozen peer never answers.
  (client.stream as { destroy?: () => void } | undefined)?.destroy?.();
  // ioredis 5.9 keeps its socketTimeout timer when the socket goes away without answering;
  // it would otherwise outlive the client by up to socketTimeout.
  const internals = client as unknown as { socketTimeoutTimer?: ReturnType<typeof setTimeout> };
  if (internals.socketTimeoutTimer !== undefined) {
    clearTimeout(internals.socketTimeoutTimer);
    internals.socketTimeoutTimer = undefined;
  }
}

function num(n: number): string {
  return String(n);
}

function writeResult(code: number): WriteResult {
  return code === 1 ? 'ok' : code === -1 ? 'conflict' : 'gone';
}

/** "host:port" of a redis URL, without credentials. */
export function describeAddress(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname || 'localhost'}:${u.port || '6379'}`;
  } catch {
    return '(invalid redis URL)';
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A copy of an error without ioredis' `command` (its args hold keys and cookie values). */
function sanitize(err: unknown): Error {
  const out = new Error(messageOf(err));
  if (err instanceof Error) {
    out.name = err.name;
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string') (out as Error & { code?: string }).code = code;
  }
  return out;
}

function shortKey(key: string): string {
  return key.length > 12 ? `${key.slice(0, 12)}…` : key;
}
