// Request stages, in the order they run (see REQUEST_STAGES at the bottom). Each is a function
// of the context: it fills it in and goes on, or returns an Outcome; none answers the client.
import { parseCookieHeader } from '../cookies/header.js';
import { isLoopbackHost, jarCookieHeader, sameSiteContextOf, type CookieTarget } from '../cookies/jar.js';
import { CoatcheckError } from '../errors.js';
import type { LiveSession } from '../session/service.js';
import { fail, reject, type Outcome, type PipelineDeps, type RequestContext, type Stage } from './context.js';
import { connectionListed, firstHeader, HOP_BY_HOP } from './headers.js';
import { FormBody, mayCarryMethodField, methodFieldsOf, readBodyStart } from './form-method.js';
import { matchRuleList, normalizePath, requestMethods, rulePath, type RuleMatch } from './rules.js';
import { bindingOf, logout, mayClearTicket, revokeSession } from './session-actions.js';

const HOST_RE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/** Request headers coatcheck sets itself. */
const REPLACED = ['host', 'cookie', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded', 'expect'];

/** What forwardHeaders does with a client header, by lower-case name: one lookup per header. */
const DROP = 1;
const REQUEST_ID = 2;
const REQUEST_HEADER_KIND: ReadonlyMap<string, number> = new Map([
  ...[...HOP_BY_HOP, ...REPLACED].map((n): [string, number] => [n, DROP]),
  ['x-request-id', REQUEST_ID],
]);

/** The cookie-matching view of the public URL, without parsing it again. */
function cookieTargetOfHost(host: string, path: string, secure: boolean): CookieTarget {
  let name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '');
  name = name.toLowerCase().replace(/\.$/, '');
  return { host: name, path, secure: secure || isLoopbackHost(name) };
}

/** 1. Where the request is going: target, public URL, client address. */
export const identify: Stage = (ctx, deps) => {
  const { req } = ctx;
  const rawUrl = req.url ?? '/';
  // Two Host lines are ambiguous (RFC 9112 §3.2): refuse rather than guess. (Node keeps only the
  // first in req.headers, so the raw list is the only place to see a second one.)
  let hostLines = 0;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 4 && name.toLowerCase() === 'host') hostLines++;
  }
  if (hostLines > 1) return fail(new CoatcheckError('BAD_REQUEST', 'more than one Host header'));
  let target: string;
  if (rawUrl.startsWith('/')) target = rawUrl;
  else {
    // absolute-form: keep only path and query (the upstream is fixed by configuration), and
    // refuse one that names another host than Host, where the two readings would differ.
    // asterisk-form (OPTIONS *) cannot be forwarded to one app: refused too.
    let u: URL | undefined;
    try {
      u = rawUrl === '*' ? undefined : new URL(rawUrl);
    } catch {
      u = undefined;
    }
    if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:') || (req.headers.host !== undefined && u.host !== req.headers.host.toLowerCase())) {
      return fail(new CoatcheckError('BAD_REQUEST', 'unsupported request target'));
    }
    target = u.pathname + u.search;
  }
  ctx.target = target;
  const q = target.indexOf('?');
  const rawPath = q === -1 ? target : target.slice(0, q);
  ctx.pathname = normalizePath(rawPath);

  const trust = deps.config.trustProxy;
  const fwdHost = trust ? firstHeader(req.headers['x-forwarded-host'])?.split(',')[0]?.trim() : undefined;
  // Without a Host (HTTP/1.0), the address the client reached us on.
  const local = req.socket.localAddress ?? '127.0.0.1';
  const host = fwdHost || req.headers.host || `${local.includes(':') ? `[${local}]` : local}:${req.socket.localPort ?? 80}`;
  if (!HOST_RE.test(host)) return fail(new CoatcheckError('BAD_REQUEST', 'malformed Host header'));
  ctx.host = host;
  const fwdProto = trust ? firstHeader(req.headers['x-forwarded-proto'])?.split(',')[0]?.trim().toLowerCase() : undefined;
  ctx.secure = fwdProto ? fwdProto === 'https' : (req.socket as { encrypted?: boolean }).encrypted === true;
  ctx.publicUrl = `${ctx.secure ? 'https' : 'http'}://${host}${rawPath}`;
  ctx.cookieTarget = cookieTargetOfHost(host, rawPath, ctx.secure);
  ctx.peerIp = req.socket.remoteAddress ?? '';
  // Behind a trusted proxy the client is the last address it appended.
  const xff = trust ? firstHeader(req.headers['x-forwarded-for']) : undefined;
  const lastHop = xff?.split(',').pop()?.trim();
  ctx.clientIp = lastHop || ctx.peerIp;
  ctx.sameSite = sameSiteContextOf(firstHeader(req.headers['sec-fetch-site']), firstHeader(req.headers['sec-fetch-mode']), ctx.method);
  return undefined;
};

