// Request stages, in the order they run (see REQUEST_STAGES at the bottom). Each is a function
// of the context: it fills it in and goes on, or returns an Outcome; none answers the client.
import { parseCookieHeader } from '../cookies/header.js';
import { isLoopbackHost, jarCookieHeader, sameSiteContextOf, type CookieTarget } from '../cookies/jar.js';
import { CoatcheckError, StoreUnavailableError } from '../errors.js';
import type { LiveSession, Resolution } from '../session/service.js';
import { fail, reject, type Outcome, type PipelineDeps, type RejectKind, type RequestContext, type Stage, type StageResult } from './context.js';
import { clientAddress, connectionListed, firstHeader, HOP_BY_HOP } from './headers.js';
import { FormBody, mayCarryMethodField, methodFieldsOf, readBodyStart, type BodyStart } from './form-method.js';
import { LOGIN_BODY_LIMIT, mayReadLoginBody, userFromBody } from './login-user.js';
import { findRule, matchRuleList, normalizePath, requestMethods, rulePath, type RuleMatch } from './rules.js';
import { bindingOf, logout, logoutUser, mayClearTicket, revokeSession } from './session-actions.js';
import type { UserSource } from '../config/schema.js';

const HOST_RE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * Request headers coatcheck sets itself (X-Real-IP and X-Request-Id too), and those the app
 * must never take from a client: the URL overrides (X-Original-URL, X-Rewrite-URL: the app would
 * route another path than the one rules matched), the scheme overrides (X-Forwarded-Ssl,
 * X-Forwarded-Scheme: the app's scheme is coatcheck's X-Forwarded-Proto), and the control
 * headers only the app sends (Coatcheck-Session, Coatcheck-User).
 */
const REPLACED = [
  'host',
  'cookie',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'forwarded',
  'expect',
  'x-real-ip',
  'x-request-id',
  'x-original-url',
  'x-rewrite-url',
  'x-forwarded-ssl',
  'x-forwarded-scheme',
  'coatcheck-session',
  'coatcheck-user',
];
/** What a proxy says about itself: passed on from a trusted proxy, dropped from anyone else. */
const PROXY_INFO = ['x-forwarded-port', 'x-forwarded-prefix', 'x-forwarded-server'];
/** The client's address as CDNs name it: from a trusted proxy, set to the address coatcheck determined; else dropped. */
const CLIENT_ADDRESS = ['true-client-ip', 'x-client-ip', 'cf-connecting-ip', 'fastly-client-ip', 'x-cluster-client-ip'];

/** What forwardHeaders does with a client header, by lower-case name: one lookup per header. */
const DROP = 1;
const FROM_PROXY = 2;
const CLIENT_IP = 3;
const REQUEST_HEADER_KIND: ReadonlyMap<string, number> = new Map([
  ...[...HOP_BY_HOP, ...REPLACED].map((n): [string, number] => [n, DROP]),
  ...PROXY_INFO.map((n): [string, number] => [n, FROM_PROXY]),
  ...CLIENT_ADDRESS.map((n): [string, number] => [n, CLIENT_IP]),
]);

/** The cookie-matching view of the public URL, without parsing it again. */
function cookieTargetOfHost(host: string, path: string, secure: boolean): CookieTarget {
  let name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '');
  name = name.toLowerCase().replace(/\.$/, '');
  return { host: name, path, secure: secure || isLoopbackHost(name) };
}

/**
 * Does Host name the same authority as an absolute-form target? Both are read the URL way, in
 * the target's scheme: an explicit default port (`h:80` for http, `h:443` for https) is the
 * same authority as none, and case does not matter. A malformed Host names nothing.
 */
