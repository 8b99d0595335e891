// Report-only mode (`mode: report-only`): a measuring step before enforcement, in front of a
// live app. Every cookie crosses coatcheck untouched both ways: no jar, no ticket, no stripping,
// no rejection. What enforce mode would change is only reported:
// - a request that matches a logout rule (or whose response revokes: Coatcheck-Session: revoke,
//   or clearing a logout.onCookieCleared cookie) records a keyed fingerprint of each managed app
//   cookie the client presented (name and value; values of 16 characters or more) in the store,
//   for session.absoluteTimeout (session/fingerprint.ts, store FingerprintStore);
// - a later request presenting a recorded cookie is a replay after logout: one `session.replay`
//   line with "mode": "report-only" per request, counted in
//   coatcheck_security_events_total{event="revoked",mode="report-only"}; it is still forwarded;
// - requests carrying managed cookies and the managed Set-Cookies of the app's responses (what
//   enforce mode would keep in jars) are counted, to size the store.
// Fail-open by definition: a store failure is logged and counted, and the request forwarded.
// Requests without a managed cookie value of 16 characters or more never touch the store; the
// others cost one store round trip (lookups of one event-loop turn share one MGET on Redis).
import { Counter } from 'prom-client';
import { parseCookieHeader, setCookieName } from '../cookies/header.js';
import { splitCookiePair, trimWsp } from '../cookies/names.js';
import type { Metrics } from '../admin/metrics.js';
import { LogHasher } from '../session/crypto.js';
import { CookieFingerprinter, fingerprintable } from '../session/fingerprint.js';
import type { PipelineDeps, RequestContext, Stage } from './context.js';
import { connectionListed, HOP_BY_HOP } from './headers.js';
import { readAppControl } from './session-actions.js';
import { forwardHeaders, identify, matchRules } from './request.js';

/** Most cookies of one request that are fingerprinted (a request carrying more is checked on these). */
export const MAX_FINGERPRINTED_COOKIES = 32;
/** Longest cookie name logged in full (a client chooses the names: a log line stays bounded). */
const MAX_LOGGED_NAME = 128;
/** At most one store-failure warning per this many ms (by the clock), with the count it skipped. */
const STORE_WARN_INTERVAL_MS = 10_000;

/** The report-only counters, registered once per metrics registry. */
export class ReportOnlyMetrics {
  readonly managedRequests: Counter;
  readonly jarCookies: Counter;
  readonly fingerprints: Counter;
  readonly storeErrors: Counter<'op'>;

  constructor(metrics: Metrics) {
    const registers = [metrics.registry];
    this.managedRequests = new Counter({
      name: 'coatcheck_report_only_managed_requests_total',
      help: 'Report-only mode: requests that carried at least one managed app cookie (enforce mode would serve them from a jar).',
      registers,
    });
    this.jarCookies = new Counter({
      name: 'coatcheck_report_only_jar_cookies_total',
      help: "Report-only mode: managed Set-Cookies in the app's responses (cookies enforce mode would have moved into jars).",
      registers,
    });
    this.fingerprints = new Counter({
      name: 'coatcheck_report_only_fingerprints_total',
      help: 'Report-only mode: cookie fingerprints recorded at logouts (store entries, each kept for session.absoluteTimeout).',
      registers,
    });
    this.storeErrors = new Counter({
      name: 'coatcheck_report_only_store_errors_total',
      help: 'Report-only mode: fingerprint lookups (op="find") and records (op="record") that failed; the request was forwarded anyway.',
      labelNames: ['op'],
      registers,
    });
    this.storeErrors.inc({ op: 'find' }, 0);
    this.storeErrors.inc({ op: 'record' }, 0);
    metrics.security.inc({ event: 'revoked', mode: 'report-only' }, 0);
  }
}

const registered = new WeakMap<Metrics, ReportOnlyMetrics>();