/** 2. Read the ticket, verify it, load the session. A forged ticket never reaches the store. */
export const resolveSession: Stage = async (ctx, deps) => {
  const ticketName = deps.config.cookie.name;
  const cookies = parseCookieHeader(ctx.req.headers.cookie);
  ctx.clientCookies = cookies;
  let values: string[] | undefined;
  for (const c of cookies) {
    if (c.name !== ticketName) continue;
    if (values === undefined) values = [c.value];
    else values.push(c.value);
  }
  if (values === undefined) return undefined;
  ctx.ticketValues = values;
  if (values.length > 1) {
    ctx.log.warn({ event: 'session.ticket_duplicate', count: values.length }, 'more than one ticket cookie presented');
  }
  // A store failure is thrown: 503, fail closed.
  ctx.resolution = await deps.service.resolve(ctx.ticketValues);
  if (ctx.resolution.state === 'live') {
    ctx.session = ctx.resolution.session;
    ctx.logId = ctx.session.logId;
    // A renewed id inside its grace window: this is its successor; hand the browser that ticket.
    if (ctx.session.successorTicket) ctx.newTicket = ctx.session.successorTicket;
  }
  return undefined;
};

/** 3. Tickets that are no longer (or never were) valid: reject or go on as anonymous. */
export const handleInvalid: Stage = (ctx, deps) => {
  const r = ctx.resolution;
  if (r.state === 'none' || r.state === 'live') return undefined;
  const who = { client: ctx.clientIp, userAgent: ctx.req.headers['user-agent'] ?? null };
  let policy: 'reject' | 'anonymous';
  if (r.state === 'revoked') {
    ctx.log.warn({ event: 'session.replay', class: 'revoked', session: r.logId, ...who }, 'a revoked ticket was presented (replay after logout)');
    deps.metrics.security.inc({ event: 'revoked' });
    policy = deps.config.invalidSession.revoked;
  } else if (r.state === 'forged') {
    ctx.log.warn({ event: 'session.forged', class: 'forged', ...who }, 'a ticket whose signature does not verify was presented');
    deps.metrics.security.inc({ event: 'forged' });
    policy = deps.config.invalidSession.expired;
  } else if (r.state === 'unknown') {
    ctx.log.warn({ event: 'session.unknown', class: 'unknown', ...who }, 'a ticket cookie that is not a ticket was presented');
    deps.metrics.security.inc({ event: 'unknown' });
    policy = deps.config.invalidSession.expired;
  } else {
    ctx.log.info({ event: 'session.expired', class: 'expired', session: r.logId, ...who }, 'an expired or unknown ticket was presented');
    deps.metrics.security.inc({ event: 'expired' });
    policy = deps.config.invalidSession.expired;
  }
  // A revoked id is cleared only on a navigation: a background request (fetch, XHR) that raced a
  // login or logout may answer after the browser got a newer ticket, which the Set-Cookie would
  // remove. A browser left holding a revoked ticket still gets it cleared on its next page load.
  ctx.clearTicket = r.state !== 'revoked' || mayClearTicket(ctx);
  if (policy === 'reject') return reject(r.state === 'revoked' ? 'SESSION_REVOKED' : 'SESSION_EXPIRED');
  return undefined;
};