function namesAuthority(target: URL, host: string): boolean {
  if (!HOST_RE.test(host)) return false;
  try {
    return new URL(`${target.protocol}//${host}`).host === target.host;
  } catch {
    return false;
  }
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
    if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:') || (req.headers.host !== undefined && !namesAuthority(u, req.headers.host))) {
      return fail(new CoatcheckError('BAD_REQUEST', 'unsupported request target'));
    }
    target = u.pathname + u.search;
  }
  ctx.target = target;
  const q = target.indexOf('?');
  const rawPath = q === -1 ? target : target.slice(0, q);
  ctx.pathname = normalizePath(rawPath);

  ctx.peerIp = req.socket.remoteAddress ?? '';
  // X-Forwarded-* are believed only from a trusted proxy (trustProxy); the client is the first
  // untrusted X-Forwarded-For hop from the right.
  const who = clientAddress(ctx.peerIp, deps.proxies.any ? firstHeader(req.headers['x-forwarded-for']) : undefined, deps.proxies);
  ctx.clientIp = who.client;
  ctx.proxied = who.proxied;
  const trust = who.proxied;
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
  // A store failure is thrown: 503, fail closed.
  ctx.resolution = await deps.service.resolve(ctx.ticketValues);
  if (values.length > 1) {
    // Several tickets that come down to one live session (copies, or a stale ticket next to the
    // live one after a cookie.domain change) are routine: debug. Anything else is a warning; a
    // replay or a conflict among them is also logged as its own event.
    const level = ctx.resolution.state === 'live' ? 'debug' : 'warn';
    ctx.log[level]({ event: 'session.ticket_duplicate', count: values.length }, 'more than one ticket cookie presented');
  }
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
  if (r.state === 'mixed') return severalTickets(ctx, deps, r, who);
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

/**
 * Several tickets that are not one session: two different live sessions (cookie tossing: a
 * sibling subdomain planted its own ticket), or a live one next to a revoked one. Never served
 * with either. Each revoked ticket is a replay; two live ones are a conflict. Handled per
 * `invalidSession.revoked` (reject by default) once the logout rules have run, so that a logout
 * revokes every live session first (matchRules); the answer clears the ticket in every form
 * coatcheck may have set it, whatever the request's Fetch Metadata, so the user can log in again.
 */
function severalTickets(ctx: RequestContext, deps: PipelineDeps, r: Extract<Resolution, { state: 'mixed' }>, who: object): undefined {
  for (const logId of r.revoked) {
    ctx.log.warn({ event: 'session.replay', class: 'revoked', session: logId, ...who }, 'a revoked ticket was presented next to a live one (replay after logout)');
    deps.metrics.security.inc({ event: 'revoked' });
  }
  if (r.live.length > 1) {
    ctx.log.warn(
      { event: 'session.ticket_conflict', class: 'ticket_conflict', sessions: r.live.map((s) => s.logId), ...who },
      'tickets of different live sessions were presented together; none of them is used',
    );
    deps.metrics.security.inc({ event: 'ticket_conflict' });
  }
  ctx.otherSessions = r.live;
  ctx.clearTicket = true;
  if (deps.config.invalidSession.revoked === 'reject') ctx.deferredReject = r.revoked.length > 0 ? 'SESSION_REVOKED' : 'SESSION_CONFLICT';
  return undefined;
}

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
  if (login.length === 0 && logoutRules.length === 0) return ruleMatched(ctx, deps, ctx.method, ctx.pathname, false, false, undefined);
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
  return ruleMatched(ctx, deps, methods, path, isLogin === 'match', isLogout === 'match', undefined);
};

/**
 * What the rules decided: a login is noted (and, with a rule's `user`, its body read for the
 * user id), a logout revokes every session the request carried (scope `user`: every session of
 * its user too; scope `others`: nothing now, the user's other sessions once the app said yes);
 * then an answer severalTickets deferred (a replay, a conflict) is given. The first rule that
 * takes the request decides its options.
 */
function ruleMatched(
  ctx: RequestContext,
  deps: PipelineDeps,
  methods: string | readonly string[],
  path: string,
  isLogin: boolean,
  isLogout: boolean,
  body: BodyStart | undefined,
): ReturnType<Stage> {
  ctx.isLogin = isLogin;
  const source = isLogin ? findRule(deps.config.login, methods, path)?.user : undefined;
  if (source !== undefined && ctx.method !== 'GET' && ctx.method !== 'HEAD') {
    return readLoginUser(ctx, deps, source, body).then(() => (ctx.aborted ? undefined : logoutRules(ctx, deps, methods, path, isLogout)));
  }
  return logoutRules(ctx, deps, methods, path, isLogout);
}

function logoutRules(ctx: RequestContext, deps: PipelineDeps, methods: string | readonly string[], path: string, isLogout: boolean): ReturnType<Stage> {
  let revoking: Promise<undefined> | undefined;
  if (isLogout) {
    const matched = findRule(deps.config.logout.rules, methods, path);
    const scope = matched !== undefined && 'scope' in matched ? matched.scope : 'session';
    if (scope === 'others') ctx.revokeOthers = 'rule';
    else revoking = scope === 'user' ? logoutUser(ctx, deps, 'rule') : logout(ctx, deps, 'rule');
  }
  return ctx.deferredReject === undefined ? revoking : afterLogout(ctx, ctx.deferredReject, revoking);
}

