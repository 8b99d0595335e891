// createCoatcheck: wires config, store, session service, engine and HTTP server. No I/O at
// import; start() connects and listens, close() drains and releases everything.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { Metrics } from './admin/metrics.js';
import { createAdminServer, type AdminServer, type Readiness } from './admin/server.js';
import type { AddressInfo, Socket } from 'node:net';
import { systemClock, type Clock } from './clock.js';
import { planReload } from './config/reload.js';
import type { Config } from './config/schema.js';
import { CookiePolicy } from './cookies/policy.js';
import type { Logger } from './log.js';
import type { PipelineDeps } from './pipeline/context.js';
import { createHandlers, type Handlers } from './pipeline/handler.js';
import { LiveConnections } from './live/connections.js';
import { proxyTrust } from './pipeline/headers.js';
import { TicketCookie } from './pipeline/ticket-cookie.js';
import { UndiciEngine, type ForwardEngine } from './proxy/engine.js';
import { SessionService } from './session/service.js';
import type { RandomSource } from './session/ticket.js';
import { createStore } from './store/index.js';
import type { SessionStore } from './store/types.js';
import { createRedirectServer, readTlsFiles } from './tls.js';

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
  /** The open WebSockets and streams (a reload keeps the running one). */
  live?: LiveConnections;
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
  /**
   * Runs `next` from now on (SIGHUP, README "Live reload"): requests already in flight finish
   * under the configuration they started with. Keys bound to sockets, the store or the workers
   * keep their running value (config/reload.ts). Logs `config.reloaded`. Rejects, changing
   * nothing, when a TLS file cannot be read.
   */
  reload(next: Readonly<Config>): Promise<{ changed: string[]; kept: string[] }>;
  /** The configuration new requests run under. */
  readonly config: Readonly<Config>;
  /** An https.Server when `tls` is set. */
  readonly server: Server | HttpsServer;
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
    maxPerUser: config.session.maxPerUser,
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
    fingerprints: store,
    // One registry for the process, kept across reloads (createCoatcheck passes it on).
    live: deps.live ?? new LiveConnections({ service, feed: store.revocationFeed, clock, logger, metrics, maxWebSockets: config.websocket.maxConnections }),
  };
}

type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * The proxy's HTTP (or, with `tls`, HTTPS: its certificate is set at start) server, with the
 * socket-level answers (CONNECT, malformed requests) that come before any stage, and WebSocket
 * handshakes (and any other request with Connection: Upgrade: handler.ts) sent to `upgrade`.
 */
function createProxyServer(
  config: Readonly<Config>,
  logger: Logger,
  listener: RequestListener,
  upgrade: Handlers['upgrade'],
): { server: Server | HttpsServer; sockets: Set<Socket> } {
  const server = config.tls
    ? createHttpsServer({ maxHeaderSize: config.limits.maxHeaderSize }, listener)
    : createServer({ maxHeaderSize: config.limits.maxHeaderSize }, listener);
  server.on('upgrade', upgrade);
  // A failed handshake (a scanner, a client that refuses the certificate): nothing to answer.
  server.on('tlsClientError', (err: NodeJS.ErrnoException) => logger.debug({ event: 'tls.client_error', code: err.code }, 'TLS handshake failed'));
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
async function drain(server: Server | HttpsServer, sockets: Set<Socket>, timeoutMs: number, logger: Logger, live: LiveConnections): Promise<void> {
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

function listen(server: Server | HttpsServer, port: number, host: string): Promise<AddressInfo> {
  return new Promise<AddressInfo>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve(server.address() as AddressInfo);
    });
  });
}

/**
 * One configuration's pipeline and the requests running under it. A reload starts a new
 * generation; the old one's requests finish with their own deps, and its upstream pool (when the
 * upstream changed) closes once they are done.
 */
interface Generation {
  pipeline: PipelineDeps;
  handlers: Handlers;
  inFlight: number;
  retired: boolean;
}

