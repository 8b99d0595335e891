// The Redis store's revocation feed (../revocations.ts): every revoking write is announced to
// this process at once and PUBLISHed on `<prefix>revocations`; a dedicated subscriber
// connection hears what other processes publish.
//
// One subscriber connection of its own (a connection in subscribe mode can run nothing else),
// to the node that holds the data: the URL's server, the master the sentinels name, or any
// node of a cluster (on Redis Cluster a PUBLISH is broadcast to every node, so one node hears
// all of them; the seed nodes are tried in turn). ioredis' own Cluster subscriber is not used:
// it swallows its errors and says nothing when it re-subscribes, and a re-subscription is
// exactly what must be known here.
//
// When the subscription is lost, revocations made elsewhere meanwhile are missed: the loss is
// logged and shown (connected() false, the coatcheck_revocation_feed_up gauge), the connection
// is made again (backoff capped at 1 s), and once subscribed again the listener is told
// (resynced) so that every open connection's session is checked against the store. A publish
// that fails is logged; the session is revoked all the same (the store's write went through),
// and other processes find out at their next periodic check (LiveConnections).
import { Redis, type RedisOptions } from 'ioredis';
import { StoreUnavailableError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { decodeRevocation, deliver, encodeRevocation, type Revocation, type RevocationFeed, type RevocationListener } from '../revocations.js';
import { messageOf } from './redact.js';
import { sentinelOptions } from './sentinel.js';
import { describeTarget, type RedisTarget } from './target.js';

/** Longest pause between two attempts to subscribe again. */
const MAX_RETRY_DELAY_MS = 1000;
/** At most one error line per this many ms. */
const ERROR_LOG_INTERVAL_MS = 10_000;
export const SUBSCRIBER_NAME = 'coatcheck-revocations';

export interface RedisRevocationFeedOptions {
  target: RedisTarget;
  prefix: string;
  timeout: number;
  connectTimeout: number;
  log: Logger;
  /** Sends a PUBLISH on the store's connection (failures as StoreUnavailableError). */
  publish(channel: string, message: string): Promise<unknown>;
}

export class RedisRevocationFeed implements RevocationFeed {
  readonly channel: string;
  private readonly options: RedisRevocationFeedOptions;
  private readonly log: Logger;
  private listener: RevocationListener | undefined;
  private conn: Redis | undefined;
  private attempts = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private subscribed = false;
  private everSubscribed = false;
  private closed = false;
  private lastErrorLog = -Infinity;
  private firstSubscribe: (() => void) | undefined;

  constructor(options: RedisRevocationFeedOptions) {
    this.options = options;
    this.channel = `${options.prefix}revocations`;
    this.log = options.log.child({ connection: SUBSCRIBER_NAME });
  }

  listen(listener: RevocationListener): Promise<void> {
    if (this.closed) return Promise.reject(new StoreUnavailableError('redis session store is closed'));
    this.listener = listener;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.firstSubscribe = undefined;
        reject(new StoreUnavailableError(`redis at ${describeTarget(this.options.target)}: could not subscribe to the revocation channel within ${this.options.connectTimeout}ms`));
      }, this.options.connectTimeout);
      this.firstSubscribe = () => {
        clearTimeout(timer);
        resolve();
      };
      this.open();
    });
  }

  connected(): boolean {
    return this.subscribed;
  }

  /** Delivers a revocation here at once, then publishes it to the other processes. */
  async announce(revocation: Revocation): Promise<void> {
    deliver(this.listener, revocation, this.log);
    try {
      await this.options.publish(this.channel, encodeRevocation(revocation));
    } catch (err) {
      this.log.warn(
        { event: 'store.revocation_publish_failed', err: messageOf(err) },
        'a revocation could not be published: other instances end its connections at their next periodic check',
      );
    }
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    const conn = this.conn;
    this.conn = undefined;
    this.subscribed = false;
    conn?.disconnect(false);
  }

  /** A new subscriber connection (none of ioredis' reconnects: a lost one is replaced here, see retry). */
  private open(): void {
    if (this.closed) return;
    const conn = new Redis(this.connectionOptions(this.attempts));
    this.conn = conn;
    conn.on('error', (err: unknown) => this.logError(err));
    conn.on('message', (channel: string, message: string) => {
      if (channel !== this.channel) return;
      const revocation = decodeRevocation(message);
      if (revocation === undefined) {
        this.log.warn({ event: 'store.revocation_invalid' }, 'ignored a message on the revocation channel that is not a revocation');
        return;
      }
      deliver(this.listener, revocation, this.log);
    });
    conn.once('end', () => {
      if (this.conn !== conn) return;
      this.conn = undefined;
      this.lost();
      this.retry();
    });
    conn
      .connect()
      .then(() => conn.subscribe(this.channel))
      .then(() => {
        if (this.conn !== conn) return;
        this.attempts = 0;
        this.gained();
      })
      .catch((err: unknown) => {
        this.logError(err);
        // 'end' follows and schedules the next attempt.
        conn.disconnect(false);
      });
  }

  private retry(): void {
    if (this.closed) return;
    this.attempts += 1;
    const delay = Math.min(50 * 2 ** Math.min(this.attempts, 5), MAX_RETRY_DELAY_MS);
    this.retryTimer = setTimeout(() => this.open(), delay);
    this.retryTimer.unref();
  }

  private gained(): void {
    this.subscribed = true;
    const first = this.firstSubscribe;
    this.firstSubscribe = undefined;
    first?.();
    if (!this.everSubscribed) {
      this.everSubscribed = true;
      return;
    }
    this.log.info({ event: 'store.revocations_resubscribed' }, 'subscribed to the revocation channel again: open connections are checked against the store');
    this.listener?.resynced();
  }

  private lost(): void {
    if (!this.subscribed) return;
    this.subscribed = false;
    if (this.closed) return;
    this.log.warn(
      { event: 'store.revocations_lost' },
      'lost the subscription to the revocation channel: logouts on other instances do not close connections here until it is back (then every open connection is checked)',
    );
  }

  private connectionOptions(attempt: number): RedisOptions {
    const { target, timeout, connectTimeout } = this.options;
    const base: RedisOptions = {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResubscribe: false,
      autoResendUnfulfilledCommands: false,
      // A lost connection ends; open() makes the next one (on a cluster, to the next seed node).
      retryStrategy: () => null,
      commandTimeout: timeout,
      connectTimeout,
      disconnectTimeout: 100,
      connectionName: SUBSCRIBER_NAME,
      disableClientInfo: true,
    };
    switch (target.mode) {
      case 'single':
        return { ...urlOptions(target.url), ...base };
      case 'sentinel':
        return sentinelOptions(target, base, timeout);
      case 'cluster': {
        const node = target.nodes[attempt % target.nodes.length] as { host: string; port: number };
        return {
          ...base,
          host: node.host,
          port: node.port,
          ...(target.username !== undefined ? { username: target.username } : {}),
          ...(target.password !== undefined ? { password: target.password } : {}),
        };
      }
    }
  }

  private logError(err: unknown): void {
    if (this.closed) return;
    const now = Date.now();
    if (now - this.lastErrorLog < ERROR_LOG_INTERVAL_MS) return;
    this.lastErrorLog = now;
    this.log.warn({ event: 'store.revocations_error', err: messageOf(err) }, 'revocation channel connection error');
  }
}

/** The ioredis options a redis:// or rediss:// URL names (ioredis parses it the same way for new Redis(url)). */
function urlOptions(url: string): RedisOptions {
  const u = new URL(url);
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0;
  return {
    host: u.hostname.replace(/^\[|\]$/g, '') || 'localhost',
    port: u.port ? Number(u.port) : 6379,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(Number.isInteger(db) ? { db } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}