/** The managed cookies of one request that may be fingerprinted. */
interface Presented {
  /** Cookie names as logged (cut at MAX_LOGGED_NAME), one per cookie (a name may repeat: two cookies of one name, other paths). */
  names: string[];
  /** Per cookie, the fingerprint a logout records. */
  recorded: string[];
  /** Per cookie, every fingerprint it may have been recorded under (secret rotation); [i][0] is recorded[i]. */
  candidates: string[][];
}

/** Shared by every request of one handler. */
interface ReportOnly {
  readonly fingerprinter: CookieFingerprinter;
  readonly logIds: LogHasher;
  readonly counters: ReportOnlyMetrics;
  readonly presented: WeakMap<RequestContext, Presented>;
  lastStoreWarn: number;
  suppressedStoreWarns: number;
}

export interface StageLists {
  readonly request: readonly Stage[];
  readonly response: readonly Stage[];
}

/** The request and response stages of report-only mode, sharing one state. */
export function reportOnlyStages(deps: PipelineDeps): StageLists {
  let counters = registered.get(deps.metrics);
  if (counters === undefined) {
    counters = new ReportOnlyMetrics(deps.metrics);
    registered.set(deps.metrics, counters);
  }
  const state: ReportOnly = {
    fingerprinter: new CookieFingerprinter(deps.config.secrets),
    logIds: new LogHasher(deps.config.secrets[0] as string),
    counters,
    presented: new WeakMap(),
    lastStoreWarn: -Infinity,
    suppressedStoreWarns: 0,
  };
  deps.logger.warn(
    { event: 'report_only.started', mode: 'report-only' },
    'report-only mode: every cookie is forwarded untouched and nothing is enforced (fail-open); logged-out cookies presented again are only reported',
  );
  const presentCookies: Stage = (ctx, d) => readCookies(ctx, d, state);
  const checkFingerprints: Stage = (ctx, d) => check(ctx, d, state);
  const passResponse: Stage = (ctx, d) => responseHeaders(ctx, d, state);
  return {
    request: [identify, presentCookies, matchRules, checkFingerprints, forwardHeaders],
    response: [passResponse],
  };
}

/**
 * The client's cookies go to the app as they came: the Cookie header verbatim, except that a
 * cookie named as coatcheck's ticket (left from an enforce deployment) is taken out: it is
 * coatcheck's credential, never the app's. Managed cookies are counted, and those long enough
 * to name a session are fingerprinted for check().
 */
function readCookies(ctx: RequestContext, deps: PipelineDeps, state: ReportOnly): undefined {
  const header = ctx.req.headers.cookie;
  if (header === undefined || header === '') return undefined;
  const cookies = parseCookieHeader(header);
  ctx.clientCookies = cookies;
  const policy = deps.cookies;
  let managed = false;
  let ticket = false;
  let presented: Presented | undefined;
  for (const c of cookies) {
    const owner = policy.ownerOf(c.name);
    if (owner === 'ticket') ticket = true;
    if (owner !== 'jar') continue;
    managed = true;
    if (!fingerprintable(c.value)) continue;
    presented ??= { names: [], recorded: [], candidates: [] };
    if (presented.names.length >= MAX_FINGERPRINTED_COOKIES) continue;
    const candidates = state.fingerprinter.candidates(c.name, c.value);
    // The same cookie twice is one cookie.
    if (presented.recorded.includes(candidates[0] as string)) continue;
    presented.names.push(c.name.length > MAX_LOGGED_NAME ? `${c.name.slice(0, MAX_LOGGED_NAME)}…` : c.name);
    presented.recorded.push(candidates[0] as string);
    presented.candidates.push(candidates);
  }
  if (managed) state.counters.managedRequests.inc();
  if (presented !== undefined) state.presented.set(ctx, presented);
  ctx.upstreamCookie = ticket ? withoutCookie(header, deps.config.cookie.name) : header;
  return undefined;
}

/** `header` without its segments that name `name`; the others as sent (trimmed of SP and HTAB), joined with "; ". */
export function withoutCookie(header: string, name: string): string {
  return header
    .split(';')
    .filter((segment) => splitCookiePair(segment)?.name !== name)
    .map(trimWsp)
    .filter((segment) => segment !== '')
    .join('; ');
}

