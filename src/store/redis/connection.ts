// One ioredis connection, the fail-fast way: how it is made, waited for, and ended. With
// cluster.ts, the only file that reaches past ioredis' typed API (see IoredisInternals).
//
// Fail fast: no offline queue, a per-command timeout, no per-command retries, an explicit
// connect (waitReady). Once up, the connection reconnects forever in the background (backoff
// capped at 1s) so the proxy recovers by itself; with sentinels each attempt asks them where
// the master is (sentinel.ts). A Redis Cluster is one client over a connection per node
// (cluster.ts); the functions below take either.
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { StoreUnavailableError } from '../../errors.js';
import { createClusterConnection } from './cluster.js';
import { messageOf, sanitize } from './redact.js';
import { defineScripts, type ScriptedRedis } from './scripts.js';
import { isDemotionError, sentinelOptions } from './sentinel.js';
import type { RedisTarget } from './target.js';

/** Longest pause between reconnect attempts. */
const MAX_RECONNECT_DELAY_MS = 1000;

/**
 * The parts of an ioredis 5.9 client used beyond its typed API, reached through internals()
 * and nowhere else; check them on an ioredis upgrade (the redis store tests notice when they
 * move).
 * - `stream`, the socket: typed as always there, but absent before the first connect. Corked
 *   to write one turn's commands at once (socketOf); destroyed to drop a connection at once.
 *   Its remote address says which node a sentinel-made connection reached (peerOf).
 * - `socketTimeoutTimer` (private): ioredis 5.9 keeps it when the socket goes away without an
 *   answer, so it would outlive the client by up to socketTimeout unless cleared.
 */
interface IoredisInternals {
  stream?: { cork?: () => void; uncork: () => void; writable?: boolean; destroy?: () => void; remoteAddress?: string; remotePort?: number };
  socketTimeoutTimer?: ReturnType<typeof setTimeout>;
}

function internals(client: Redis): IoredisInternals {
  return client as unknown as IoredisInternals;
}

/**
 * A new client for `target`, the store's scripts defined on it, not connected yet (waitReady
 * connects). `timeout` is the per-command timeout, in ms.
 */
export function createConnection(target: RedisTarget, timeout: number, connectTimeout: number, name = 'coatcheck', onDropped?: () => void): ScriptedRedis {
  const options: RedisOptions = {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    // A command cut off by a dropped connection fails; it is never replayed later.
    autoResendUnfulfilledCommands: false,
    commandTimeout: timeout,
    connectTimeout,
    // A connection that stops answering (peer frozen, packets dropped) is torn down and
    // rebuilt instead of timing out every command forever.
    socketTimeout: Math.max(2000, timeout * 4),
    // ioredis ends a dropped socket politely, then destroys it after this long.
    disconnectTimeout: 100,
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 5), MAX_RECONNECT_DELAY_MS),
    connectionName: name,
    disableClientInfo: true,
    // A node that is no master any more (READONLY, UNBLOCKED): the command fails, never resent,
    // and the connection is rebuilt, which finds the master again (sentinel.ts).
    reconnectOnError: (err) => isDemotionError(err),
  };
  switch (target.mode) {
    case 'single':
      return defineScripts(new Redis(target.url, options));
    case 'sentinel':
      return defineScripts(new Redis(sentinelOptions(target, options, timeout)));
    case 'cluster':
      return createClusterConnection(target, timeout, connectTimeout, onDropped, name);
  }
}

/**
 * Connects; resolves on 'ready', rejects with StoreUnavailableError (naming `address`) after
 * `connectTimeout` ms, or when the client gives up. `explain` may put the last errors in better
 * words (see explainSentinelFailure).
 */
export function waitReady(
  client: Redis | Cluster,
  connectTimeout: number,
  address: string,
  explain?: (lastError: unknown, lastSentinelError: unknown) => string | undefined,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let lastError: unknown;
    let lastSentinelError: unknown;
    const finish = (err?: StoreUnavailableError) => {
      clearTimeout(timer);
      client.off('ready', onReady);
      client.off('end', onEnd);
      client.off('error', onErr);
      client.off('sentinelError', onSentinelErr);
      client.off('node error', onErr);
      if (err) reject(err);
      else resolve();
    };
    const fail = (why: string) => {
      const detail = explain?.(lastError, lastSentinelError) ?? (lastError !== undefined ? messageOf(lastError) : undefined);
      finish(
        new StoreUnavailableError(
          `redis at ${address} is not reachable (${why}${detail !== undefined ? `: ${detail}` : ''})`,
          lastError !== undefined ? { cause: sanitize(lastError) } : undefined,
        ),
      );
    };
    const onReady = () => finish();
    const onEnd = () => fail('connection closed');
    const onErr = (err: unknown) => {
      // A cluster that could not read its slot table says why in the last node's error.
      lastError = (err as { lastNodeError?: unknown } | undefined)?.lastNodeError ?? err;
    };
    const onSentinelErr = (err: unknown) => {
      lastSentinelError = err;
    };
    const timer = setTimeout(() => fail(`no answer within ${connectTimeout}ms`), connectTimeout);
    client.once('ready', onReady);
    client.once('end', onEnd);
    client.on('error', onErr);
    client.on('sentinelError', onSentinelErr);
    // A cluster's seed nodes report their own failures (a Redis never emits this).
    client.on('node error', onErr);
    // A refused first attempt rejects here; the retry strategy keeps trying until the timer.
    client.connect().catch((err: unknown) => {
      lastError ??= err;
    });
  });
}

/** Ends a connection: QUIT when it is up (waiting at most `quitTimeout` ms), then drops it. */
export async function endConnection(client: Redis | Cluster, quitTimeout: number): Promise<void> {
  if (client.status === 'ready') {
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

/** Stops the reconnect loop and destroys the socket at once, leaving no timer behind. */
export function dropConnection(client: Redis | Cluster): void {
  if (client instanceof Cluster) {
    // Each node connection as one server's (disconnect() ends them politely only).
    const nodes = client.nodes('all');
    client.disconnect(false);
    for (const node of nodes) dropConnection(node);
    return;
  }
  client.disconnect(false);
  const io = internals(client);
  // disconnect() ends the socket politely and waits for the peer; a frozen peer never answers.
  io.stream?.destroy?.();
  if (io.socketTimeoutTimer !== undefined) {
    clearTimeout(io.socketTimeoutTimer);
    io.socketTimeoutTimer = undefined;
  }
}

/** The connection's socket, when it has one that can be corked and is writable. */
export function corkableSocket(client: Redis | Cluster): { cork(): void; uncork(): void } | undefined {
  // A cluster writes to one socket per node: nothing to cork here, each command goes at once.
  if (client instanceof Cluster) return undefined;
  const stream = internals(client).stream;
  if (stream === undefined || typeof stream.cork !== 'function' || stream.writable === false) return undefined;
  return stream as { cork(): void; uncork(): void };
}

/** "host:port" of the node the connection is up to, when it is ready. */
export function peerOf(client: Redis | Cluster): string | undefined {
  if (client instanceof Cluster) return undefined;
  const stream = internals(client).stream;
  if (client.status !== 'ready' || stream?.remoteAddress === undefined || stream.remotePort === undefined) return undefined;
  return `${stream.remoteAddress}:${stream.remotePort}`;
}