/** 4. Optional binding: the session must come from the user agent and address prefix that created it. */
export const checkBinding: Stage = (ctx, deps) => {
  const session = ctx.session;
  if (!session || deps.config.session.bind.length === 0) return undefined;
  ctx.bind = bindingOf(ctx, deps);
  if (deps.service.bindingMatches(session, ctx.bind)) return undefined;
  return bindingMismatch(ctx, deps, session);
};

async function bindingMismatch(ctx: RequestContext, deps: PipelineDeps, session: LiveSession): Promise<Outcome | undefined> {
  const action = deps.config.session.bindMismatch;
  ctx.log.warn(
    { event: 'session.binding_mismatch', class: 'binding_mismatch', action, client: ctx.clientIp, userAgent: ctx.req.headers['user-agent'] ?? null },
    'a ticket was presented from another user agent or network than the one it was bound to',
  );
  deps.metrics.security.inc({ event: 'binding_mismatch' });
  if (action === 'log') return undefined;
  if (action === 'revoke') await revokeSession(ctx, deps, session, 'binding');
  // reject: the session survives for its rightful holder; this client gets nothing of it, and
  // its copy of the ticket is cleared (a user whose agent or network changed can log in again).
  ctx.clearTicket = true;
  ctx.session = undefined;
  ctx.newTicket = undefined;
  return reject(action === 'revoke' ? 'SESSION_REVOKED' : 'SESSION_BINDING');
}

/**
 * 5. Logout rules revoke the session now, before the app sees the request; login rules are noted.
 * Rules are matched leniently (README, "How rules match"): `;` parameters, format suffix, case,
 * HEAD as GET, method-override headers. A POST whose path a rule takes but whose method none does
 * may still name the rule's method in a `_method` field (query, or a small urlencoded body): only
 * then is the body read, up to a bound, and forwarded unchanged afterwards.
 */
export const matchRules: Stage = (ctx, deps) => {
  const { login } = deps.config;
  const logoutRules = deps.config.logout.rules;
  if (login.length === 0 && logoutRules.length === 0) return undefined;
  const path = rulePath(ctx.target, ctx.pathname);
  let methods = requestMethods(ctx.method, ctx.req.headers);
  let isLogin = matchRuleList(login, methods, path);
  let isLogout = matchRuleList(logoutRules, methods, path);
  if (ctx.method === 'POST' && (isLogin === 'path' || isLogout === 'path')) {
    const q = ctx.target.indexOf('?');
    const fromQuery = q === -1 ? [] : new URLSearchParams(ctx.target.slice(q + 1)).getAll('_method');
    if (fromQuery.length > 0) {
      methods = requestMethods(ctx.method, ctx.req.headers, fromQuery);
      if (isLogin === 'path') isLogin = matchRuleList(login, methods, path);
      if (isLogout === 'path') isLogout = matchRuleList(logoutRules, methods, path);
    }
    if ((isLogin === 'path' || isLogout === 'path') && mayCarryMethodField(ctx.req)) {
      return matchWithMethodField(ctx, deps, path, fromQuery, isLogin, isLogout);
    }
  }
  return ruleMatched(ctx, deps, isLogin === 'match', isLogout === 'match');
};

function ruleMatched(ctx: RequestContext, deps: PipelineDeps, isLogin: boolean, isLogout: boolean): ReturnType<Stage> {
  ctx.isLogin = isLogin;
  return isLogout ? logout(ctx, deps, 'rule') : undefined;
}

