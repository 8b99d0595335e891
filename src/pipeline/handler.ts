// Runs one request through the request stages, the engine and the response stages, then streams
// the body. The one place that answers the client: a stage only says what should happen (an
// Outcome, or a thrown error), and finish() acts on it. The flow is in README.md, "How it works".
import type { IncomingMessage, ServerResponse } from 'node:http';
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

export function createHandler(deps: PipelineDeps): (req: IncomingMessage, res: ServerResponse) => void {
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

  return (req, res) => {
    const ctx = new RequestContext(requestIdOf(req), req, res, deps.logger);
    (res as TaggedResponse)[kContext] = ctx;
    res.on('close', onClose);
    run(ctx, deps, stages).catch((err: unknown) => finish(ctx, deps, fail(err)));
  };
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
  const forwarding = deps.engine.forward({
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
    return;
  }
  res.writeHead(ctx.upstream.status, ctx.responseHeaders);
  ctx.upstream.body.sendTo(res, bodyFailed, ctx);
}

/** The app's body failed mid-way (the engine then cuts the client's response): an upstream failure. */
function bodyFailed(err: Error, ctx: RequestContext): void {
  ctx.cutBy = 'upstream';
  ctx.log.warn({ event: 'upstream.body_failed', err: err.message }, "the app's response body failed; the client's response was cut");
}
