// The Redis store's client: the lifecycle of its one connection (connection.ts), and its
// commands, run so that every failure surfaces as StoreUnavailableError (naming host:port,
// never a password or a command's arguments) and that many requests cost few system calls:
// the loads asked for in one event-loop turn go out as one MGET (fetch, load-batcher.ts), and
// the other commands of one turn leave in one write (the socket is corked until setImmediate).
// On a Redis Cluster the loads go out as one command per hash slot and nothing is corked.
// For durable revocation (replicated-writes.ts) a write can be run with runWrite(), which names
// the connections it went out on, so that a WAIT can be sent on each of them.
import { StoreUnavailableError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { Cluster, type Redis } from 'ioredis';
import { runOnNodes } from './cluster.js';
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

/**
 * A connection that ran writes, as a WAIT must name it: the WAIT has to go out on that very
 * connection (it counts the writes its own connection sent before it). See runWrite().
 */
export interface WaitPoint {
  /** Where, for messages: host:port. */
  readonly address: string;
  /**
   * `WAIT replicas timeout` on the connection: the number of replicas that acknowledged its
   * writes. Rejects (StoreUnavailableError) when that connection is gone: a WAIT on another one
   * would count none of them.
   */
  wait(replicas: number, timeout: number): Promise<number>;
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
  /** How many times a connection closed (one server or sentinel: see runWrite). */
  private closes = 0;
  /** The WaitPoint of the current connection (one server or sentinel), made on first use. */
  private point: { closes: number; point: WaitPoint } | undefined;
  /** A cluster's WaitPoints, one per node connection. */
  private readonly nodePoints = new WeakMap<Redis, WaitPoint>();
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
   * Runs one write (`command` may send several commands) and names the connections it ran on,
   * so that a WAIT can count it. One server or sentinel: the connection of the moment, which
   * stops being one's WaitPoint when it closes (a write answered before a reconnect is not
   * counted by a WAIT after it). A cluster: each node connection the commands were last sent to
   * (after MOVED or ASK, the node that ran them; cluster.ts runOnNodes). The node connections
   * never reconnect (ioredis makes a new one), so a lost one stays lost.
   */
  async runWrite<T>(op: string, command: (redis: ScriptedRedis) => Promise<T>): Promise<{ value: T; points: WaitPoint[] }> {
    const redis = this.ready();
    if (redis instanceof Cluster) {
      const { value, nodes } = await this.send(op, redis, (r) => runOnNodes(r, command));
      return { value, points: nodes.map((node) => this.nodePoint(node)) };
    }
    const closes = this.closes;
    const value = await this.send(op, redis, command);
    return { value, points: [this.connectionPoint(closes)] };
  }

  /** The WaitPoint of the connection that was current when `closes` connections had closed. */
  private connectionPoint(closes: number): WaitPoint {
    if (this.point?.closes === closes) return this.point.point;
    const point: WaitPoint = {
      address: this.address,
      wait: async (replicas, timeout) => {
        if (this.closes !== closes) throw this.unavailable('wait', new Error('the connection was lost after the write'));
        return this.run('wait', (r) => r.wait(replicas, timeout));
      },
    };
    if (closes === this.closes) this.point = { closes, point };
    return point;
  }

  /** The WaitPoint of one node connection of a cluster. */
  private nodePoint(node: Redis): WaitPoint {
    let point = this.nodePoints.get(node);
    if (point === undefined) {
      const address = `${node.options.host ?? '?'}:${node.options.port ?? '?'}`;
      point = {
        address,
        wait: async (replicas, timeout) => {
          try {
            if (node.status !== 'ready') throw new Error('the connection was lost after the write');
            return await node.wait(replicas, timeout);
          } catch (err) {
            throw new StoreUnavailableError(`redis wait failed at ${address}: ${messageOf(err)}`, { cause: sanitize(err) });
          }
        },
      };
      this.nodePoints.set(node, point);
    }
    return point;
  }

  /**
   * Which master owns `key` now, as the cluster's slot table says ("host:port"); '' on one
   * server or sentinel, and on a cluster that does not know the slot yet.
   */
  ownerOf(key: string): string {
    const redis = this.ioredis;
    if (!(redis instanceof Cluster)) return '';
    return redis.slots[keySlot(key)]?.[0] ?? '';
  }

  /**
   * The connections to every master: one on one server or sentinel, one per master node on a
   * cluster (as its slot table has them now), with the address of each.
   */
  masters(): Array<{ address: string; redis: Redis }> {
    const redis = this.ready();
    if (redis instanceof Cluster) {
      return redis.nodes('master').map((node) => ({ address: `${node.options.host ?? '?'}:${node.options.port ?? '?'}`, redis: node }));
    }
    return [{ address: this.address, redis }];
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