/**
 * The user a login names in its body (a login rule's `user`): read up to LOGIN_BODY_LIMIT bytes
 * (or take what the `_method` read already read), and forward them unchanged, then the rest. A
 * body larger than the bound is forwarded unread, and the login gets no user from it (a warning).
 */
async function readLoginUser(ctx: RequestContext, deps: PipelineDeps, source: UserSource, read: BodyStart | undefined): Promise<void> {
  let start = read;
  if (start === undefined) {
    const size = mayReadLoginBody(ctx.req.headers);
    if (size === 'empty') return;
    if (size === 'too-large') {
      ctx.log.warn({ event: 'login.user_body_too_large', limit: LOGIN_BODY_LIMIT }, 'a login body larger than the bound was forwarded unread: no user recorded for this login');
      return;
    }
    start = await readBodyStart(ctx.req, LOGIN_BODY_LIMIT, deps.config.upstreamTimeout);
    if (start.kind === 'aborted') {
      ctx.aborted = true;
      ctx.res.destroy();
      return;
    }
    ctx.body = new FormBody(start.chunks, start.kind === 'partial' ? ctx.req : undefined);
  }
  if (start.kind !== 'whole') {
    ctx.log.warn({ event: 'login.user_body_too_large', limit: LOGIN_BODY_LIMIT }, 'a login body larger than the bound was forwarded unread: no user recorded for this login');
    return;
  }
  const body = start.chunks.length === 1 ? (start.chunks[0] as Buffer) : Buffer.concat(start.chunks, start.bytes);
  ctx.loginUser = await userFromBody(source, ctx.req.headers['content-type'], body);
  if (ctx.loginUser === undefined) ctx.log.debug({ event: 'login.user_not_found' }, "the login body does not name a user where the login rule's user option says");
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
  // A client that stalls mid-form is held no longer than the app would hold it.
  const start = await readBodyStart(ctx.req, undefined, deps.config.upstreamTimeout);
  if (start.kind === 'aborted') {
    // The client went away mid-body (or its body failed): nothing is forwarded, the handler stops
    // after the request stages, and the connection is closed if it is not already.
    ctx.aborted = true;
    ctx.res.destroy();
    return undefined;
  }
  let methods = requestMethods(ctx.method, ctx.req.headers, fromQuery);
  if (start.kind === 'partial') {
    ctx.body = new FormBody(start.chunks, ctx.req);
  } else {
    ctx.body = new FormBody(start.chunks, undefined);
    const fields = methodFieldsOf(start.chunks.length === 1 ? (start.chunks[0] as Buffer) : Buffer.concat(start.chunks, start.bytes));
    if (fields.length > 0) {
      methods = requestMethods(ctx.method, ctx.req.headers, [...fromQuery, ...fields]);
      if (isLogin === 'path') isLogin = matchRuleList(deps.config.login, methods, path);
      if (isLogout === 'path') isLogout = matchRuleList(deps.config.logout.rules, methods, path);
    }
  }
  return ruleMatched(ctx, deps, methods, path, isLogin === 'match', isLogout === 'match', start);
}

/**
 * 5b. A login while the store is known to be unreachable is refused before the app runs it: the
 * session it would create could not be stored, so the user would get a 503 after the app's login
 * side effects (audit lines, lockout counters, one-time codes) had happened anyway.
 */
export const refuseLoginWithoutStore: Stage = (ctx, deps) => {
  if (!ctx.isLogin || deps.service.storeAvailable()) return undefined;
  return fail(new StoreUnavailableError('login refused: the session store is unreachable'));
};

/** Distinct stripped cookie names logged per process; past this, one line says logging stopped. */
export const MAX_STRIPPED_NAMES_LOGGED = 256;
/** Longest cookie name logged in full. */
const MAX_LOGGED_NAME = 128;

/**
 * A client cookie that is neither the ticket nor passthrough never reaches the app. Say so once
 * per name per process (debug: the usual cause of "my JavaScript cookie vanished" is a name
 * missing from session.passthrough). The name only, never the value.
 */
