// The shared session store on Redis (ioredis).
//
// Data model: one hash per session at `${prefix}s:${key}`.
//   live record: `@c` created, `@d` deadline, `@t` touched, `@f` family, `@i` issued,
//                `@u` user and `@b` binding (optional), plus one field per jar cookie under its
//                own name (never starting with '@').
//   tombstone:   only `@r` = its deadline (ms since the epoch, by the Redis server's clock).
//   alias:       a renewed id: `@n` successor (opaque), `@g` grace deadline, `@d` the alias's
//                own end of life (like `@r`), `@f` family.
// Families: a set at `${prefix}f:${family}` of the session keys minted from one login; it
// expires at the latest absolute deadline of its members (a later member never shortens it).
// (Its members are read inside a script, so this layout needs a single Redis, not Redis Cluster.)
// Numbers are decimal strings. Every conditional write is one Lua script (atomic, one round
// trip); a load is one HGETALL.
//
// Fail fast: no offline queue, a per-command timeout, no per-command retries, explicit connect
// in start(). The client reconnects forever in the background (backoff capped at 1s) so the
// proxy recovers by itself; every failure surfaces as StoreUnavailableError.
import { Redis, type RedisOptions } from 'ioredis';
import { StoreUnavailableError } from '../errors.js';
import type { Logger } from '../log.js';
import { META_FIELD_MARK, type LoadResult, type RenewalAlias, type SessionMeta, type SessionStore, type SessionUpdate } from './types.js';

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

/** Meta field names. */
const F = {
  created: '@c',
  deadline: '@d',
  touched: '@t',
  family: '@f',
  issued: '@i',
  user: '@u',
  bind: '@b',
  revoked: '@r',
  successor: '@n',
  grace: '@g',
} as const;

/** Longest pause between reconnect attempts. */
const MAX_RECONNECT_DELAY_MS = 1000;
/** At most one connection-error log line per this many ms. */
const ERROR_LOG_INTERVAL_MS = 10_000;
/** How long close() waits for QUIT before dropping the connection. */
const QUIT_TIMEOUT_MAX_MS = 1000;

// Shared Lua. HSET/HDEL in chunks so a large jar never hits Lua's unpack limit.
const LUA_HELPERS = `
local function hset_range(key, from, to)
  local i = from
  while i <= to do
    local j = math.min(i + 399, to)
    redis.call('HSET', key, unpack(ARGV, i, j))
    i = j + 1
  end
end
local function hdel_range(key, from, to)
  local i = from
  while i <= to do
    local j = math.min(i + 399, to)
    redis.call('HDEL', key, unpack(ARGV, i, j))
    i = j + 1
  end
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function tombstone(key, ttl)
  redis.call('DEL', key)
  redis.call('HSET', key, '@r', string.format('%.0f', now_ms() + tonumber(ttl)))
  redis.call('PEXPIRE', key, ttl)
end
local function family_join(fkey, member, deadline)
  local left = redis.call('PTTL', fkey)
  redis.call('SADD', fkey, member)
  if left < 0 or now_ms() + left < tonumber(deadline) then redis.call('PEXPIREAT', fkey, deadline) end
end
`;

/** KEYS[1] key, KEYS[2] family set; ARGV[1] ttl; ARGV[2] family deadline; ARGV[3..] field/value pairs (meta included). */
const LUA_CREATE = `${LUA_HELPERS}
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
hset_range(KEYS[1], 3, #ARGV)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
family_join(KEYS[2], KEYS[1], ARGV[2])
return 1
`;

/**
 * KEYS[1] key; ARGV[1] touched or ''; ARGV[2] ttl or ''; ARGV[3] '1' when ARGV[4] is the user;
 * ARGV[5] n = count of set pair elements; ARGV[6..5+n] pairs; ARGV[6+n..] names to delete.
 */
const LUA_UPDATE = `${LUA_HELPERS}
if redis.call('HEXISTS', KEYS[1], '@c') == 0 then return 0 end
local n = tonumber(ARGV[5])
if n > 0 then hset_range(KEYS[1], 6, 5 + n) end
if #ARGV >= 6 + n then hdel_range(KEYS[1], 6 + n, #ARGV) end
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], '@t', ARGV[1]) end
if ARGV[3] == '1' then redis.call('HSET', KEYS[1], '@u', ARGV[4]) end
if ARGV[2] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
`;

/** KEYS[1] key; ARGV[1] tombstone ttl. Returns 1 when a live record was revoked. */
const LUA_REVOKE = `${LUA_HELPERS}
local live = 0
if redis.call('TYPE', KEYS[1]).ok == 'hash' then live = redis.call('HEXISTS', KEYS[1], '@c') end
tombstone(KEYS[1], ARGV[1])
return live
`;

