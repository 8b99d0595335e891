// Runs one request through the ordered stages, the engine and the response stages, then
// streams the body. The flow is in DESIGN.md §1.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../log.js';
import type { PipelineDeps, RequestContext } from './context.js';
import { mapUpstreamError, isAbort } from '../proxy/error-map.js';
import { replyError } from './reply.js';
import { REQUEST_STAGES } from './request.js';
import { discardBody, RESPONSE_STAGES } from './response.js';

const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

function requestIdOf(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && REQUEST_ID_RE.test(given) ? given : randomUUID();
}

function hasBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  if (len !== undefined) return len !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

export function createHandler(deps: PipelineDeps): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const id = requestIdOf(req);
    // The request's child logger is made on first use: most requests never log.
    let log: Logger | undefined;
    const ctx: RequestContext = {
      id,
      req,
      res,
      started: performance.now(),
      get log(): Logger {
        return (log ??= deps.logger.child(ctx.logId ? { reqId: id, session: ctx.logId } : { reqId: id }));
      },
      set log(value: Logger) {
        log = value;
      },
      method: req.method ?? 'GET',
      target: '/',
      pathname: '/',
      publicUrl: '',
      cookieTarget: { host: '', path: '/', secure: false },
      secure: false,
      host: '',
      clientIp: '',
      peerIp: '',
      bind: undefined,
      appRevoke: false,
      appRotate: false,
      appUser: undefined,
      sameSite: undefined,
      clientCookies: [],
      ticketValues: [],
      resolution: { state: 'none' },
      session: undefined,
      jar: undefined,
      isLogout: false,
      isLogin: false,
      clearTicket: false,
      newTicket: undefined,
      logId: undefined,
      upstreamHeaders: [],
      abort: new AbortController(),
      upstream: undefined,
      responseHeaders: [],
      jarChanges: [],
    };
    res.on('close', () => {
      if (!res.writableFinished) {
        ctx.abort.abort();
        ctx.log.info({ event: 'client.aborted' }, 'client went away before the response was complete');
      }
      if (deps.config.log.access) {
        ctx.log.info(
          {
            event: 'access',
            method: ctx.method,
            path: ctx.pathname,
            status: res.statusCode,
            ms: Math.round((performance.now() - ctx.started) * 10) / 10,
          },
          'request',
        );
      }
    });
    run(ctx, deps).catch((err: unknown) => {
      discardBody(ctx);
      if (!res.headersSent) replyError(ctx, deps, err);
      else {
        ctx.log.error({ event: 'request.failed', err: (err as Error)?.message }, 'request failed after the response started');
        res.destroy();
      }
    });
  };
}

async function run(ctx: RequestContext, deps: PipelineDeps): Promise<void> {
  for (const stage of REQUEST_STAGES) {
    const go = stage(ctx, deps);
    if (!(go === true || (go !== false && (await go)))) return;
  }
  if (ctx.abort.signal.aborted) return;
  try {
    ctx.upstream = await deps.engine.forward({
      method: ctx.method,
      path: ctx.target,
      headers: ctx.upstreamHeaders,
      body: hasBody(ctx.req) ? ctx.req : null,
      signal: ctx.abort.signal,
    });
  } catch (err) {
    if (ctx.abort.signal.aborted && isAbort(err)) return;
    replyError(ctx, deps, mapUpstreamError(err));
    return;
  }
  for (const stage of RESPONSE_STAGES) {
    const go = stage(ctx, deps);
    if (!(go === true || (go !== false && (await go)))) return;
  }
  const { res } = ctx;
  const upstream = ctx.upstream;
  if (res.destroyed) {
    discardBody(ctx);
    return;
  }
  res.writeHead(upstream.status, ctx.responseHeaders);
  // pipe() rather than pipeline(): on Node 20 pipeline() makes an AbortController per call and a
  // DOMException with a stack when it finishes, a measurable cost on every request.
  const body = upstream.body;
  body.on('error', (err: Error) => {
    if (!ctx.abort.signal.aborted) ctx.log.warn({ event: 'upstream.body_failed', err: err.message }, 'the response body stream failed');
    res.destroy();
  });
  res.once('close', () => {
    if (!body.readableEnded) body.destroy();
  });
  body.pipe(res);
}