/**
 * Looks the presented cookies up (every request that has any), and on a logout records them.
 * One store round trip either way: a logout's record (SET … GET) also says whether the cookie
 * was recorded already, and its lookups under older secrets run beside it.
 */
function check(ctx: RequestContext, deps: PipelineDeps, state: ReportOnly): Promise<undefined> | undefined {
  const presented = state.presented.get(ctx);
  if (presented === undefined) return undefined;
  return ctx.isLogout ? recordLogout(ctx, deps, state, presented, 'rule') : lookUp(ctx, deps, state, presented);
}

async function lookUp(ctx: RequestContext, deps: PipelineDeps, state: ReportOnly, presented: Presented): Promise<undefined> {
  const all = presented.candidates.flat();
  let found: Array<number | null>;
  try {
    found = await deps.fingerprints.findFingerprints(all);
  } catch (err) {
    storeFailed(ctx, deps, state, 'find', err);
    return undefined;
  }
  const per = state.fingerprinter.perCookie;
  const matches: Match[] = [];
  for (let i = 0; i < presented.names.length; i++) {
    for (let j = 0; j < per; j++) {
      const at = found[i * per + j];
      if (at === null || at === undefined) continue;
      matches.push({ name: presented.names[i] as string, fingerprint: all[i * per + j] as string, at });
      break;
    }
  }
  if (matches.length > 0) reportReplay(ctx, deps, state, matches);
  return undefined;
}

interface Match {
  name: string;
  fingerprint: string;
  /** When the cookie was recorded at a logout (ms since the epoch). */
  at: number;
}

/**
 * A logout (a rule before forwarding, or the app's revocation after it): records the presented
 * cookies; any already recorded (a logged-out cookie used to log out again) is a replay too.
 */
async function recordLogout(ctx: RequestContext, deps: PipelineDeps, state: ReportOnly, presented: Presented, by: 'rule' | 'app'): Promise<undefined> {
  const store = deps.fingerprints;
  const per = state.fingerprinter.perCookie;
  const older = per > 1 ? presented.candidates.flatMap((c) => c.slice(1)) : [];
  let before: Array<number | null>;
  let olderFound: Array<number | null>;
  try {
    [before, olderFound] = await Promise.all([
      store.recordFingerprints(presented.recorded, deps.clock(), deps.config.session.absoluteTimeout),
      older.length > 0 ? store.findFingerprints(older) : Promise.resolve([]),
    ]);
  } catch (err) {
    storeFailed(ctx, deps, state, 'record', err);
    return undefined;
  }
  state.counters.fingerprints.inc(presented.recorded.length);
  ctx.log.info(
    { event: 'report_only.logout', mode: 'report-only', by, session: state.logIds.hash(presented.recorded[0] as string), cookies: presented.names },
    'logout: the managed cookies presented were fingerprinted; enforce mode would have revoked their session (report-only)',
  );
  const matches: Match[] = [];
  for (let i = 0; i < presented.names.length; i++) {
    let at = before[i] ?? null;
    let fingerprint = presented.recorded[i] as string;
    for (let j = 1; at === null && j < per; j++) {
      at = olderFound[i * (per - 1) + (j - 1)] ?? null;
      fingerprint = (presented.candidates[i] as string[])[j] as string;
    }
    if (at !== null) matches.push({ name: presented.names[i] as string, fingerprint, at });
  }
  if (matches.length > 0) reportReplay(ctx, deps, state, matches);
  return undefined;
}

/** One report per request, however many of its cookies were recorded. */
function reportReplay(ctx: RequestContext, deps: PipelineDeps, state: ReportOnly, matches: readonly Match[]): void {
  const first = matches[0] as Match;
  const at = Math.min(...matches.map((m) => m.at));
  ctx.log.warn(
    {
      event: 'session.replay',
      class: 'revoked',
      mode: 'report-only',
      session: state.logIds.hash(first.fingerprint),
      cookies: matches.map((m) => m.name),
      loggedOutAt: new Date(at).toISOString(),
      client: ctx.clientIp,
      userAgent: ctx.req.headers['user-agent'] ?? null,
    },
    'a cookie presented at a logout was presented again (replay after logout); enforce mode would have refused it; forwarded (report-only)',
  );
  deps.metrics.security.inc({ event: 'revoked', mode: 'report-only' });
}