/**
 * KEYS[1] old, KEYS[2] new, KEYS[3] new family set; ARGV[1] old ttl; ARGV[2] new ttl;
 * ARGV[3] family deadline; ARGV[4] successor; ARGV[5] grace deadline ('' for a tombstone);
 * ARGV[6] family; ARGV[7..] pairs.
 */
const LUA_ROTATE = `${LUA_HELPERS}
if redis.call('HEXISTS', KEYS[1], '@c') == 0 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if ARGV[5] == '' then
  tombstone(KEYS[1], ARGV[1])
else
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], '@n', ARGV[4], '@g', ARGV[5], '@d', string.format('%.0f', now_ms() + tonumber(ARGV[1])), '@f', ARGV[6])
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
hset_range(KEYS[2], 7, #ARGV)
redis.call('PEXPIRE', KEYS[2], ARGV[2])
family_join(KEYS[3], KEYS[2], ARGV[3])
return 1
`;

/** KEYS[1] family set; ARGV[1] tombstone ttl. Returns how many live records were revoked. */
const LUA_REVOKE_FAMILY = `${LUA_HELPERS}
local revoked = 0
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('TYPE', key).ok == 'hash' then
    local live = redis.call('HEXISTS', key, '@c')
    if live == 1 or redis.call('HEXISTS', key, '@n') == 1 then
      tombstone(key, ARGV[1])
      revoked = revoked + live
    end
  end
end
redis.call('DEL', KEYS[1])
return revoked
`;

type Arg = string | number;
interface ScriptedRedis extends Redis {
  ccCreate(key: string, ...args: Arg[]): Promise<number>;
  ccUpdate(key: string, ...args: Arg[]): Promise<number>;
  ccRevoke(key: string, ...args: Arg[]): Promise<number>;
  ccRotate(oldKey: string, newKey: string, familyKey: string, ...args: Arg[]): Promise<number>;
  ccRevokeFamily(familyKey: string, ...args: Arg[]): Promise<number>;
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

  async load(key: string): Promise<LoadResult> {
    const client = this.ready();
    const hash = await this.run('load', () => client.hgetall(this.keyOf(key)));
    return this.parse(key, hash);
  }

  async create(key: string, meta: SessionMeta, fields: ReadonlyMap<string, string>, ttlMs: number): Promise<boolean> {
    checkTtl(ttlMs, 'ttlMs');
    const args: Arg[] = [ttlMs, num(meta.deadline)];
    pushRecord(args, meta, fields);
    const client = this.ready();
    return (await this.run('create', () => client.ccCreate(this.keyOf(key), this.familyKeyOf(meta.family), ...args))) === 1;
  }

  async update(key: string, change: SessionUpdate): Promise<boolean> {
    if (change.ttlMs !== undefined) checkTtl(change.ttlMs, 'ttlMs');
    if (change.touched !== undefined) checkTime(change.touched, 'touched');
    const set: Arg[] = [];
    if (change.set) {
      for (const [name, value] of change.set) {
        checkFieldName(name);
        set.push(name, value);
      }
    }
    const del = change.del ?? [];
    for (const name of del) checkFieldName(name);
    const args: Arg[] = [
      change.touched !== undefined ? num(change.touched) : '',
      change.ttlMs !== undefined ? change.ttlMs : '',
      change.user !== undefined ? '1' : '0',
      change.user ?? '',
      set.length,
      ...set,
      ...del,
    ];
    const client = this.ready();
    return (await this.run('update', () => client.ccUpdate(this.keyOf(key), ...args))) === 1;
  }

  async revoke(key: string, tombstoneTtlMs: number): Promise<boolean> {
    checkTtl(tombstoneTtlMs, 'tombstoneTtlMs');
    const client = this.ready();
    return (await this.run('revoke', () => client.ccRevoke(this.keyOf(key), tombstoneTtlMs))) === 1;
  }

  async rotate(
    oldKey: string,
    oldTombstoneTtlMs: number,
    newKey: string,
    meta: SessionMeta,
    fields: ReadonlyMap<string, string>,
    ttlMs: number,
    alias?: RenewalAlias,
  ): Promise<boolean> {
    checkTtl(oldTombstoneTtlMs, 'oldTombstoneTtlMs');
    checkTtl(ttlMs, 'ttlMs');
    if (alias) checkTime(alias.graceUntil, 'alias.graceUntil');
    const args: Arg[] = [oldTombstoneTtlMs, ttlMs, num(meta.deadline), alias?.successor ?? '', alias ? num(alias.graceUntil) : '', meta.family];
    pushRecord(args, meta, fields);
    const client = this.ready();
    return (
      (await this.run('rotate', () => client.ccRotate(this.keyOf(oldKey), this.keyOf(newKey), this.familyKeyOf(meta.family), ...args))) === 1
    );
  }

