// Runs one request through the request stages, the engine and the response stages, then streams
// the body. The one place that answers the client: a stage only says what should happen (an
// Outcome, or a thrown error), and finish() acts on it. The flow is in README.md, "How it works".
import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { UpgradeOutcome } from '../admin/metrics.js';
import { CoatcheckError } from '../errors.js';
import { WebSocketTunnel } from '../live/tunnel.js';
import { fail, RequestContext, type Outcome, type PipelineDeps, type Stage, type StageResult } from './context.js';
import { mapUpstreamError, isAbort } from '../proxy/error-map.js';
import { FormBody } from './form-method.js';
import { requestIdOf } from './headers.js';
import { replyError, replyReject } from './reply.js';
import { reportOnlyStages, type StageLists } from './report-only.js';
import { REQUEST_STAGES } from './request.js';
import { RESPONSE_STAGES } from './response.js';

const ENFORCE_STAGES: StageLists = { request: REQUEST_STAGES, response: RESPONSE_STAGES };

/** The path as the access log shows it: `;` path parameters (`;jsessionid=…`) dropped, as the query is. */
export function loggedPath(pathname: string): string {
  return pathname.indexOf(';') === -1 ? pathname : pathname.replace(/;[^/]*/g, '');
}

function hasBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  if (len !== undefined) return len !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

/** The response's request, for the shared 'close' listener (no closure per request). */
const kContext = Symbol('coatcheck.context');
type TaggedResponse = ServerResponse & { [kContext]?: RequestContext };

/** What the proxy's server listens with: ordinary requests, and upgrades (Node's 'upgrade' event). */
export interface Handlers {
  request(req: IncomingMessage, res: ServerResponse): void;
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
}

export function createHandler(deps: PipelineDeps): (req: IncomingMessage, res: ServerResponse) => void {
  return createHandlers(deps).request;
}

export function createHandlers(deps: PipelineDeps): Handlers {
  const access = deps.config.log.access;
  const { metrics } = deps;
  /** Counter children by status code: no label object and hash per request. */
  const byStatus = new Map<number, { inc(): void }>();
  const stages = deps.config.mode === 'report-only' ? reportOnlyStages(deps) : ENFORCE_STAGES;

  function onClose(this: TaggedResponse): void {
    const ctx = this[kContext] as RequestContext;
    const status = this.statusCode;
    let counter = byStatus.get(status);
    if (counter === undefined) {
      counter = metrics.requests.labels(String(status));
      if (byStatus.size < 1000) byStatus.set(status, counter);
    }
    counter.inc();
    const ms = performance.now() - ctx.started;
    metrics.duration.observe(ms / 1000);
    const complete = this.writableFinished;
    // A response coatcheck cut itself was logged as what cut it (upstream.body_failed,
    // request.failed): only an incomplete response nobody here cut is the client's doing.
    if (!complete && ctx.cutBy === undefined) {
      ctx.aborted = true;
      ctx.forwarding?.abort();
      ctx.log.info({ event: 'client.aborted' }, 'client went away before the response was complete');
    }
    if (access) {
      const line = { event: 'access', method: ctx.method, path: loggedPath(ctx.pathname), status, ms: Math.round(ms * 10) / 10 };
      ctx.log.info(complete ? line : { ...line, incomplete: ctx.cutBy ?? 'client' }, 'request');
    }
  }

  const request = (req: IncomingMessage, res: ServerResponse): void => {
    const ctx = new RequestContext(requestIdOf(req), req, res, deps.logger);
    (res as TaggedResponse)[kContext] = ctx;
    res.on('close', onClose);
    run(ctx, deps, stages).catch((err: unknown) => finish(ctx, deps, fail(err)));
  };

  /**
   * Node hands every request with `Connection: Upgrade` here, with its socket. A WebSocket
   * handshake runs through the same stages as any request (then the engine's upgrade(); a 101
   * becomes a tunnel); any other upgrade (h2c, …) is served as the ordinary request it also is,
   * its `Upgrade` dropped as before. Either way the answer is written through a ServerResponse
   * on the socket, and the connection closes after it unless it became a WebSocket.
   */
  const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', noop);
    // Node stopped parsing at the head: a body would have to be parsed here; none is taken (a
    // WebSocket handshake has none, RFC 6455 §4.1).
    if (hasBody(req)) {
      socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    if (!isWebSocketUpgrade(req)) {
      request(req, detachedResponse(req, socket as Socket));
      return;
    }
    // Bytes the client sent after its handshake: they go to the app once the tunnel is open.
    if (head.length > 0) socket.unshift(head);
    const res = detachedResponse(req, socket as Socket);
    const ctx = new RequestContext(requestIdOf(req), req, res, deps.logger);
    ctx.upgrade = true;
    (res as TaggedResponse)[kContext] = ctx;
    res.on('close', onClose);
    if (!deps.config.websocket.enabled) return refuseUpgrade(ctx, deps, 'disabled', new CoatcheckError('WEBSOCKET_DISABLED', 'WebSocket upgrades are disabled (websocket.enabled)'));
    const admission = deps.live.admit();
    if (admission === 'draining') return refuseUpgrade(ctx, deps, 'draining', new CoatcheckError('SHUTTING_DOWN', 'shutting down: no new WebSocket'));
    if (admission === 'limit') {
      return refuseUpgrade(ctx, deps, 'limit', new CoatcheckError('WEBSOCKET_LIMIT', `websocket.maxConnections (${deps.config.websocket.maxConnections}) WebSockets are open`));
    }
    run(ctx, deps, stages)
      .catch((err: unknown) => finish(ctx, deps, fail(err)))
      .finally(() => deps.live.settle());
  };

  return { request, upgrade };
}

