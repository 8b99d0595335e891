// What stages of both directions do to a session: end it (logout by rule, by the app, by a
// binding mismatch), decide whether a response may clear the ticket, and compute a binding.
import type { LiveSession } from '../session/service.js';
import type { PipelineDeps, RequestContext } from './context.js';
import { firstHeader } from './headers.js';

export type RevokedBy = 'rule' | 'app' | 'binding';

/**
 * Revokes a session and its family now. A store failure is thrown (503: not revoked means not
 * logged out, so the client is told rather than shown a logout that did not happen).
 */
export async function revokeSession(ctx: RequestContext, deps: PipelineDeps, session: LiveSession, by: RevokedBy): Promise<undefined> {
  await deps.service.revoke(session);
  deps.metrics.sessions.inc({ action: 'revoked' });
  ctx.log.info({ event: 'session.logout', by }, 'session and its family revoked');
}

/**
 * Logout, whoever asked for it (a logout rule, or the app's Coatcheck-Session: revoke or its
 * clearing of an onCookieCleared cookie): the ticket is cleared, no new one is given, and the
 * session with its family is revoked now. undefined when there was no session to revoke.
 */
export function logout(ctx: RequestContext, deps: PipelineDeps, by: 'rule' | 'app'): Promise<undefined> | undefined {
  ctx.isLogout = true;
  ctx.clearTicket = true;
  ctx.newTicket = undefined;
  const session = ctx.session;
  if (ctx.otherSessions.length > 0) return revokeEvery(ctx, deps, session ? [session, ...ctx.otherSessions] : ctx.otherSessions, by);
  return session ? revokeSession(ctx, deps, session, by) : undefined;
}

/**
 * Logout of scope `user` (a logout rule's scope, Coatcheck-Session: revoke-user): this session
 * as logout() ends it (unless a logout did already), and every other session of its user, on
 * every instance. A session without a user is only itself.
 */
export function logoutUser(ctx: RequestContext, deps: PipelineDeps, by: 'rule' | 'app'): Promise<undefined> | undefined {
  const session = ctx.session;
  const user = session?.meta.user ?? ctx.appUser;
  const own = ctx.isLogout ? undefined : logout(ctx, deps, by);
  if (user === undefined) return own;
  const others = revokeUserSessions(ctx, deps, user, session?.meta.family, by, 'user');
  return own === undefined ? others : Promise.all([own, others]).then(() => undefined);
}

/**
 * Revokes the user's sessions (each with its family) but the family `except`, logged with how
 * many and their log ids. A store failure is thrown (503: not revoked means not logged out).
 */
export async function revokeUserSessions(
  ctx: RequestContext,
  deps: PipelineDeps,
  user: string,
  except: string | undefined,
  by: 'rule' | 'app',
  scope: 'user' | 'others',
): Promise<undefined> {
  const r = await deps.service.directory.revokeUser(user, except);
  if (r.revoked > 0) deps.metrics.sessions.inc({ action: 'revoked' }, r.revoked);
  ctx.log.info(
    { event: 'session.user_logout', by, scope, revoked: r.revoked, sessions: r.logIds },
    scope === 'others' ? "the user's other sessions revoked" : "the user's sessions revoked",
  );
  return undefined;
}

/**
 * A logout of a request with several tickets: every live session it carried is revoked (the
 * attacker's planted one and the user's), each with its family. Any failure is thrown, after
 * the others were tried (503: not revoked means not logged out).
 */
async function revokeEvery(ctx: RequestContext, deps: PipelineDeps, sessions: readonly LiveSession[], by: RevokedBy): Promise<undefined> {
  const results = await Promise.allSettled(sessions.map((s) => deps.service.revoke(s)));
  let failure: unknown;
  results.forEach((result, i) => {
    if (result.status === 'rejected') {
      failure ??= result.reason;
      return;
    }
    deps.metrics.sessions.inc({ action: 'revoked' });
    ctx.log.info({ event: 'session.logout', by, session: (sessions[i] as LiveSession).logId }, 'session and its family revoked');
  });
  if (failure !== undefined) throw failure;
  return undefined;
}

/**
 * The app's control headers (Coatcheck-Session, Coatcheck-User) of a response: what they ask for
 * is noted on the context (acted on by the response stages), a bad value is logged and ignored.
 * True when the header is one of them: it never reaches the client, in either mode.
 */
export function readAppControl(ctx: RequestContext, lower: string, value: string): boolean {
  if (lower === 'coatcheck-session') {
    const v = value.trim().toLowerCase();
    if (v === 'revoke') ctx.appRevoke = true;
    else if (v === 'rotate') ctx.appRotate = true;
    else if (v === 'revoke-user') ctx.appRevokeUser = true;
    else if (v === 'revoke-others') ctx.revokeOthers ??= 'app';
    else ctx.log.warn({ event: 'upstream.control_invalid', header: 'Coatcheck-Session' }, 'ignored an unknown Coatcheck-Session value from the app');
    return true;
  }
  if (lower === 'coatcheck-user') {
    const user = value.trim();
    if (user.length > 0 && user.length <= 256) ctx.appUser = user;
    else ctx.log.warn({ event: 'upstream.control_invalid', header: 'Coatcheck-User' }, 'ignored an empty or oversized Coatcheck-User value from the app');
    return true;
  }
  return false;
}

/**
 * May a response to this request clear the ticket cookie although the browser could hold a newer
 * one? Yes for navigations and for clients without Fetch Metadata (no background requests to
 * race with); no for a browser's background requests.
 */
export function mayClearTicket(ctx: RequestContext): boolean {
  const mode = firstHeader(ctx.req.headers['sec-fetch-mode']);
  return mode === undefined || mode === 'navigate';
}

/** What this request binds a session to: its user agent and/or address prefix (hashed by the service). */
export function bindingOf(ctx: RequestContext, deps: PipelineDeps): string {
  let material = '';
  for (const check of deps.config.session.bind) {
    material += check === 'userAgent' ? `ua:${ctx.req.headers['user-agent'] ?? ''}\n` : `ip:${ipPrefix(ctx.clientIp)}\n`;
  }
  return material;
}

/** The /24 of an IPv4 address, the /64 of an IPv6 one. */
export function ipPrefix(ip: string): string {
  const v4 = /^(?:::ffff:)?(\d+)\.(\d+)\.(\d+)\.\d+$/i.exec(ip);
  if (v4) return `${v4[1]}.${v4[2]}.${v4[3]}.0/24`;
  if (!ip.includes(':')) return ip;
  const [head, tail] = ip.split('::') as [string, string | undefined];
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => (g || '0').toLowerCase().replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}
