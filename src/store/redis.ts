// The shared session store on Redis: the SessionStore contract on top of its parts in redis/:
//   model.ts         key layout and value encodings (what a session looks like in Redis);
//   scripts.ts       the Lua scripts of the conditional writes, and how each is called;
//   client.ts        the client: connect, close, run commands, failures as StoreUnavailableError;
//   connection.ts    one ioredis connection, set up to fail fast on a request path;
//   cluster.ts       the same for a Redis Cluster (slots.ts: which slot a key is in);
//   load-batcher.ts  the loads of one event-loop turn sent as one MGET (one per slot on a cluster);
//   sentinel.ts      following a sentinel-watched master across failovers;
//   replicated-writes.ts  with store.replicas: revoking writes on their own connection, WAIT after them;
//   redact.ts        what a Redis failure may say (host:port, never a password or a value);
//   directory.ts     users' sessions, log ids and the revoke-all time (session/directory.ts);
//   fingerprints.ts  report-only mode's cookie fingerprints (one key each, SET … GET, batched lookups);
//   revocation-feed.ts  every revoking write announced here and PUBLISHed to the other
//                    processes, heard on a subscriber connection of its own.
// Every conditional write is one Lua script (atomic, one round trip) or one `SET … NX`. On a
// cluster the keys of each script share a hash slot (model.ts); revokeFamily there first reads
// the family's members, then runs its script with them declared (scripts.ts).
import type { Logger } from '../log.js';
import { checkCreate, checkRotate, checkTtl, checkUpdate } from './checks.js';
import { lineageOf, untagged } from './lineage.js';
import { RedisClient } from './redis/client.js';
import { RedisDirectory } from './redis/directory.js';
import { ReplicatedWrites } from './redis/replicated-writes.js';
import { RedisFingerprints } from './redis/fingerprints.js';
import { RedisRevocationFeed } from './redis/revocation-feed.js';
import { WRONG_TYPE } from './redis/load-batcher.js';
import { corrupt, decodeValue, KeyLayout, liveValue, type Damaged } from './redis/model.js';
import * as scripts from './redis/scripts.js';
import type { RedisTarget } from './redis/target.js';
import type { LoadResult, RenewalAlias, SessionStore, StoreStats, WriteContext, WriteResult } from './types.js';

export interface RedisStoreOptions {
  /** Where the data lives: one server (a URL), a sentinel-watched master, or a cluster. */
  target: RedisTarget;
  /** Prepended to every key. */
  prefix: string;
  /** Per-command timeout in ms. */
  timeout: number;
  /** How long start() waits for Redis to answer, in ms. */
  connectTimeout: number;
  /** Replicas that must acknowledge a revoking write (WAIT) before it counts as done; 0: none. */
  replicas?: number;
  /** How long that wait may take, in ms. */
  replicaTimeout?: number;
  logger: Logger;
}

export class RedisStore implements SessionStore {
  readonly kind = 'redis' as const;

  private readonly keys: KeyLayout;
  private readonly log: Logger;
  private readonly client: RedisClient;
  /** With replicas > 0: the revoking writes, each followed by a WAIT (replicated-writes.ts). */
  private readonly revocations: ReplicatedWrites | undefined;
  private readonly cluster: boolean;
  /** Users' sessions, log ids, the revoke-all time (redis/directory.ts). */
  readonly directory: RedisDirectory;
  /** Where every revoking write is announced (revocation-feed.ts). */
  readonly revocationFeed: RedisRevocationFeed;

  constructor(options: RedisStoreOptions) {
    this.cluster = options.target.mode === 'cluster';
    this.keys = new KeyLayout(options.prefix, this.cluster);
    this.log = options.logger.child({ component: 'store', store: 'redis' });
    this.client = new RedisClient({
      target: options.target,
      timeout: options.timeout,
      connectTimeout: options.connectTimeout,
      log: this.log,
      prefix: options.prefix,
    });
    this.directory = new RedisDirectory(this.client, options.prefix, () => this.revocationFeed.announce({ keys: [], all: true }));
    this.fingerprints = new RedisFingerprints(this.client, options.prefix);
    const replicas = options.replicas ?? 0;
    this.revocations =
      replicas > 0
        ? new ReplicatedWrites({ ...options, replicas, replicaTimeout: options.replicaTimeout ?? 200, log: this.log })
        : undefined;
    this.revocationFeed = new RedisRevocationFeed({
      target: options.target,
      prefix: options.prefix,
      timeout: options.timeout,
      connectTimeout: options.connectTimeout,
      log: this.log,
      publish: (channel, message) => this.client.run('publish', (redis) => redis.publish(channel, message)),
    });
  }

  async start(): Promise<void> {
    await Promise.all([this.client.start(), this.revocations?.start()]);
  }

  async close(): Promise<void> {
    this.revocationFeed.close();
    await Promise.all([this.client.close(), this.revocations?.close()]);
  }

  stats(): StoreStats {
    return { revokeNotReplicated: this.revocations?.missedCount() ?? 0 };
  }

  async ping(): Promise<void> {
    await this.client.run('ping', (redis) => redis.ping());
  }

  /** The connection is up (ready): a command now would be sent, not refused. */
  available(): boolean {
    return this.client.available() && (this.revocations?.available() ?? true);
  }