  async revokeFamily(family: string, tombstoneTtlMs: number): Promise<number> {
    checkTtl(tombstoneTtlMs, 'tombstoneTtlMs');
    const client = this.ready();
    return this.run('revokeFamily', () => client.ccRevokeFamily(this.familyKeyOf(family), tombstoneTtlMs));
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
    client.defineCommand('ccCreate', { numberOfKeys: 2, lua: LUA_CREATE });
    client.defineCommand('ccUpdate', { numberOfKeys: 1, lua: LUA_UPDATE });
    client.defineCommand('ccRevoke', { numberOfKeys: 1, lua: LUA_REVOKE });
    client.defineCommand('ccRotate', { numberOfKeys: 3, lua: LUA_ROTATE });
    client.defineCommand('ccRevokeFamily', { numberOfKeys: 1, lua: LUA_REVOKE_FAMILY });
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
      return await fn();
    } catch (err) {
      throw new StoreUnavailableError(`redis ${op} failed at ${this.address}: ${messageOf(err)}`, { cause: sanitize(err) });
    }
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

  private parse(key: string, hash: Record<string, string>): LoadResult {
    const names = Object.keys(hash);
    if (names.length === 0) return { state: 'none' };
    if (hash[F.created] !== undefined) {
      const created = Number(hash[F.created]);
      const deadline = Number(hash[F.deadline]);
      const touched = Number(hash[F.touched]);
      const issued = Number(hash[F.issued]);
      const family = hash[F.family];
      if (!Number.isFinite(created) || !Number.isFinite(deadline) || !Number.isFinite(touched) || !Number.isFinite(issued) || family === undefined) {
        return this.corrupt(key, 'a live record with missing or malformed metadata');
      }
      const meta: SessionMeta = { created, deadline, touched, family, issued };
      const user = hash[F.user];
      if (user !== undefined) meta.user = user;
      const bind = hash[F.bind];
      if (bind !== undefined) meta.bind = bind;
      const fields = new Map<string, string>();
      for (const name of names) {
        if (!name.startsWith(META_FIELD_MARK)) fields.set(name, hash[name] as string);
      }
      return { state: 'live', meta, fields };
    }
    if (hash[F.successor] !== undefined && hash[F.revoked] === undefined) {
      const graceUntil = Number(hash[F.grace]);
      const deadline = Number(hash[F.deadline]);
      const family = hash[F.family];
      if (!Number.isFinite(graceUntil) || !Number.isFinite(deadline) || family === undefined) {
        // A damaged alias is treated as dead, never as live.
        this.log.warn({ key: shortKey(key) }, 'redis session store: malformed renewal alias; treating the session as revoked');
        return { state: 'revoked', deadline: Number.isFinite(deadline) ? deadline : 0 };
      }
      return { state: 'renewed', successor: hash[F.successor] as string, graceUntil, deadline, family };
    }
    if (hash[F.revoked] !== undefined) {
      const deadline = Number(hash[F.revoked]);
      // A tombstone always wins, even a damaged one: a revoked session never comes back.
      if (names.length !== 1 || !Number.isFinite(deadline)) {
        this.log.warn({ key: shortKey(key) }, 'redis session store: malformed tombstone; treating the session as revoked');
      }
      return { state: 'revoked', deadline: Number.isFinite(deadline) ? deadline : 0 };
    }
    return this.corrupt(key, 'a hash with neither a record nor a tombstone');
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

function pushRecord(args: Arg[], meta: SessionMeta, fields: ReadonlyMap<string, string>): void {
  checkTime(meta.created, 'meta.created');
  checkTime(meta.deadline, 'meta.deadline');
  checkTime(meta.touched, 'meta.touched');
  checkTime(meta.issued, 'meta.issued');
  args.push(F.created, num(meta.created), F.deadline, num(meta.deadline), F.touched, num(meta.touched), F.family, meta.family, F.issued, num(meta.issued));
  if (meta.user !== undefined) args.push(F.user, meta.user);
  if (meta.bind !== undefined) args.push(F.bind, meta.bind);
  for (const [name, value] of fields) {
    checkFieldName(name);
    args.push(name, value);
  }
}

function num(n: number): string {
  return String(n);
}

function checkTtl(ms: number, name: string): void {
  if (!Number.isSafeInteger(ms) || ms <= 0) throw new RangeError(`${name} must be a positive integer number of ms, got ${ms}`);
}

function checkTime(ms: number, name: string): void {
  if (!Number.isFinite(ms)) throw new RangeError(`${name} must be a finite number of ms, got ${ms}`);
}

function checkFieldName(name: string): void {
  if (name.startsWith(META_FIELD_MARK)) {
    throw new TypeError(`jar field names must not start with "${META_FIELD_MARK}": ${JSON.stringify(name.slice(0, 40))}`);
  }
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
