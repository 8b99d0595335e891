// Durable revocation (store.replicas > 0): the revoking writes (revoke, revokeFamily, rotate)
// resolve only after `WAIT replicas replicaTimeout` on the master that took them, so that a
// logout is answered once the tombstone is on that many replicas (or the wait timed out).
//
// WAIT blocks the connection that sends it and covers the writes that connection sent before
// it. So revoking writes get a client of their own (a second RedisClient, its connections named
// "coatcheck-revoke"): loads and the other writes never queue behind a WAIT. And they share
// WAITs: the writes asked for while a batch is in flight are held here, then sent together,
// followed (once answered) by one WAIT per connection they ran on. With a replica down, N
// concurrent logouts take one or two replicaTimeouts between them, not N (and the writes of one
// event-loop turn go out together).
//
// Redis Cluster: a WAIT counts the replicas of the node it is sent to, for the writes sent on
// its own connection. So it goes to each node connection that ran a write of the batch, as
// client.ts runWrite() names them: the node a command was last sent to, after any MOVED or ASK
// (a write redirected mid-migration is waited for on the node that ran it, not on the one its
// slot was thought to be on). Batches are per master (a lane per master, picked by the slot
// table when the write is asked for), so a master whose replica is down slows only its own
// revocations.
//
// What each revoking write resolves with, by what the WAITs of its connections said:
//   - the write failed: it fails (StoreUnavailableError, 503), as without replicas;
//   - enough replicas acknowledged: its result;
//   - fewer acknowledged in replicaTimeout: its result too (the master holds the tombstone),
//     with a warning `store.revoke_not_replicated` naming the session's log id, counted for
//     the metrics (stats());
//   - a WAIT itself failed (connection lost, master demoted: UNBLOCKED, timed out): it fails
//     (503). The master may be gone with the write, and a demoted master's writes are thrown
//     away when it resyncs, so nothing here says the revocation holds: fail closed.
import { StoreUnavailableError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { WriteContext } from '../types.js';
import { RedisClient, type WaitPoint } from './client.js';
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

/** One master's batch of revoking writes, and the WAITs that follow it. */
class WaitLane {
  /** Writes asked for and not sent yet: they go with the next batch. */
  private queued: Pending[] = [];
  /** A batch (its writes and its WAITs) is on the wire. */
  private inFlight = false;

  constructor(
    private readonly client: RedisClient,
    private readonly options: ReplicatedWritesOptions,
    private readonly missed: (p: Pending, acknowledged: number) => void,
  ) {}

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
   * Sends a batch's writes, then, once they are all answered, one WAIT on each connection they
   * ran on. Not pipelined behind them: ioredis sends a script again after a NOSCRIPT reply
   * (SCRIPT FLUSH), and that second send must not come after the WAIT it counts on.
   */
  private async send(batch: Pending[]): Promise<void> {
    const { replicas, replicaTimeout } = this.options;
    const results = await Promise.allSettled(batch.map((p) => this.client.runWrite(p.op, p.command)));
    const waits = new Map<WaitPoint, Promise<unknown>>();
    for (const result of results) {
      if (result.status !== 'fulfilled') continue;
      for (const point of result.value.points) {
        if (!waits.has(point)) waits.set(point, point.wait(replicas, replicaTimeout).then((n) => n, (err: unknown) => err));
      }
    }
    const acknowledgements = new Map<WaitPoint, unknown>();
    await Promise.all([...waits].map(async ([point, answer]) => acknowledgements.set(point, await answer)));
    results.forEach((result, i) => {
      const p = batch[i] as Pending;
      if (result.status === 'rejected') {
        p.reject(result.reason);
        return;
      }
      const answers = result.value.points.map((point) => acknowledgements.get(point));
      // No connection named: nothing says where the write went, so nothing says it is held.
      const failed = answers.length === 0 ? new Error('no connection was recorded for the write') : answers.find((a) => typeof a !== 'number');
      if (failed !== undefined) {
        p.reject(this.unconfirmed(p, failed));
        return;
      }
      const acknowledged = Math.min(...(answers as number[]));
      if (acknowledged < replicas && p.wrote(result.value.value)) this.missed(p, acknowledged);
      p.resolve(result.value.value);
    });
  }

  private unconfirmed(p: Pending, err: unknown): StoreUnavailableError {
    const cause = err instanceof Error ? err.message : String(err);
    return new StoreUnavailableError(`redis ${p.op}: written, but whether it reached the replicas is unknown (${cause})`, { cause: err });
  }
}

/** The revoking writes of one Redis store, with their WAITs. */
export class ReplicatedWrites {
  /** The revoking writes' own client: its connections carry nothing else. */
  private readonly client: RedisClient;
  /** One lane per master (one in all on one server or sentinel), by the address of the master. */
  private readonly lanes = new Map<string, WaitLane>();
  private notReplicated = 0;
  private readonly log: Logger;

  constructor(private readonly options: ReplicatedWritesOptions) {
    this.log = options.log;
    this.client = new RedisClient({
      target: options.target,
      // Every command on it, a WAIT included, must be answered within this.
      timeout: options.timeout + options.replicaTimeout,
      connectTimeout: options.connectTimeout,
      log: options.log,
      prefix: options.prefix,
      name: REVOKE_CONNECTION_NAME,
    });
  }

  async start(): Promise<void> {
    await this.client.start();
    await this.checkReplicas();
  }

  close(): Promise<void> {
    return this.client.close();
  }

  available(): boolean {
    return this.client.available();
  }

  /** Revoking writes that fewer replicas than configured acknowledged in time, since start. */
  missedCount(): number {
    return this.notReplicated;
  }

  /**
   * Runs a revoking write on the lane of `routeKey` and resolves once the WAITs after its batch
   * answered (see the top of this file for what it resolves with). `wrote` says whether a
   * result wrote anything (default: always).
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

  /**
   * The lane of the master that owns `routeKey` now. Only batching goes by it: where a write
   * really ran is what its WAIT goes by (a slot that moves meanwhile costs nothing but a batch
   * shared with another master).
   */
  private lane(routeKey: string): WaitLane {
    const owner = this.client.ownerOf(routeKey);
    let lane = this.lanes.get(owner);
    if (lane === undefined) {
      lane = new WaitLane(this.client, this.options, (p, acknowledged) => this.missed(p, acknowledged));
      this.lanes.set(owner, lane);
    }
    return lane;
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

  /** Warns at start for each master that has fewer replicas than every revocation is to wait for. */
  private async checkReplicas(): Promise<void> {
    await Promise.all(
      this.client.masters().map(async ({ address, redis }) => {
        let text: string;
        try {
          text = await redis.info('replication');
        } catch {
          return; // Only a warning's worth: the WAITs report the same trouble.
        }
        const connected = Number(/^connected_slaves:(\d+)/m.exec(text)?.[1] ?? NaN);
        if (Number.isFinite(connected) && connected < this.options.replicas) {
          this.log.warn(
            { event: 'store.replicas_missing', redis: address, replicas: this.options.replicas, connected },
            `store.replicas is ${this.options.replicas} but the master at ${address} has ${connected} replica(s) connected: revocations there will wait store.replicaTimeout and be logged as not replicated`,
          );
        }
      }),
    );
  }
}