  /** One GET, or one key of the MGET that carries this turn's loads (see load-batcher.ts). */
  async load(key: string): Promise<LoadResult> {
    const value = await this.client.fetch(this.keys.session(key));
    // A failure to read the value (even to log a warning about it) fails this load only.
    try {
      // Not a value this store writes (another program's key under our prefix, or an earlier
      // data model): corrupt data, not an unavailable store.
      if (value === WRONG_TYPE) return this.damaged(key, corrupt('a key of another type'));
      const found = decodeValue(value);
      return found.state === 'damaged' ? this.damaged(key, found) : found;
    } catch (err) {
      throw this.client.unavailable('load', err);
    }
  }

  async create(key: string, data: Buffer, ttlMs: number): Promise<boolean> {
    checkCreate(data, ttlMs);
    const value = liveValue(1, data);
    return (await this.client.run('create', (redis) => redis.set(this.keys.session(key), value, 'PX', ttlMs, 'NX'))) === 'OK';
  }

  async update(key: string, version: number, data: Buffer, ttlMs: number): Promise<WriteResult> {
    checkUpdate(version, data, ttlMs);
    const value = liveValue(version + 1, data);
    return this.client.run('update', (redis) => scripts.update(redis, this.keys.session(key), version, value, ttlMs));
  }

  async revoke(key: string, tombstoneTtlMs: number, context?: WriteContext): Promise<boolean> {
    checkTtl(tombstoneTtlMs, 'tombstoneTtlMs');
    const k = this.keys.session(key);
    const revoked = await this.revoking('revoke', k, (redis) => scripts.revoke(redis, k, tombstoneTtlMs), context);
    await this.revocationFeed.announce({ keys: [key] });
    return revoked;
  }

  async rotate(
    oldKey: string,
    oldVersion: number,
    oldTombstoneTtlMs: number,
    newKey: string,
    data: Buffer,
    ttlMs: number,
    alias?: RenewalAlias,
    context?: WriteContext,
  ): Promise<WriteResult> {
    checkRotate(oldKey, oldVersion, oldTombstoneTtlMs, newKey, data, ttlMs, alias);
    const args: scripts.RotateArgs = {
      oldKey: this.keys.session(oldKey),
      oldVersion,
      oldTtlMs: oldTombstoneTtlMs,
      newKey: this.keys.session(newKey),
      newValue: liveValue(1, data),
      newTtlMs: ttlMs,
      familyKey: this.keys.family(alias?.family ?? '', oldKey),
      alias,
    };
    const result = await this.revoking('rotate', args.oldKey, (redis) => scripts.rotate(redis, args), context, (r) => r === 'ok');
    // A rotation at login ends the old id for good; a renewal (alias) keeps it one session.
    if (result === 'ok' && !alias) await this.revocationFeed.announce({ keys: [oldKey] });
    return result;
  }

  async revokeFamily(family: string, key: string, tombstoneTtlMs: number, context?: WriteContext): Promise<number> {
    checkTtl(tombstoneTtlMs, 'tombstoneTtlMs');
    const familyKey = this.keys.family(family, key);
    const sessionKey = this.keys.session(key);
    const revoke = this.cluster ? scripts.revokeFamilyDeclared : scripts.revokeFamily;
    const revoked = await this.revoking('revokeFamily', sessionKey, (redis) => revoke(redis, familyKey, sessionKey, tombstoneTtlMs), context);
    await this.revocationFeed.announce({ family, keys: [key] });
    return revoked;
  }

  /**
   * A write that ends a session id: on the store's connection, or, with replicas, on the
   * revocations' own connection followed by a WAIT. `routeKey` is the key it writes; `wrote`
   * whether a result wrote anything.
   */
  private revoking<T>(op: string, routeKey: string, command: (redis: scripts.ScriptedRedis) => Promise<T>, context?: WriteContext, wrote?: (result: T) => boolean): Promise<T> {
    if (this.revocations) return this.revocations.run(op, routeKey, command, context, wrote);
    return this.client.run(op, command);
  }

  // ---- report-only mode: cookie fingerprints (types.ts FingerprintStore; redis/fingerprints.ts) ----

  private readonly fingerprints: RedisFingerprints;

  async recordFingerprints(fingerprints: readonly string[], at: number, ttlMs: number): Promise<Array<number | null>> {
    checkTtl(ttlMs, 'ttlMs');
    return fingerprints.length === 0 ? [] : this.fingerprints.record(fingerprints, at, ttlMs);
  }

  async findFingerprints(fingerprints: readonly string[]): Promise<Array<number | null>> {
    return fingerprints.length === 0 ? [] : this.fingerprints.find(fingerprints);
  }

  /** What a damaged value loads as, with a warning that names its key only by a prefix. */
  private damaged(key: string, value: Damaged): LoadResult {
    this.log.warn({ key: shortKey(key) }, `redis session store: ${value.problem}`);
    return value.loadsAs;
  }
}

/** A key as a warning names it: the start of its hash, never its lineage tag (3 bytes of a session id). */
function shortKey(key: string): string {
  const hash = untagged(key);
  const shown = hash.length > 12 ? `${hash.slice(0, 12)}…` : hash;
  return lineageOf(key) === '' ? shown : `….${shown}`;
}