export function createCoatcheck(deps: CoatcheckDeps): Coatcheck {
  const { logger } = deps;
  let config = deps.config;
  const store = deps.store ?? createStore(config.store, { clock: deps.clock ?? systemClock, logger });
  const generation = (pipeline: PipelineDeps): Generation => ({ pipeline, handlers: createHandlers(pipeline), inFlight: 0, retired: false });
  let current = generation(createPipelineDeps({ ...deps, store }));
  const { metrics, live } = current.pipeline;
  metrics.watchStore(store);
  const engines = new Set<ForwardEngine>([current.pipeline.engine]);
  const retire = (g: Generation): void => {
    const engine = g.pipeline.engine;
    if (g.retired && g.inFlight === 0 && engine !== current.pipeline.engine && engines.delete(engine)) {
      engine.close().catch(() => undefined);
    }
  };
  const { server, sockets } = createProxyServer(config, logger, (req, res) => {
    const g = current;
    g.inFlight++;
    res.once('close', () => {
      g.inFlight--;
      retire(g);
    });
    g.handlers.request(req, res);
  },
  // An upgrade runs under the generation of its handshake; the connection it opens outlives it.
  (req, socket, head) => current.handlers.upgrade(req, socket, head));
  const redirect = config.tls?.redirectFrom ? createRedirectServer(() => (server.address() as AddressInfo | null)?.port ?? 443, logger) : undefined;

  let started = false;
  let closing: Promise<void> | undefined;
  const readiness = async (): Promise<Readiness> => {
    if (closing !== undefined) return { ready: false, reason: 'draining' };
    try {
      await store.ping();
      return { ready: true, reason: 'ready' };
    } catch {
      // Report-only never blocks on the store (fail-open): without it the instance still serves.
      if (config.mode === 'report-only') return { ready: true, reason: 'ready (report-only: store unavailable, replays not reported)' };
      return { ready: false, reason: 'store unavailable' };
    }
  };
  const admin: AdminServer | undefined =
    config.admin.listen !== null && deps.serveAdmin !== false
      ? createAdminServer({
          logger,
          readiness,
          metrics: async () => ({ text: await metrics.registry.metrics(), contentType: metrics.registry.contentType }),
          sessions: {
            token: config.admin.token,
            // The directory of the configuration running now (its keys come from the secrets, which a reload may change).
            backend: {
              list: (user) => current.pipeline.service.directory.list(user),
              revokeUser: (user) => current.pipeline.service.directory.revokeUser(user),
              revokeLogId: (logId) => current.pipeline.service.directory.revokeLogId(logId),
              revokeAll: () => current.pipeline.service.directory.revokeAll(),
            },
            onRevoked: (n) => metrics.sessions.inc({ action: 'revoked' }, n),
          },
        })
      : undefined;

  return {
    server,
    store,
    metrics,
    live,
    readiness,
    get config() {
      return config;
    },
    async reload(next) {
      const plan = planReload(config, next);
      // Read before anything changes: a file that cannot be read leaves everything as it was.
      const tls = plan.config.tls && 'setSecureContext' in server ? await readTlsFiles(plan.config.tls) : undefined;
      if (tls && 'setSecureContext' in server) server.setSecureContext(tls);
      const upstreamChanged = plan.config.upstream !== config.upstream || plan.config.upstreamTimeout !== config.upstreamTimeout;
      const previous = current;
      const pipeline = createPipelineDeps({
        ...deps,
        config: plan.config,
        store,
        metrics,
        live,
        engine: deps.engine ?? (upstreamChanged ? new UndiciEngine({ origin: plan.config.upstream, timeout: plan.config.upstreamTimeout }) : previous.pipeline.engine),
      });
      pipeline.strippedCookieNames = previous.pipeline.strippedCookieNames;
      // Open connections are checked and touched through the new service (its secrets) from now on.
      live.useService(pipeline.service);
      engines.add(pipeline.engine);
      current = generation(pipeline);
      config = plan.config;
      logger.level = config.log.level;
      previous.retired = true;
      retire(previous);
      if (plan.kept.length > 0) {
        logger.warn(
          { event: 'config.reload_kept', keys: plan.kept },
          `these keys cannot change without a restart and keep their running value: ${plan.kept.join(', ')}`,
        );
      }
      // Key names only: never a value (secrets, passwords).
      logger.info(
        { event: 'config.reloaded', changed: plan.changed, kept: plan.kept, tlsFilesReread: tls !== undefined, inFlight: previous.inFlight },
        plan.changed.length > 0 ? `configuration reloaded: ${plan.changed.join(', ')} changed` : 'configuration reloaded: nothing changed',
      );
      return { changed: plan.changed, kept: plan.kept };
    },
    async start() {
      await store.start();
      if (config.tls && 'setSecureContext' in server) server.setSecureContext(await readTlsFiles(config.tls));
      await live.start();
      const addr = await listen(server, config.listen.port, config.listen.host);
      started = true;
      if (redirect && config.tls?.redirectFrom) await listen(redirect, config.tls.redirectFrom.port, config.tls.redirectFrom.host);
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
        if (redirect?.listening) {
          redirect.closeAllConnections();
          await new Promise<void>((resolve) => redirect.close(() => resolve()));
        }
        await admin?.close();
        await Promise.all([...engines].map((e) => e.close().catch(() => undefined)));
        await store.close();
      })();
      return closing;
    },
  };
}