/** matchRules, once a bounded start of the body has been read for its `_method` fields. */
async function matchWithMethodField(
  ctx: RequestContext,
  deps: PipelineDeps,
  path: string,
  fromQuery: readonly string[],
  isLogin: RuleMatch,
  isLogout: RuleMatch,
): Promise<Outcome | undefined> {
  const start = await readBodyStart(ctx.req);
  if (start.kind === 'aborted') {
    // The client went away mid-body (or its body failed): nothing is forwarded, the handler stops
    // after the request stages, and the connection is closed if it is not already.
    ctx.aborted = true;
    ctx.res.destroy();
    return undefined;
  }
  if (start.kind === 'partial') {
    ctx.body = new FormBody(start.chunks, ctx.req);
  } else {
    ctx.body = new FormBody(start.chunks, undefined);
    const fields = methodFieldsOf(start.chunks.length === 1 ? (start.chunks[0] as Buffer) : Buffer.concat(start.chunks, start.bytes));
    if (fields.length > 0) {
      const methods = requestMethods(ctx.method, ctx.req.headers, [...fromQuery, ...fields]);
      if (isLogin === 'path') isLogin = matchRuleList(deps.config.login, methods, path);
      if (isLogout === 'path') isLogout = matchRuleList(deps.config.logout.rules, methods, path);
    }
  }
  return ruleMatched(ctx, deps, isLogin === 'match', isLogout === 'match');
}

/** 6. The Cookie header the app gets: the jar, as a browser would send it, plus passthrough cookies. */
export const buildCookieHeader: Stage = (ctx, deps) => {
  const policy = deps.cookies;
  let passed = '';
  for (const c of ctx.clientCookies) {
    const owner = policy.ownerOf(c.name);
    if (owner === 'client') {
      passed = passed === '' ? `${c.name}=${c.value}` : `${passed}; ${c.name}=${c.value}`;
    } else if (owner === 'jar' && policy.isAppCookie(c.name)) {
      ctx.log.warn(
        { event: 'session.legacy_cookie_presented', cookieName: c.name, client: ctx.clientIp, userAgent: ctx.req.headers['user-agent'] ?? null },
        'the client presented an app cookie directly; it was stripped',
      );
      deps.metrics.security.inc({ event: 'legacy_cookie_presented' });
    }
  }
  let header = '';
  const session = ctx.session;
  if (session && session.cookies.size > 0) {
    // A logged-out session still sends its cookies this once, so the app's own logout code runs.
    // No RequestJar here: the response stages make one only when the app sets a cookie.
    header = jarCookieHeader(session.cookies, ctx.cookieTarget, deps.clock(), ctx.sameSite);
  }
  if (passed) header = header ? `${header}; ${passed}` : passed;
  ctx.upstreamCookie = header;
  return undefined;
};

/** 7. Hop-by-hop hygiene and X-Forwarded-*; the client's Host is kept. */
export const forwardHeaders: Stage = (ctx, deps) => {
  const raw = ctx.req.rawHeaders;
  // Header names listed in Connection are hop-by-hop too.
  const listed = ctx.req.headers.connection !== undefined ? connectionListed(raw) : undefined;
  const trust = deps.config.trustProxy;
  const out: string[] = ctx.upstreamCookie === '' ? [] : ['cookie', ctx.upstreamCookie];
  let xff: string | undefined;
  let hasRequestId = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const lower = name.toLowerCase();
    const kind = REQUEST_HEADER_KIND.get(lower);
    if (kind === DROP || (listed !== undefined && listed.has(lower))) {
      if (trust && lower === 'x-forwarded-for') xff = xff ? `${xff}, ${raw[i + 1]}` : (raw[i + 1] as string);
      continue;
    }
    if (kind === REQUEST_ID) hasRequestId = true;
    out.push(name, raw[i + 1] as string);
  }
  if (!hasRequestId) out.push('x-request-id', ctx.id);
  out.push(
    'host',
    ctx.req.headers.host ?? ctx.host,
    'x-forwarded-for',
    xff ? `${xff}, ${ctx.peerIp}` : ctx.peerIp,
    'x-forwarded-proto',
    ctx.secure ? 'https' : 'http',
    'x-forwarded-host',
    ctx.host,
  );
  ctx.upstreamHeaders = out;
  return undefined;
};

export const REQUEST_STAGES: readonly Stage[] = [
  identify,
  resolveSession,
  handleInvalid,
  checkBinding,
  matchRules,
  buildCookieHeader,
  forwardHeaders,
];
