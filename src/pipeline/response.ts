// Response stages, in the order they run (see RESPONSE_STAGES at the bottom). All of them
// finish before a single header reaches the client; none answers the client itself.
import { setCookieName } from '../cookies/header.js';
import { RequestJar } from '../cookies/jar.js';
import type { LiveSession } from '../session/service.js';
import type { PipelineDeps, RequestContext, Stage } from './context.js';
import { connectionListed, HOP_BY_HOP } from './headers.js';
import { bindingOf, ipPrefix, logout, logoutUser, mayClearTicket, readAppControl, revokeUserSessions } from './session-actions.js';

/**
 * 1. Take every managed Set-Cookie out of the upstream response and turn it into jar changes;
 * strip hop-by-hop headers. A Set-Cookie that cannot be parsed never reaches the browser.
 */
export const collectSetCookies: Stage = (ctx, deps) => {
  const raw = (ctx.upstream as NonNullable<RequestContext['upstream']>).headers;
  // Header names listed in Connection are hop-by-hop too.
  const listed = connectionListed(raw);
  const out: string[] = [];
  ctx.responseHeaders = out;
  const policy = deps.cookies;
  let now: number | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || (listed !== undefined && listed.has(lower))) continue;
    // The app's control headers: acted on, never passed to the browser.
    if (readAppControl(ctx, lower, value)) continue;
    if (lower !== 'set-cookie') {
      out.push(name, value);
      continue;
    }
    const cookieName = setCookieName(value);
    if (cookieName === undefined) {
      ctx.log.warn({ event: 'upstream.set_cookie_invalid' }, 'dropped a Set-Cookie from the app whose name a browser would refuse (no `=`, an empty name, or a control character)');
      continue;
    }
    const owner = policy.ownerOf(cookieName);
    if (owner === 'ticket') {
      ctx.log.warn({ event: 'upstream.set_cookie_ticket' }, 'dropped a Set-Cookie from the app that uses the ticket cookie name');
      continue;
    }
    if (owner === 'client') {
      out.push(name, value);
      continue;
    }
    policy.noteAppCookie(cookieName);
    ctx.jar ??= new RequestJar(ctx.session?.cookies);
    now ??= deps.clock();
    const change = ctx.jar.apply(value, ctx.publicUrl, now, ctx.sameSite);
    if (change.kind === 'rejected') {
      ctx.log.warn({ event: 'upstream.set_cookie_rejected', cookieName, reason: change.reason }, 'dropped a Set-Cookie from the app that a browser would refuse');
      continue;
    }
    if (change.kind === 'delete' && deps.onCookieCleared.has(change.name)) ctx.appRevoke = true;
    ctx.addJarChange(change);
  }
  return undefined;
};

/**
 * 2. The app ended the session itself (Coatcheck-Session: revoke, or it cleared a cookie named
 * in logout.onCookieCleared): revoke it and its family now, as a logout rule would have.
 */
export const appRevocation: Stage = (ctx, deps) => {
  if (ctx.appRevokeUser) return logoutUser(ctx, deps, 'app');
  return ctx.appRevoke && !ctx.isLogout ? logout(ctx, deps, 'app') : undefined;
};

/**
 * 2b. The user's other sessions end once the app said yes (below 400) to a request that asked
 * for it (a logout rule of scope `others`, such as a password change, or Coatcheck-Session:
 * revoke-others); this session stays.
 */
export const otherSessionsRevocation: Stage = (ctx, deps) => {
  const by = ctx.revokeOthers;
  if (by === undefined || ctx.isLogout) return undefined;
  const status = (ctx.upstream as NonNullable<RequestContext['upstream']>).status;
  const session = ctx.session;
  const user = session?.meta.user ?? ctx.appUser;
  if (status >= 400 || session === undefined || user === undefined) return undefined;
  return revokeUserSessions(ctx, deps, user, session.meta.family, by, 'others');
};

/**
 * 3. Persist the jar changes: update the session, create one for the first managed cookie,
 * or rotate the id on login. A write to a revoked session is dropped.
 */
