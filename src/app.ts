// createCoatcheck: wires config, store, session service, engine and HTTP server. No I/O at
// import; start() connects and listens, close() drains and releases everything.
import { createServer, type Server } from 'node:http';
import { Metrics } from './admin/metrics.js';
import { createAdminServer, type AdminServer, type Readiness } from './admin/server.js';
import type { AddressInfo, Socket } from 'node:net';
import { systemClock, type Clock } from './clock.js';
import type { Config } from './config/schema.js';
import { CookiePolicy } from './cookies/policy.js';
import type { Logger } from './log.js';
import type { PipelineDeps } from './pipeline/context.js';
import { createHandlers } from './pipeline/handler.js';
import { LiveConnections } from './live/connections.js';
import { proxyTrust } from './pipeline/headers.js';
import { TicketCookie } from './pipeline/ticket-cookie.js';
import { UndiciEngine, type ForwardEngine } from './proxy/engine.js';
import { SessionService } from './session/service.js';
import type { RandomSource } from './session/ticket.js';
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
  random?: RandomSource;
  metrics?: Metrics;
  /**
   * Serve the admin listener when the config names one (default true). A worker of several
   * leaves it to the primary, which answers for all of them (workers/primary.ts).
   */
  serveAdmin?: boolean;
}

export interface Coatcheck {
  /** Connects the store and listens; resolves with the proxy's address (and the admin one, when configured). */
  start(): Promise<{ host: string; port: number; admin?: { host: string; port: number } }>;
  close(): Promise<void>;
  /** Can this instance serve now: not draining, and its store answers (what /readyz says). */
  readiness(): Promise<Readiness>;
  readonly server: Server;
  readonly store: SessionStore;
  readonly metrics: Metrics;
  /** Open WebSockets and streaming responses, by session. */
  readonly live: LiveConnections;
}

/** Everything the pipeline shares, built from the configuration and a store: no socket is opened. */
export function createPipelineDeps(deps: CoatcheckDeps & { store: SessionStore }): PipelineDeps {
  const { config, logger, store } = deps;
  const clock = deps.clock ?? systemClock;
  const metrics = deps.metrics ?? new Metrics({ defaultMetrics: config.admin.listen !== null });
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
  return {
    config,
    service,
    engine: deps.engine ?? new UndiciEngine({ origin: config.upstream, timeout: config.upstreamTimeout }),
    clock,
    logger,
    metrics,
    cookies: new CookiePolicy({ ticketName: config.cookie.name, managed: config.session.managed, passthrough: config.session.passthrough }),
    ticket: new TicketCookie(config.cookie.name, config.cookie, config.session.absoluteTimeout),
    onCookieCleared: new Set(config.logout.onCookieCleared),
    strippedCookieNames: new Set(),
    proxies: proxyTrust(config.trustProxy),
    live: new LiveConnections({ service, feed: store.revocationFeed, clock, logger, metrics, maxWebSockets: config.websocket.maxConnections }),
  };
}

/** The proxy's HTTP server, with the socket-level answers (CONNECT, malformed requests) that come before any stage. */
function createProxyServer(pipeline: PipelineDeps): { server: Server; sockets: Set<Socket> } {
  const { config, logger } = pipeline;
  const handlers = createHandlers(pipeline);
  const server = createServer({ maxHeaderSize: config.limits.maxHeaderSize }, handlers.request);
  // WebSocket handshakes (and any other request with Connection: Upgrade): handler.ts.
  server.on('upgrade', handlers.upgrade);
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
  return { server, sockets };
}

/**
 * Stops accepting, lets in-flight requests and open WebSockets go on until the deadline, then
 * closes the WebSockets (close code 1001) and the remaining connections.
 */
async function drain(server: Server, sockets: Set<Socket>, timeoutMs: number, logger: Logger, live: LiveConnections): Promise<void> {
  const drained = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  const result = await Promise.race([drained.then(() => 'drained' as const), deadline]);
  clearTimeout(timer);
  if (result === 'timeout') {
    logger.warn({ event: 'shutdown.deadline', open: sockets.size, webSockets: live.openWebSockets }, 'in-flight requests did not finish in time; closing their connections');
    // WebSockets first, with a proper close frame (1001); each is destroyed if it takes longer than a second.
    await live.closeWebSockets();
    server.closeAllConnections();
    for (const s of sockets) s.destroy();
    await drained;
  }
}

function listen(server: Server, port: number, host: string): Promise<AddressInfo> {
  return new Promise<AddressInfo>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve(server.address() as AddressInfo);
    });
  });
}

export function createCoatcheck(deps: CoatcheckDeps): Coatcheck {
  const { config, logger } = deps;
  const store = deps.store ?? createStore(config.store, { clock: deps.clock ?? systemClock, logger });
  const pipeline = createPipelineDeps({ ...deps, store });
  const { engine, metrics, live } = pipeline;
  metrics.watchStore(store);
  const { server, sockets } = createProxyServer(pipeline);

  let started = false;
  let closing: Promise<void> | undefined;
  const readiness = async (): Promise<Readiness> => {
    if (closing !== undefined) return { ready: false, reason: 'draining' };
    try {
      await store.ping();
      return { ready: true, reason: 'ready' };
    } catch {
      return { ready: false, reason: 'store unavailable' };
    }
  };
  const admin: AdminServer | undefined =
    config.admin.listen !== null && deps.serveAdmin !== false
      ? createAdminServer({
          logger,
          readiness,
          metrics: async () => ({ text: await metrics.registry.metrics(), contentType: metrics.registry.contentType }),
        })
      : undefined;

  return {
    server,
    store,
    metrics,
    live,
    readiness,
    async start() {
      await store.start();
      await live.start();
      const addr = await listen(server, config.listen.port, config.listen.host);
      started = true;
      if (admin && config.admin.listen !== null) {
        const a = await admin.start(config.admin.listen.host, config.admin.listen.port);
        return { host: addr.address, port: addr.port, admin: a };
      }
      return { host: addr.address, port: addr.port };
    },
    close() {
      closing ??= (async () => {
        live.stopAccepting();
        if (started) await drain(server, sockets, config.shutdownTimeout, logger, live);
        live.stop();
        await admin?.close();
        await engine.close().catch(() => undefined);
        await store.close();
      })();
      return closing;
    },
  };
}
