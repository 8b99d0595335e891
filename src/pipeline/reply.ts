// The answers coatcheck gives itself (invalid sessions, errors). Only the handler calls them.
// Never echoes internals: a status, a stable code, the request id.
import { STATUS_CODES } from 'node:http';
import { httpErrorOf, HttpErrors } from '../errors.js';
import type { PipelineDeps, RejectKind, RequestContext } from './context.js';

function send(ctx: RequestContext, deps: PipelineDeps, status: number, code: string, extra: readonly string[] = []): void {
  const { res } = ctx;
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const body = `${status} ${STATUS_CODES[status] ?? 'Error'}\n${code}\nrequest id: ${ctx.id}\n`;
  const headers: string[] = [
    'content-type',
    'text/plain; charset=utf-8',
    'content-length',
    String(Buffer.byteLength(body)),
    'cache-control',
    'no-store',
    'x-request-id',
    ctx.id,
    ...extra,
  ];
  if (ctx.clearTicket && ctx.ticketValues.length > 0) {
    headers.push('set-cookie', deps.ticket.clear);
    // Several tickets: every form goes (TicketCookie.clearOtherForms).
    if (ctx.ticketValues.length > 1) for (const c of deps.ticket.clearOtherForms) headers.push('set-cookie', c);
  }
  res.writeHead(status, headers);
  res.end(ctx.method === 'HEAD' ? undefined : body);
}

/** Refuse an invalid session: the configured status, or a 303 to the configured location. */
export function replyReject(ctx: RequestContext, deps: PipelineDeps, kind: RejectKind): void {
  const { status, redirect } = deps.config.invalidSession;
  const { code } = HttpErrors[kind];
  if (redirect) send(ctx, deps, 303, code, ['location', redirect]);
  else send(ctx, deps, status, code);
}

/** Answer a failure with its mapped status (503 store, 502/504 upstream, 400 bad request, 500), counted by category. */
export function replyError(ctx: RequestContext, deps: PipelineDeps, err: unknown): void {
  const { status, code, category } = httpErrorOf(err);
  if (category === 'store') deps.metrics.storeErrors.inc();
  else if (category === 'upstream') deps.metrics.upstreamErrors.inc({ status: String(status) });
  const level = status >= 500 ? 'error' : 'info';
  ctx.log[level]({ event: 'request.failed', status, code, err: describe(err) }, 'request failed');
  send(ctx, deps, status, code);
}

function describe(err: unknown): { message: string; cause?: string } {
  if (!(err instanceof Error)) return { message: String(err) };
  const cause = err.cause instanceof Error ? err.cause.message : undefined;
  return cause ? { message: err.message, cause } : { message: err.message };
}
