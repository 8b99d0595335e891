// createCoatcheck: wires config, store, session service, engine and HTTP server. No I/O at
// import; start() connects and listens, close() drains and releases everything.
import { createServer, type Server } from 'node:http';
import { Metrics } from './admin/metrics.js';
import { createAdminServer, type AdminServer } from './admin/server.js';
import type { AddressInfo, Socket } from 'node:net';
import { systemClock, type Clock } from './clock.js';
import type { Config } from './config/schema.js';
import { CookiePolicy } from './cookies/policy.js';
import type { Logger } from './log.js';
import type { PipelineDeps } from './pipeline/context.js';
import { createHandler } from './pipeline/handler.js';
import { TicketCookie } from './pipeline/ticket-cookie.js';
import { UndiciEngine, type ForwardEngine } from './proxy/engine.js';
import { SessionService } from './session/service.js';
import { createStore } from './store/index.js';
import type { SessionStore } from './store/types.js';

export interface CoatcheckDeps {
  config: Readonly<Config>;
  logger: Logger;
  clock?: Clock;
  /** Defaults to the store the config names. */
  store?: SessionStore;
  /** Defaults to an undici pool to config.upstream. */
  engine?: ForwardEngine;
  random?: (size: number) => Buffer;
  metrics?: Metrics;
}

export interface Coatcheck {
  /** Connects the store and listens; resolves with the proxy's address (and the admin one, when configured). */
  start(): Promise<{ host: string; port: number; admin?: { host: string; port: number } }>;
  close(): Promise<void>;
  readonly server: Server;
  readonly store: SessionStore;
  readonly metrics: Metrics;
}

export function createCoatcheck(deps: CoatcheckDeps): Coatcheck {
  const { config, logger } = deps;
  const clock = deps.clock ?? systemClock;
  const store = deps.store ?? createStore(config.store, { clock, logger });
  const engine = deps.engine ?? new UndiciEngine({ origin: config.upstream, timeout: config.upstreamTimeout });
  const service = new SessionService({
    store,
    secrets: config.secrets,
    timeouts: {
      idleTimeout: config.session.idleTimeout,
      absoluteTimeout: config.session.absoluteTimeout,
      renewAfter: config.session.renewAfter,
      renewGrace: config.session.renewGrace,
    },
    limits: { maxCookiesPerSession: config.limits.maxCookiesPerSession, maxJarBytes: config.limits.maxJarBytes },
    clock,
    logger,
    ...(deps.random ? { random: deps.random } : {}),
  });
  const metrics = deps.metrics ?? new Metrics({ defaultMetrics: config.admin.listen !== null });
  const pipelineDeps: PipelineDeps = {
    config,
    service,
    engine,
    clock,
    logger,
    metrics,
    cookies: new CookiePolicy({ ticketName: config.cookie.name, managed: config.session.managed, passthrough: config.session.passthrough }),
    ticket: new TicketCookie(config.cookie.name, config.cookie, config.session.absoluteTimeout),
    onCookieCleared: new Set(config.logout.onCookieCleared),
  };

  const server = createServer({ maxHeaderSize: config.limits.maxHeaderSize }, createHandler(pipelineDeps));
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  // coatcheck proxies one app, never tunnels: CONNECT gets a clear 405 instead of a dropped socket.
  server.on('connect', (_req, socket: Socket) => {
    socket.end('HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    logger.debug({ event: 'client.error', code: err.code }, 'malformed request from a client');
    if (!socket.writable || (err as { bytesParsed?: number }).bytesParsed === undefined) {
      socket.destroy();
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
    socket.end(`HTTP/1.1 ${status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
  });

  let started = false;
  let closing: Promise<void> | undefined;
  const admin: AdminServer | undefined =
    config.admin.listen !== null ? createAdminServer({ metrics, store, logger, isDraining: () => closing !== undefined }) : undefined;

  return {
    server,
    store,
    metrics,
    async start() {
      await store.start();
      await new Promise<void>((resolve, reject) => {
        const onError = (err: Error) => reject(err);
        server.once('error', onError);
        server.listen(config.listen.port, config.listen.host, () => {
          server.off('error', onError);
          resolve();
        });
      });
      started = true;
      const addr = server.address() as AddressInfo;
      if (admin && config.admin.listen) {
        const a = await admin.start(config.admin.listen.host, config.admin.listen.port);
        return { host: addr.address, port: addr.port, admin: a };
      }
      return { host: addr.address, port: addr.port };
    },
    close() {
      closing ??= (async () => {
        if (started) {
          const drained = new Promise<void>((resolve) => server.close(() => resolve()));
          server.closeIdleConnections();
          let timer: NodeJS.Timeout | undefined;
          const deadline = new Promise<'timeout'>((resolve) => {
            timer = setTimeout(() => resolve('timeout'), config.shutdownTimeout);
          });
          const result = await Promise.race([drained.then(() => 'drained' as const), deadline]);
          clearTimeout(timer);
          if (result === 'timeout') {
            logger.warn({ event: 'shutdown.deadline', open: sockets.size }, 'in-flight requests did not finish in time; closing their connections');
            server.closeAllConnections();
            for (const s of sockets) s.destroy();
            await drained;
          }
        }
        await admin?.close();
        await engine.close().catch(() => undefined);
        await store.close();
      })();
      return closing;
    },
  };
}