/** RFC 6455 §4.1: a GET whose Upgrade names websocket. */
export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  if (req.method !== 'GET') return false;
  const up = req.headers.upgrade;
  return typeof up === 'string' && up.split(',').some((t) => t.trim().toLowerCase() === 'websocket');
}

/**
 * A response written to a socket Node handed over with 'upgrade' (its HTTP parser is gone, so
 * the connection ends after this one answer), emitting 'close' as a server's response does.
 */
function detachedResponse(req: IncomingMessage, socket: Socket): ServerResponse {
  const res = new ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket);
  res.once('finish', () => {
    res.detachSocket(socket);
    socket.destroySoon();
    process.nextTick(() => res.emit('close'));
  });
  return res;
}

/** An upgrade answered before any stage: counted, logged, and never sent to the app. */
function refuseUpgrade(ctx: RequestContext, deps: PipelineDeps, outcome: UpgradeOutcome, error: CoatcheckError): void {
  deps.metrics.upgrades.inc({ outcome });
  replyError(ctx, deps, error);
}

/**
 * Runs stages in order until one returns an Outcome (or throws). Stages that answer
 * synchronously cost no promise: only from the first stage that returns one does the rest run
 * asynchronously.
 */
export function runStages(stages: readonly Stage[], ctx: RequestContext, deps: PipelineDeps, from = 0): StageResult | Promise<StageResult> {
  for (let i = from; i < stages.length; i++) {
    const result = (stages[i] as Stage)(ctx, deps);
    if (result === undefined) continue;
    if (result instanceof Promise) return result.then((r) => (r !== undefined ? r : runStages(stages, ctx, deps, i + 1)));
    return result;
  }
  return undefined;
}

/**
 * Acts on a stage's Outcome: discards the app's body when there is one, then answers — or,
 * when the response has already started, logs and cuts the connection.
 */
function finish(ctx: RequestContext, deps: PipelineDeps, outcome: Outcome): void {
  ctx.upstream?.body.discard();
  ctx.upstream?.upgraded?.destroy();
  if (ctx.upgrade) deps.metrics.upgrades.inc({ outcome: outcome.kind === 'reject' ? 'rejected' : 'failed' });
  // A body read for a `_method` field and never forwarded: drop the rest, as Node would.
  if (ctx.forwarding === undefined && ctx.body instanceof FormBody) ctx.body.release();
  const { res } = ctx;
  if (outcome.kind === 'reject') replyReject(ctx, deps, outcome.error);
  else if (!res.headersSent) replyError(ctx, deps, outcome.error);
  else {
    ctx.cutBy ??= 'failed';
    ctx.log.error({ event: 'request.failed', err: (outcome.error as Error)?.message }, 'request failed after the response started');
    res.destroy();
  }
}

