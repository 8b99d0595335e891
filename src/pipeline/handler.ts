// Runs one request through the ordered stages, the engine and the response stages, then
// streams the body. The flow is in DESIGN.md §1.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { RequestContext, type PipelineDeps } from './context.js';
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

/** The response's request, for the shared 'close' listener (no closure per request). */
const kContext = Symbol('coatcheck.context');
type TaggedResponse = ServerResponse & { [kContext]?: RequestContext };

export function createHandler(deps: PipelineDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const access = deps.config.log.access;
  const { metrics } = deps;
  /** Counter children by status code: no label object and hash per request. */
  const byStatus = new Map<number, { inc(): void }>();

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
    if (!this.writableFinished) {
      ctx.aborted = true;
      ctx.forwarding?.abort();
      ctx.log.info({ event: 'client.aborted' }, 'client went away before the response was complete');
    }
    if (access) {
      ctx.log.info({ event: 'access', method: ctx.method, path: ctx.pathname, status, ms: Math.round(ms * 10) / 10 }, 'request');
    }
  }

  return (req, res) => {
    const ctx = new RequestContext(requestIdOf(req), req, res, deps.logger);
    (res as TaggedResponse)[kContext] = ctx;
    res.on('close', onClose);
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
  if (ctx.aborted) return;
  const forwarding = deps.engine.forward({
    method: ctx.method,
    path: ctx.target,
    headers: ctx.upstreamHeaders,
    body: hasBody(ctx.req) ? ctx.req : null,
  });
  ctx.forwarding = forwarding;
  try {
    ctx.upstream = await forwarding.response;
  } catch (err) {
    if (ctx.aborted && isAbort(err)) return;
    replyError(ctx, deps, mapUpstreamError(err));
    return;
  }
  for (const stage of RESPONSE_STAGES) {
    const go = stage(ctx, deps);
    if (!(go === true || (go !== false && (await go)))) return;
  }
  const { res } = ctx;
  if (res.destroyed) {
    discardBody(ctx);
    return;
  }
  res.writeHead(ctx.upstream.status, ctx.responseHeaders);
  ctx.upstream.body.sendTo(res, bodyFailed, ctx);
}

function bodyFailed(err: Error, ctx: RequestContext): void {
  ctx.log.warn({ event: 'upstream.body_failed', err: err.message }, 'the response body stream failed');
}
