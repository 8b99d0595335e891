// Durable revocation (store.replicas > 0): the revoking writes (revoke, revokeFamily, rotate)
// resolve only after `WAIT replicas replicaTimeout` on the master that took them, so that a
// logout is answered once the tombstone is on that many replicas (or the wait timed out).
//
// WAIT blocks the connection that sends it and covers the writes that connection sent before
// it. So revoking writes get a connection of their own (a second RedisClient, named
// "coatcheck-revoke"): loads and the other writes never queue behind a WAIT. And they share
// WAITs: the writes asked for while a batch is in flight are held here, then sent together,
// followed (once answered) by one WAIT. With a replica down, N concurrent logouts take one or two
// replicaTimeouts between them, not N (and the writes of one event-loop turn go out together).
//
// What each revoking write resolves with, by what its batch's WAIT said:
//   - the write failed: it fails (StoreUnavailableError, 503), as without replicas;
//   - enough replicas acknowledged: its result;
//   - fewer acknowledged in replicaTimeout: its result too (the master holds the tombstone),
//     with a warning `store.revoke_not_replicated` naming the session's log id, counted for
//     the metrics (stats());
//   - the WAIT itself failed (connection lost, master demoted: UNBLOCKED, timed out): it fails
//     (503). The master may be gone with the write, and a demoted master's writes are thrown
//     away when it resyncs, so nothing here says the revocation holds: fail closed.
//
// Redis Cluster (not built): a WAIT counts the replicas of the node it is sent to, so there it
// must go, on the same connection as the write, to the master that owns the written key's
// slot. That is a lane (one connection, one batch, one WAIT) per master node, picked by the
// key's slot: run() takes the routing key for that, and lane() is where the choice goes.
import { StoreUnavailableError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { WriteContext } from '../types.js';
import { RedisClient } from './client.js';
import type { ScriptedRedis } from './scripts.js';
import type { RedisTarget } from './target.js';

export interface ReplicatedWritesOptions {
  target: RedisTarget;
  /** The store's per-command timeout in ms; a WAIT may take replicaTimeout more. */
  timeout: number;
  connectTimeout: number;
  /** Replicas that must acknowledge (> 0). */
  replicas: number;
  /** How long a WAIT waits for them, in ms. */
  replicaTimeout: number;
  /** The store's logger. */
  log: Logger;
  prefix: string;
}

/** The name of the revoking writes' connection (CLIENT LIST shows it). */
export const REVOKE_CONNECTION_NAME = 'coatcheck-revoke';

interface Pending {
  op: string;
  command: (redis: ScriptedRedis) => Promise<unknown>;
  /** Did this result write anything (a rotate that lost its race wrote nothing to replicate)? */
  wrote: (result: unknown) => boolean;
  logId: string | undefined;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

/** One master's connection for revoking writes, and the batch that waits for its next WAIT. */
class WaitLane {
  readonly client: RedisClient;
  /** Writes asked for and not sent yet: they go with the next WAIT. */
  private queued: Pending[] = [];
  /** A batch (its writes and its WAIT) is on the wire. */
  private inFlight = false;

  constructor(
    private readonly options: ReplicatedWritesOptions,
    private readonly missed: (p: Pending, acknowledged: number) => void,
  ) {
    this.client = new RedisClient({
      target: options.target,
      // The connection's every command, a WAIT included, must be answered within this.
      timeout: options.timeout + options.replicaTimeout,
      connectTimeout: options.connectTimeout,
      log: options.log,
      prefix: options.prefix,
      name: REVOKE_CONNECTION_NAME,
    });
  }

  add(p: Pending): void {
    this.queued.push(p);
    // The first write of a turn schedules the batch; the others of the turn join it. While a
    // batch is in flight, its end sends the next.
    if (!this.inFlight && this.queued.length === 1) setImmediate(this.flush);
  }

  private readonly flush = (): void => {
    if (this.inFlight || this.queued.length === 0) return;
    const batch = this.queued;
    this.queued = [];
    this.inFlight = true;
    void this.send(batch).finally(() => {
      this.inFlight = false;
      this.flush();
    });
  };

  /**
   * Sends a batch's writes, then, once they are all answered, one WAIT on the same connection.
   * Not pipelined behind them: ioredis sends a script again after a NOSCRIPT reply (SCRIPT
   * FLUSH), and that second send must not come after the WAIT it counts on.
   */
  private async send(batch: Pending[]): Promise<void> {
    const { replicas, replicaTimeout } = this.options;
    const connection = this.client.connectionCount();
    const results = await Promise.allSettled(batch.map((p) => this.client.run(p.op, p.command)));
    let acknowledged: unknown;
    if (results.some((r) => r.status === 'fulfilled')) {
      // A WAIT on another connection than the writes' would count nothing of theirs.
      acknowledged =
        this.client.connectionCount() !== connection
          ? new Error('the connection was lost after the write')
          : await this.client.run('wait', (redis) => redis.wait(replicas, replicaTimeout)).then(
              (n) => n,
              (err: unknown) => err,
            );
    }
    results.forEach((result, i) => {
      const p = batch[i] as Pending;
      if (result.status === 'rejected') p.reject(result.reason);
      else if (typeof acknowledged !== 'number') p.reject(this.unconfirmed(p, acknowledged));
      else {
        if (acknowledged < replicas && p.wrote(result.value)) this.missed(p, acknowledged);
        p.resolve(result.value);
      }
    });
  }

  private unconfirmed(p: Pending, err: unknown): StoreUnavailableError {
    const cause = err instanceof Error ? err.message : String(err);
    return new StoreUnavailableError(`redis ${p.op}: written, but whether it reached the replicas is unknown (${cause})`, { cause: err });
  }
}

/** The revoking writes of one Redis store, with their WAITs. */
export class ReplicatedWrites {
  private readonly master: WaitLane;
  private notReplicated = 0;
  private readonly log: Logger;

  constructor(private readonly options: ReplicatedWritesOptions) {
    this.log = options.log;
    this.master = new WaitLane(options, (p, acknowledged) => this.missed(p, acknowledged));
  }

  async start(): Promise<void> {
    await this.master.client.start();
    await this.checkReplicas();
  }

  close(): Promise<void> {
    return this.master.client.close();
  }

  available(): boolean {
    return this.master.client.available();
  }

  /** Revoking writes that fewer replicas than configured acknowledged in time, since start. */
  missedCount(): number {
    return this.notReplicated;
  }

  /**
   * Runs a revoking write on the lane of `routeKey` and resolves once its batch's WAIT answered
   * (see the top of this file for what it resolves with). `wrote` says whether a result wrote
   * anything (default: always).
   */
  run<T>(op: string, routeKey: string, command: (redis: ScriptedRedis) => Promise<T>, context?: WriteContext, wrote?: (result: T) => boolean): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.lane(routeKey).add({
        op,
        command,
        wrote: (wrote as ((result: unknown) => boolean) | undefined) ?? (() => true),
        logId: context?.logId,
        resolve: resolve as (value: unknown) => void,
        reject,
      });
    });
  }

  /** The lane that owns `routeKey`: one master here (a cluster would pick by the key's slot). */
  private lane(_routeKey: string): WaitLane {
    return this.master;
  }

  private missed(p: Pending, acknowledged: number): void {
    this.notReplicated += 1;
    this.log.warn(
      {
        event: 'store.revoke_not_replicated',
        ...(p.logId !== undefined ? { session: p.logId } : {}),
        op: p.op,
        replicas: this.options.replicas,
        acknowledged,
        replicaTimeout: this.options.replicaTimeout,
      },
      'a revocation was not acknowledged by enough replicas in time (the master holds it; a failover now could lose it)',
    );
  }

  /** Warns at start when the master has fewer replicas than every revocation is to wait for. */
  private async checkReplicas(): Promise<void> {
    let text: string;
    try {
      text = await this.master.client.run('info', (redis) => redis.info('replication'));
    } catch {
      return; // Only a warning's worth: the WAITs report the same trouble.
    }
    const connected = Number(/^connected_slaves:(\d+)/m.exec(text)?.[1] ?? NaN);
    if (Number.isFinite(connected) && connected < this.options.replicas) {
      this.log.warn(
        { event: 'store.replicas_missing', replicas: this.options.replicas, connected },
        `store.replicas is ${this.options.replicas} but the master has ${connected} replica(s) connected: revocations will wait store.replicaTimeout and be logged as not replicated`,
      );
    }
  }
}