async function run(ctx: RequestContext, deps: PipelineDeps, stages: StageLists): Promise<void> {
  let outcome = runStages(stages.request, ctx, deps);
  if (outcome instanceof Promise) outcome = await outcome;
  if (outcome !== undefined) return finish(ctx, deps, outcome);
  if (ctx.aborted) return;
  const forwarding = ctx.upgrade
    ? deps.engine.upgrade({ path: ctx.target, headers: ctx.upstreamHeaders })
    : deps.engine.forward({
        method: ctx.method,
        path: ctx.target,
        headers: ctx.upstreamHeaders,
        body: ctx.body ?? (hasBody(ctx.req) ? ctx.req : null),
      });
  ctx.forwarding = forwarding;
  try {
    ctx.upstream = await forwarding.response;
  } catch (err) {
    if (ctx.aborted && isAbort(err)) return;
    return finish(ctx, deps, fail(mapUpstreamError(err)));
  }
  outcome = runStages(stages.response, ctx, deps);
  if (outcome instanceof Promise) outcome = await outcome;
  if (outcome !== undefined) return finish(ctx, deps, outcome);
  const { res } = ctx;
  if (res.destroyed) {
    ctx.upstream.body.discard();
    ctx.upstream.upgraded?.destroy();
    return;
  }
  if (ctx.upstream.upgraded) return openTunnel(ctx, deps, ctx.upstream.upgraded);
  if (ctx.upgrade) deps.metrics.upgrades.inc({ outcome: 'refused' });
  res.writeHead(ctx.upstream.status, ctx.responseHeaders);
  ctx.upstream.body.sendTo(res, bodyFailed, ctx);
  // Still streaming (Server-Sent Events, a long poll, a download): a revocation of its session ends it.
  const session = ctx.session;
  if (session !== undefined && !res.writableEnded && !ctx.isLogout && ctx.newTicket === undefined) {
    deps.live.addStream(session, ctx.ticketValues, res, () => cutRevoked(ctx));
  }
}

/** A streaming response whose session was revoked: ended now, and the app's side with it. */
function cutRevoked(ctx: RequestContext): void {
  ctx.cutBy = 'revoked';
  ctx.forwarding?.abort();
  ctx.res.destroy();
}

/**
 * The app answered 101: the response stages have run (its managed Set-Cookies are in the jar),
 * so its head goes to the client now, with the ticket's Set-Cookie when there is one, and the
 * two sockets become one tunnel (live/tunnel.ts), registered with the session so that a
 * revocation closes it.
 */
function openTunnel(ctx: RequestContext, deps: PipelineDeps, app: Duplex): void {
  const { res } = ctx;
  const client = ctx.req.socket;
  // The client went away while the app answered: nothing to open.
  if (ctx.aborted || client.destroyed) {
    app.destroy();
    return;
  }
  // From here the socket is the tunnel's: the response object lets go of it (no 'close' for it).
  res.detachSocket(client);
  const upstream = ctx.upstream as NonNullable<RequestContext['upstream']>;
  let protocol = 'websocket';
  for (let i = 0; i < upstream.headers.length; i += 2) {
    if ((upstream.headers[i] as string).toLowerCase() === 'upgrade') protocol = upstream.headers[i + 1] as string;
  }
  const lines = ['HTTP/1.1 101 Switching Protocols', 'Connection: Upgrade', `Upgrade: ${protocol}`];
  const h = ctx.responseHeaders;
  for (let i = 0; i < h.length; i += 2) lines.push(`${h[i]}: ${h[i + 1]}`);
  client.write(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
  deps.metrics.upgrades.inc({ outcome: 'opened' });
  deps.metrics.requests.labels('101').inc();
  if (deps.config.log.access) ctx.log.info({ event: 'access', method: ctx.method, path: loggedPath(ctx.pathname), status: 101, ms: Math.round((performance.now() - ctx.started) * 10) / 10 }, 'request');
  const tunnel: WebSocketTunnel = new WebSocketTunnel(client, app, () => {
    deps.live.webSocketClosed(tunnel);
    ctx.log.debug({ event: 'websocket.closed' }, 'WebSocket closed');
  });
  tunnel.start();
  // A session the 101 itself created or rotated to (its old id is dead): registered once its
  // new ticket resolves. Otherwise the request's session (revoked already after a logout rule:
  // the tunnel is closed at once).
  const ticket = ctx.newTicket;
  const fresh = ticket !== undefined && ticket !== ctx.session?.successorTicket;
  deps.live.addWebSocket(fresh ? undefined : ctx.session, ctx.ticketValues, tunnel);
  if (fresh) {
    deps.service.resolve([ticket]).then(
      (r) => {
        if (r.state === 'live') deps.live.attach(tunnel, r.session, [ticket]);
        else tunnel.close(1008, 'session ended');
      },
      () => undefined,
    );
  }
}

function noop(): void {}

/** The app's body failed mid-way (the engine then cuts the client's response): an upstream failure. */
function bodyFailed(err: Error, ctx: RequestContext): void {
  ctx.cutBy = 'upstream';
  ctx.log.warn({ event: 'upstream.body_failed', err: err.message }, "the app's response body failed; the client's response was cut");
}
