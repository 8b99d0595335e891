// A master watched by Redis Sentinel: the ioredis options that follow it across a failover and
// still fail fast, a watch that moves the connection as soon as the sentinels announce a new
// master, and what a failed start says.
//
// How a failover looks from here. While the master is down its connection is closed, every
// command fails at once (no offline queue) and the store answers 503. ioredis reconnects with
// the retry strategy (connection.ts), and each attempt asks the sentinels for the master's
// address again; until the sentinels promote a replica they name the dead master and the
// attempt fails; after the promotion the next attempt reaches the new master, whose INFO
// must say role:master (ioredis checks it before the connection is ready), and requests are
// served again. Nothing here waits for the failover: no command is queued across it.
//
// A master that is demoted while it still answers (a partition that heals, an operator's
// REPLICAOF) must not keep this connection: its writes fail with READONLY and its reads go
// stale. Three things move the connection: Sentinel itself kills the normal clients of an
// instance it reconfigures; the failover watch below reconnects on +switch-master; and a
// READONLY (or, for a WAIT, UNBLOCKED) reply makes ioredis reconnect (reconnectOnError, set
// in connection.ts for every mode), which asks the sentinels again. The command that got the
// error fails (503); it is never resent.
//
// ioredis' own failoverDetector is not used: it opens sentinel connections per client with no
// 'error' listener, so a sentinel that is down prints "[ioredis] Unhandled error event" to
// stderr on every reconnect attempt. The watch below is one set per client, its errors logged
// like the connection's (rate-limited, no stack, no password).
import { Redis, type RedisOptions } from 'ioredis';
import { messageOf } from './redact.js';
import type { RedisTarget } from './target.js';

type SentinelTarget = Extract<RedisTarget, { mode: 'sentinel' }>;

/** Longest pause between rounds of asking the sentinels, and between a watch's reconnects. */
const MAX_SENTINEL_RETRY_MS = 1000;
/** The channel on which every sentinel announces a failover: `<name> <old ip> <old port> <new ip> <new port>`. */
const SWITCH_MASTER = '+switch-master';

/**
 * A reply after which the connection must be rebuilt: the node is no master any more. READONLY
 * answers a write sent to a replica; UNBLOCKED answers a blocked command (our WAIT) when its
 * master turned into a replica.
 */
export function isDemotionError(err: Error): boolean {
  return err.message.startsWith('READONLY') || err.message.startsWith('UNBLOCKED');
}

/** The ioredis options for the master that the sentinels of `target` name, on top of `base` (the fail-fast ones). */
export function sentinelOptions(target: SentinelTarget, base: RedisOptions, timeout: number): RedisOptions {
  return {
    ...base,
    name: target.name,
    sentinels: target.sentinels.map((n) => ({ host: n.host, port: n.port })),
    ...(target.sentinelPassword !== undefined ? { sentinelPassword: target.sentinelPassword } : {}),
    ...(target.tls ? { tls: {}, sentinelTLS: {}, enableTLSForSentinelMode: true } : {}),
    ...(target.username !== undefined ? { username: target.username } : {}),
    ...(target.password !== undefined ? { password: target.password } : {}),
    db: target.db,
    // Only a master: a node whose INFO says otherwise (the sentinels' news is stale) is left and
    // the sentinels asked again.
    role: 'master',
    // A sentinel that accepts the connection and then never answers (frozen, overloaded) must not
    // hold the search for the master: without this ioredis waits for it forever.
    sentinelCommandTimeout: Math.max(timeout, 500),
    // When no sentinel answered, the next round. ioredis does not rewind its list of sentinels
    // after a success, so this also runs (once) on an ordinary reconnect: keep the first pause short.
    sentinelRetryStrategy: (times) => Math.min(50 * 2 ** Math.min(times - 1, 5), MAX_SENTINEL_RETRY_MS),
    // The failover watch below does this job, with its errors handled.
    failoverDetector: false,
  };
}

/**
 * Why a start against sentinels failed, in words an operator can act on, from ioredis' last
 * 'error' and 'sentinelError'. undefined when neither says anything sentinel-specific.
 */
export function explainSentinelFailure(target: SentinelTarget, lastError: unknown, lastSentinelError: unknown): string | undefined {
  const sentinelMessage = lastSentinelError === undefined ? '' : messageOf(lastSentinelError);
  // ioredis asks for the master's address (nil for an unknown name), then for the other
  // sentinels (an error for an unknown name): either message means the same.
  const sentinel = /sentinel (\S+) /.exec(sentinelMessage)?.[1];
  if (sentinel && /No such master with that name|invalid reply: null/.test(sentinelMessage)) {
    return `sentinel ${sentinel} answers but monitors no master named "${target.name}"`;
  }
  if (lastError !== undefined && messageOf(lastError).startsWith('All sentinels are unreachable')) {
    return 'none of the sentinels answered: are they running, and are their addresses right?';
  }
  return undefined;
}

export interface FailoverWatchOptions {
  target: SentinelTarget;
  connectTimeout: number;
  /** The master moved to `host:port`: rebuild the connection unless it is there already. */
  onSwitch(host: string, port: number): void;
  /** Connection trouble of a watch connection (rate-limited by the caller). */
  onError(msg: string, err: unknown): void;
}

/**
 * Subscribes to +switch-master on every configured sentinel; a message about our master calls
 * onSwitch. Best effort: a sentinel that is down is retried in the background, and the
 * connection follows a failover without the watch too (only later, once it notices). Every
 * sentinel announces the same switch: onSwitch must be idempotent.
 */
export class FailoverWatch {
  private readonly clients: Redis[] = [];
  private closed = false;

  constructor(private readonly options: FailoverWatchOptions) {}

  start(): void {
    const { target, connectTimeout } = this.options;
    for (const node of target.sentinels) {
      const client = new Redis({
        host: node.host,
        port: node.port,
        ...(target.sentinelPassword !== undefined ? { password: target.sentinelPassword } : {}),
        ...(target.tls ? { tls: {} } : {}),
        lazyConnect: true,
        connectTimeout,
        enableReadyCheck: false,
        // The SUBSCRIBE waits for the connection, however long; after a reconnect ioredis subscribes again.
        enableOfflineQueue: true,
        maxRetriesPerRequest: null,
        autoResubscribe: true,
        retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 6), 5000),
        connectionName: 'coatcheck-failover-watch',
        disableClientInfo: true,
      });
      client.on('error', (err: unknown) => this.options.onError('redis sentinel watch: connection error', err));
      client.on('message', (channel: string, message: string) => this.onMessage(channel, message));
      this.clients.push(client);
      client.subscribe(SWITCH_MASTER).catch((err: unknown) => {
        if (!this.closed) this.options.onError('redis sentinel watch: subscribe failed', err);
      });
    }
  }

  close(): void {
    this.closed = true;
    for (const c of this.clients) c.disconnect(false);
    this.clients.length = 0;
  }

  private onMessage(channel: string, message: string): void {
    if (this.closed || channel !== SWITCH_MASTER) return;
    const [name, , , host, port] = message.split(' ');
    if (name !== this.options.target.name || !host || !port) return;
    this.options.onSwitch(host, Number(port));
  }
}
