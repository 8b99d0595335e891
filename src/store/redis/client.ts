// The Redis store's client: the lifecycle of its one connection (connection.ts), and its
// commands, run so that every failure surfaces as StoreUnavailableError (naming host:port,
// never a password or a command's arguments) and that many requests cost few system calls:
// the loads asked for in one event-loop turn go out as one MGET (fetch, load-batcher.ts), and
// the other commands of one turn leave in one write (the socket is corked until setImmediate).
// On a Redis Cluster the loads go out as one command per hash slot and nothing is corked.
import { StoreUnavailableError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { corkableSocket, createConnection, dropConnection, endConnection, peerOf, waitReady } from './connection.js';
import { LoadBatcher, type Fetched } from './load-batcher.js';
import { messageOf, sanitize } from './redact.js';
import type { ScriptedRedis } from './scripts.js';
import { explainSentinelFailure, FailoverWatch } from './sentinel.js';
import { keySlot } from './slots.js';
import { describeTarget, type RedisTarget } from './target.js';

export interface RedisClientOptions {
  /** Where the data lives: one server, a sentinel-watched master, or a cluster. */
  target: RedisTarget;
  /** Per-command timeout in ms. */
  timeout: number;
  /** How long start() waits for Redis to answer, in ms. */
  connectTimeout: number;
  log: Logger;
  /** The store's key prefix: only named in the log line on connect. */
  prefix: string;
  /** The connection's name (CLIENT SETNAME, and in its log lines when not the default). */
  name?: string;
}

/** At most one connection-error log line per this many ms. */
const ERROR_LOG_INTERVAL_MS = 10_000;
/** How long close() waits for QUIT before dropping the connection. */
const QUIT_TIMEOUT_MAX_MS = 1000;

export class RedisClient {
  /** host:port for messages; never the password. */
  readonly address: string;
  private readonly options: RedisClientOptions;
  private readonly log: Logger;

  /** The ioredis client, from start() until close(). */
  private ioredis: ScriptedRedis | undefined;
  /** With sentinels: moves the connection when they announce a new master. */
  private failovers: FailoverWatch | undefined;
  private starting: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private wasReady = false;
  /** How many times a connection closed (see connectionCount). */
  private closes = 0;
  private lastErrorLog = -Infinity;
  private suppressedErrors = 0;
  private readonly loads: LoadBatcher;
  /** The socket is corked until the end of this turn (see coalesceWrites). */
  private corked = false;

  constructor(options: RedisClientOptions) {
    this.options = options;
    this.log = options.name === undefined ? options.log : options.log.child({ connection: options.name });
    this.address = describeTarget(options.target);
    this.loads = new LoadBatcher({
      ready: () => this.ready(),
      unavailable: (op, err) => this.unavailable(op, err),
      ...(options.target.mode === 'cluster' ? { slotOf: keySlot } : {}),
    });
  }

  start(): Promise<void> {
    if (this.closing) return Promise.reject(new StoreUnavailableError(`redis session store at ${this.address} is closed`));
    this.starting ??= this.doStart().catch((err: unknown) => {
      this.starting = undefined; // a later start() may try again
      throw err;
    });
    return this.starting;
  }

  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  /** Started, not closed, and the connection ready (not connecting or reconnecting). */
  available(): boolean {
    return this.closing === undefined && this.ioredis !== undefined && this.ioredis.status === 'ready';
  }

  /** Runs one command on the started client; any failure or timeout becomes StoreUnavailableError. */
  async run<T>(op: string, command: (redis: ScriptedRedis) => Promise<T>): Promise<T> {
    return this.send(op, this.ready(), command);
  }

  /**
   * Changes whenever the connection closes: two commands sent while it stayed the same went out
   * on the same connection (a WAIT counts only the writes of its own connection).
   */
  connectionCount(): number {
    return this.closes;
  }

  /** The value at `key` (WRONG_TYPE: a value of another type), sent with this turn's other loads. */
  fetch(key: string): Promise<Fetched> {
    return this.loads.fetch(key);
  }

  /** A failed command `op` as the store reports it. */
  unavailable(op: string, err: unknown): StoreUnavailableError {
    return new StoreUnavailableError(`redis ${op} failed at ${this.address}: ${messageOf(err)}`, { cause: sanitize(err) });
  }

  private async doStart(): Promise<void> {
    const { target } = this.options;
    const client = createConnection(target, this.options.timeout, this.options.connectTimeout, this.options.name, () =>
      this.log.debug({ redis: this.address }, 'redis cluster: a command that had failed (timed out) was not sent again'),
    );
    this.watch(client);
    this.ioredis = client;
    try {
      const explain = target.mode === 'sentinel' ? (e: unknown, s: unknown) => explainSentinelFailure(target, e, s) : undefined;
      await waitReady(client, this.options.connectTimeout, this.address, explain);
      await this.send('ping', client, (redis) => redis.ping());
    } catch (err) {
      // Leave nothing running: no reconnect loop, no socket.
      this.ioredis = undefined;
      dropConnection(client);
      throw err instanceof StoreUnavailableError
        ? err
        : new StoreUnavailableError(`redis at ${this.address} is not reachable: ${messageOf(err)}`, { cause: sanitize(err) });
    }
    if (target.mode === 'sentinel' && !this.closing) {
      this.failovers = new FailoverWatch({
        target,
        connectTimeout: this.options.connectTimeout,
        onSwitch: (host, port) => this.followSwitch(client, host, port),
        onError: (msg, err) => this.logError(msg, err),
      });
      this.failovers.start();
    }
    this.log.info({ redis: this.address, prefix: this.options.prefix }, 'redis session store connected');
  }

  private async doClose(): Promise<void> {
    const client = this.ioredis;
    this.ioredis = undefined;
    this.failovers?.close();
    if (client) await endConnection(client, Math.min(this.options.timeout + 250, QUIT_TIMEOUT_MAX_MS));
  }

  /**
   * The sentinels announced that the master moved to host:port: a connection that is up to
   * another node is rebuilt at once (it asks the sentinels again), instead of writing to a
   * demoted master, or reading stale data from it, until something else breaks it.
   */
  private followSwitch(client: ScriptedRedis, host: string, port: number): void {
    const master = `${host}:${port}`;
    const peer = peerOf(client);
    if (this.closing || this.ioredis !== client || peer === undefined || peer === master) return;
    this.log.info({ event: 'store.failover', redis: this.address, master }, 'the sentinels moved the redis master; reconnecting to it');
    client.disconnect(true);
  }

  /** Logs the connection's trouble and recovery. */
  private watch(client: ScriptedRedis): void {
    client.on('error', (err: unknown) => this.logError('redis connection error', err));
    // A cluster's node connections report their failures here (a Redis never emits this).
    client.on('node error', (err: unknown) => this.logError('redis cluster node error', err));
    client.on('ready', () => {
      if (this.wasReady) this.log.info({ redis: this.address }, 'redis connection restored');
      this.wasReady = true;
    });
    client.on('close', () => {
      this.closes += 1;
      if (this.wasReady && !this.closing && this.ioredis === client) {
        this.logError('redis connection lost; reconnecting in the background', undefined);
      }
    });
  }

  private ready(): ScriptedRedis {
    if (this.closing) throw new StoreUnavailableError(`redis session store at ${this.address} is closed`);
    if (!this.ioredis) throw new StoreUnavailableError(`redis session store at ${this.address} is not started`);
    return this.ioredis;
  }

  private async send<T>(op: string, redis: ScriptedRedis, command: (redis: ScriptedRedis) => Promise<T>): Promise<T> {
    try {
      this.coalesceWrites(redis);
      return await command(redis);
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
  private coalesceWrites(redis: ScriptedRedis): void {
    if (this.corked) return;
    const socket = corkableSocket(redis);
    if (socket === undefined) return;
    socket.cork();
    this.corked = true;
    setImmediate(() => {
      this.corked = false;
      socket.uncork();
    });
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
}