export const persist: Stage = (ctx, deps) => {
  // After logout the old session is gone: whatever the app sets now starts a new, anonymous one.
  const session = ctx.isLogout ? undefined : ctx.session;
  // A login rule rotates only when the login went through: a failed attempt changes no privilege
  // and must not buy the session a new absolute deadline.
  const status = (ctx.upstream as NonNullable<RequestContext['upstream']>).status;
  const rotate = ((ctx.isLogin && status < 400) || ctx.appRotate) && session !== undefined;
  if (!session && ctx.jarChanges.length === 0) return undefined;
  // Whose session: the app's Coatcheck-User, else what a successful login named in its body.
  const user = ctx.appUser ?? (ctx.isLogin && status < 400 ? ctx.loginUser : undefined);
  // The hot path (a session request whose response changes nothing) stays synchronous.
  if (session && deps.service.nothingToWrite(session, ctx.jarChanges, rotate, user)) return undefined;
  if (deps.config.session.bind.length > 0) ctx.bind ??= bindingOf(ctx, deps);
  return commit(ctx, deps, session, rotate, user);
};

async function commit(ctx: RequestContext, deps: PipelineDeps, session: LiveSession | undefined, rotate: boolean, user: string | undefined): Promise<undefined> {
  // A store failure is thrown: the app's cookies cannot be kept, so nothing of its response is
  // forwarded (fail closed).
  const userAgent = ctx.req.headers['user-agent'];
  const outcome = await deps.service.commit({
    session,
    changes: ctx.jarChanges,
    rotate,
    ...(user !== undefined ? { user } : {}),
    ...(ctx.bind !== undefined ? { bind: ctx.bind } : {}),
    client: { ...(userAgent !== undefined ? { userAgent } : {}), address: ipPrefix(ctx.clientIp) },
  });
  if ((outcome.kind === 'created' || outcome.kind === 'updated') && outcome.evicted !== undefined) {
    for (const evicted of outcome.evicted) {
      ctx.log.info({ event: 'session.evicted', evicted, limit: deps.config.session.maxPerUser }, "a session of the user was revoked: the user's new one went past session.maxPerUser");
    }
    deps.metrics.sessions.inc({ action: 'evicted' }, outcome.evicted.length);
  }
  switch (outcome.kind) {
    case 'created':
      ctx.newTicket = outcome.ticket;
      deps.metrics.sessions.inc({ action: outcome.cause });
      ctx.log.info({ event: `session.${outcome.cause}`, newSession: outcome.logId }, `session ${outcome.cause}`);
      break;
    case 'gone':
      ctx.log.warn(
        { event: 'session.write_after_revoke', dropped: ctx.jarChanges.length },
        'the session was revoked or expired while the request was in flight; its cookie changes were dropped',
      );
      deps.metrics.security.inc({ event: 'write_after_revoke' });
      // Cleared only on a navigation: a background request may answer after a response that gave
      // the browser a newer ticket (a login racing it), which the Set-Cookie would remove.
      ctx.clearTicket = mayClearTicket(ctx);
      ctx.newTicket = undefined;
      break;
    default:
      break;
  }
  return undefined;
}

/** 4. The one ticket Set-Cookie (new, or cleared), with Cache-Control: no-store. */
export const emitTicket: Stage = (ctx, deps) => {
  let setCookie: string | undefined;
  if (ctx.newTicket) setCookie = deps.ticket.give(ctx.newTicket);
  else if (ctx.clearTicket && ctx.ticketValues.length > 0) setCookie = deps.ticket.clear;
  if (setCookie === undefined) return undefined;
  const out = ctx.responseHeaders;
  for (let i = 0; i < out.length; ) {
    if ((out[i] as string).toLowerCase() === 'cache-control') out.splice(i, 2);
    else i += 2;
  }
  // Several tickets: the other forms go first (a host-only clearing must not follow, and on some
  // browsers replace, a Domain ticket given for the same host).
  if (ctx.ticketValues.length > 1) for (const c of deps.ticket.clearOtherForms) out.push('set-cookie', c);
  out.push('set-cookie', setCookie, 'cache-control', 'no-store');
  if (ctx.isLogout && deps.config.logout.clearSiteData) {
    // "cookies" would also remove a ticket this same response sets: leave it out then.
    out.push('clear-site-data', ctx.newTicket ? '"cache", "storage"' : '"cache", "cookies", "storage"');
  }
  return undefined;
};

export const RESPONSE_STAGES: readonly Stage[] = [collectSetCookies, appRevocation, otherSessionsRevocation, persist, emitTicket];
