// Answers coatcheck gives itself (rejections, errors). Never echoes internals: a status, a
// stable code, the request id.
import { STATUS_CODES } from 'node:http';
import { CoatcheckError, httpErrorOf, type HttpErrorKind } from '../errors.js';
import type { PipelineDeps, RequestContext } from './context.js';

/** The Set-Cookie that gives the browser a ticket. */
export function ticketCookie(deps: PipelineDeps, ticket: string): string {
  const { cookie, session } = deps.config;
  const maxAge = cookie.persistent ? `; Max-Age=${Math.floor(session.absoluteTimeout / 1000)}` : '';
  return `${cookie.name}=${ticket}${deps.ticketAttributes}${maxAge}`;
}

/** The Set-Cookie that removes the ticket from the browser. */
export function clearTicketCookie(deps: PipelineDeps): string {
  return `${deps.config.cookie.name}=${deps.ticketAttributes}; Max-Age=0`;
}

/** "; Path=/; HttpOnly; Secure; SameSite=Lax" (+ Domain), computed once at start-up. */
export function ticketAttributesOf(cookie: PipelineDeps['config']['cookie']): string {
  const sameSite = cookie.sameSite === 'strict' ? 'Strict' : cookie.sameSite === 'lax' ? 'Lax' : 'None';
  return `; Path=/${cookie.domain ? `; Domain=${cookie.domain}` : ''}; HttpOnly${cookie.secure ? '; Secure' : ''}; SameSite=${sameSite}`;
}

function send(ctx: RequestContext, deps: PipelineDeps, status: number, code: string, extra: string[] = []): void {
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
  if (ctx.clearTicket && ctx.ticketValues.length > 0) headers.push('set-cookie', clearTicketCookie(deps));
  res.writeHead(status, headers);
  res.end(ctx.method === 'HEAD' ? undefined : body);
}

/** Reject an invalid session: the configured status, or a 303 to the configured location. */
export function reject(ctx: RequestContext, deps: PipelineDeps, kind: HttpErrorKind): void {
  const { status, redirect } = deps.config.invalidSession;
  const code = new CoatcheckError(kind, kind).code;
  if (redirect) send(ctx, deps, 303, code, ['location', redirect]);
  else send(ctx, deps, status, code);
}

/** Answer a failure with its mapped status (503 store, 502/504 upstream, 400 bad request, 500). */
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