function reportStripped(ctx: RequestContext, seen: Set<string>, name: string): void {
  if (seen.size > MAX_STRIPPED_NAMES_LOGGED || seen.has(name)) return;
  if (seen.size === MAX_STRIPPED_NAMES_LOGGED) {
    seen.add('\0full'); // no cookie name holds a NUL: a marker that this line was written
    ctx.log.debug({ event: 'cookie.stripped_names_limit', limit: MAX_STRIPPED_NAMES_LOGGED }, 'stripped client cookie names: the limit of names logged is reached; no more are logged');
    return;
  }
  seen.add(name);
  const cookieName = name.length > MAX_LOGGED_NAME ? `${name.slice(0, MAX_LOGGED_NAME)}…` : name;
  ctx.log.debug(
    { event: 'cookie.client_stripped', cookieName },
    'a client cookie was stripped before the app (logged once per name): list it in session.passthrough if the page itself sets it',
  );
}

/**
 * The answer severalTickets deferred, once a logout has revoked every session the request
 * carried: a replay is still refused; a conflict of live sessions on a logout is served as a
 * logout (without a jar: neither is the request's), so the app shows its logged-out page.
 */
function afterLogout(ctx: RequestContext, kind: RejectKind, revoking: Promise<undefined> | undefined): StageResult | Promise<StageResult> {
  const outcome = ctx.isLogout && kind === 'SESSION_CONFLICT' ? undefined : reject(kind);
  return revoking === undefined ? outcome : revoking.then(() => outcome);
}

/** 6. The Cookie header the app gets: the jar, as a browser would send it, plus passthrough cookies. */
export const buildCookieHeader: Stage = (ctx, deps) => {
  const policy = deps.cookies;
  const debug = deps.logger.isLevelEnabled('debug');
  let passed = '';
  for (const c of ctx.clientCookies) {
    const owner = policy.ownerOf(c.name);
    if (owner === 'client') {
      passed = passed === '' ? `${c.name}=${c.value}` : `${passed}; ${c.name}=${c.value}`;
    } else if (owner === 'jar') {
      if (policy.isAppCookie(c.name)) {
        ctx.log.warn(
          { event: 'session.legacy_cookie_presented', cookieName: c.name, client: ctx.clientIp, userAgent: ctx.req.headers['user-agent'] ?? null },
          'the client presented an app cookie directly; it was stripped',
        );
        deps.metrics.security.inc({ event: 'legacy_cookie_presented' });
      } else if (debug) {
        reportStripped(ctx, deps.strippedCookieNames, c.name);
      }
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

/**
 * 7. Hop-by-hop hygiene, X-Forwarded-*, X-Real-IP and the request id; the client's Host is kept.
 * The app gets exactly one X-Real-IP (the client coatcheck determined) and one X-Request-Id (the
 * id coatcheck logs), whatever the client sent.
 */
export const forwardHeaders: Stage = (ctx) => {
  const raw = ctx.req.rawHeaders;
  // Header names listed in Connection are hop-by-hop too.
  const listed = ctx.req.headers.connection !== undefined ? connectionListed(raw) : undefined;
  const trust = ctx.proxied;
  const out: string[] = ctx.upstreamCookie === '' ? [] : ['cookie', ctx.upstreamCookie];
  let xff: string | undefined;
  let clientIpNames: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const lower = name.toLowerCase();
    const kind = REQUEST_HEADER_KIND.get(lower);
    if (kind === DROP || (listed !== undefined && listed.has(lower))) {
      if (trust && lower === 'x-forwarded-for') xff = xff ? `${xff}, ${raw[i + 1]}` : (raw[i + 1] as string);
      continue;
    }
    if (kind === FROM_PROXY && !trust) continue;
    if (kind === CLIENT_IP) {
      // Once per name, with the address coatcheck determined (an app that reads it agrees with coatcheck).
      if (trust && !(clientIpNames ??= new Set()).has(lower)) {
        clientIpNames.add(lower);
        out.push(name, ctx.clientIp);
      }
      continue;
    }
    out.push(name, raw[i + 1] as string);
  }
  out.push(
    'host',
    ctx.req.headers.host ?? ctx.host,
    'x-forwarded-for',
    xff ? `${xff}, ${ctx.peerIp}` : ctx.peerIp,
    'x-forwarded-proto',
    ctx.secure ? 'https' : 'http',
    'x-forwarded-host',
    ctx.host,
    'x-real-ip',
    ctx.clientIp,
    'x-request-id',
    ctx.id,
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
  refuseLoginWithoutStore,
  buildCookieHeader,
  forwardHeaders,
];