/** Report-only never blocks: a failed lookup or record is counted and logged (rate-limited), and the request goes on. */
function storeFailed(ctx: RequestContext, deps: PipelineDeps, state: ReportOnly, op: 'find' | 'record', err: unknown): void {
  state.counters.storeErrors.inc({ op });
  const now = deps.clock();
  if (now - state.lastStoreWarn < STORE_WARN_INTERVAL_MS) {
    state.suppressedStoreWarns += 1;
    return;
  }
  ctx.log.warn(
    { event: 'report_only.store_failed', mode: 'report-only', op, suppressed: state.suppressedStoreWarns, err: err instanceof Error ? err.message : String(err) },
    'report-only: the session store failed; the request was forwarded unchecked (fail-open)',
  );
  state.lastStoreWarn = now;
  state.suppressedStoreWarns = 0;
}

/**
 * The app's response headers go to the client as they came (every Set-Cookie untouched), but for
 * hop-by-hop headers and coatcheck's control headers (Coatcheck-Session, Coatcheck-User), which
 * never reach a client in either mode. Managed Set-Cookies are counted; an app's revocation
 * (Coatcheck-Session: revoke, or clearing a logout.onCookieCleared cookie) records the presented
 * cookies as a logout rule would.
 */
function responseHeaders(ctx: RequestContext, deps: PipelineDeps, state: ReportOnly): Promise<undefined> | undefined {
  const raw = (ctx.upstream as NonNullable<RequestContext['upstream']>).headers;
  const listed = connectionListed(raw);
  const out: string[] = [];
  ctx.responseHeaders = out;
  const policy = deps.cookies;
  let jarCookies = 0;
  let now: number | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || (listed !== undefined && listed.has(lower))) continue;
    if (readAppControl(ctx, lower, value)) continue;
    out.push(name, value);
    if (lower !== 'set-cookie') continue;
    const cookieName = setCookieName(value);
    if (cookieName === undefined || policy.ownerOf(cookieName) !== 'jar') continue;
    jarCookies++;
    if (deps.onCookieCleared.has(cookieName) && clears(value, (now ??= deps.clock()))) ctx.appRevoke = true;
  }
  if (jarCookies > 0) state.counters.jarCookies.inc(jarCookies);
  // A logout of this session: revoke, and revoke-user (it ends this one with the others); not
  // revoke-others (the cookies of this request stay in use).
  if (!(ctx.appRevoke || ctx.appRevokeUser) || ctx.isLogout) return undefined;
  const presented = state.presented.get(ctx);
  return presented === undefined ? undefined : recordLogout(ctx, deps, state, presented, 'app');
}

/** Does this Set-Cookie delete its cookie (Max-Age of 0 or less, or an Expires in the past)? */
export function clears(setCookie: string, now: number): boolean {
  let expires: number | undefined;
  let maxAge: number | undefined;
  for (const attr of setCookie.split(';').slice(1)) {
    const eq = attr.indexOf('=');
    const key = trimWsp(eq === -1 ? attr : attr.slice(0, eq)).toLowerCase();
    const v = eq === -1 ? '' : trimWsp(attr.slice(eq + 1));
    // The last valid one of each counts; a malformed one is ignored (RFC 6265 §5.2).
    if (key === 'max-age' && /^-?\d+$/.test(v)) maxAge = Number(v);
    else if (key === 'expires') {
      const t = Date.parse(v);
      if (!Number.isNaN(t)) expires = t;
    }
  }
  // Max-Age wins over Expires (RFC 6265 §5.3 step 3).
  if (maxAge !== undefined) return maxAge <= 0;
  return expires !== undefined && expires <= now;
}
