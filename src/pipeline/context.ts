// The per-request context every stage reads and writes, and the things stages share.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Clock } from '../clock.js';
import type { Config, Rule } from '../config/schema.js';
import type { CookiePair } from '../cookies/header.js';
import type { NameMatcher } from '../cookies/names.js';
import type { CookieTarget, JarChange, RequestJar, SameSiteContext } from '../cookies/jar.js';
import type { Logger } from '../log.js';
import type { ForwardEngine, Forwarding, UpstreamResponse } from '../proxy/engine.js';
import type { LiveSession, Resolution, SessionService } from '../session/service.js';
import type { Metrics } from '../admin/metrics.js';

/** Built once at start-up and shared by every request. */
export interface PipelineDeps {
  config: Readonly<Config>;
  service: SessionService;
  engine: ForwardEngine;
  clock: Clock;
  logger: Logger;
  /** Client cookies that go to the app untouched, and app cookies that go to the browser. */
  passthrough: NameMatcher;
  /** With `managed` as a list: the names kept server-side. null means every cookie ("*"). */
  managed: ReadonlySet<string> | null;
  /** Names the app has set (seen in a Set-Cookie): a client presenting one is an alarm. */
  appCookieNames: AppCookieNames;
  /** Precomputed ticket cookie attribute suffix, e.g. "; Path=/; HttpOnly; Secure; SameSite=Lax". */
  ticketAttributes: string;
  metrics: Metrics;
  /** App cookie names whose clearing by the app revokes the session (logout.onCookieCleared). */
  onCookieCleared: ReadonlySet<string>;
}

/** A bounded set of cookie names the app has been seen to set. */
export class AppCookieNames {
  private readonly names = new Set<string>();
  constructor(
    initial: Iterable<string>,
    private readonly max = 1024,
  ) {
    for (const n of initial) this.names.add(n);
  }
  add(name: string): void {
    if (this.names.size < this.max) this.names.add(name);
  }
  has(name: string): boolean {
    return this.names.has(name);
  }
}

const NO_STRINGS: readonly string[] = Object.freeze([]);
const NO_COOKIES: readonly CookiePair[] = Object.freeze([]);
const NO_CHANGES: readonly JarChange[] = Object.freeze([]);
const NO_SESSION: Resolution = Object.freeze({ state: 'none' });
const NO_TARGET: CookieTarget = Object.freeze({ host: '', path: '/', secure: false });

/**
 * The per-request state. A class with every field set in the constructor (one hidden class for
 * every request, no closures); lists start as shared empty constants and are made by the stage
 * that fills them, so a request allocates only what it uses.
 */
export class RequestContext {
  readonly started: number = performance.now();
  private childLog: Logger | undefined = undefined;
  readonly method: string;
  /** Request target as sent upstream: path and query (origin-form). */
  target = '/';
  /** Normalized path, for rule matching. */
  pathname = '/';
  /** Scheme, host and path the browser used: what cookie rules are matched against. */
  publicUrl = '';
  /** The public URL as cookie matching needs it. */
  cookieTarget: CookieTarget = NO_TARGET;
  secure = false;
  host = '';
  /** The client's address (behind a trusted proxy: the last address it appended). */
  clientIp = '';
  /** The address of the peer on our socket. */
  peerIp = '';
  /** Binding of this request (when session.bind is on). */
  bind: string | undefined = undefined;
  /** The app asked for a revocation (Coatcheck-Session: revoke, or clearing an onCookieCleared cookie). */
  appRevoke = false;
  /** The app asked for a new id (Coatcheck-Session: rotate). */
  appRotate = false;
  /** The app named the session's user (Coatcheck-User). */
  appUser: string | undefined = undefined;
  sameSite: SameSiteContext = undefined;
  /** Every cookie the client sent. */
  clientCookies: readonly CookiePair[] = NO_COOKIES;
  /** Values of the ticket cookie the client sent (normally one). */
  ticketValues: readonly string[] = NO_STRINGS;
  resolution: Resolution = NO_SESSION;
  /** The live session used for this request (none when anonymous, or after logout). */
  session: LiveSession | undefined = undefined;
  jar: RequestJar | undefined = undefined;
  isLogout = false;
  isLogin = false;
  /** The response must clear the ticket cookie (unless a new ticket replaces it). */
  clearTicket = false;
  /** A new ticket to give the browser. */
  newTicket: string | undefined = undefined;
  /** Short keyed hash of the session id in use, for logs. */
  logId: string | undefined = undefined;
  /** The Cookie header for the app ('' for none), made by the buildCookieHeader stage. */
  upstreamCookie = '';
  /** Flat raw header list for the upstream request (made by the forwardHeaders stage). */
  upstreamHeaders: string[] = NO_STRINGS as string[];
  /** The request to the app, once sent (cancelled when the client goes away). */
  forwarding: Forwarding | undefined = undefined;
  /** The client went away before the response was complete. */
  aborted = false;
  upstream: UpstreamResponse | undefined = undefined;
  /** Flat raw header list for the client response (made by the collectSetCookies stage). */
  responseHeaders: string[] = NO_STRINGS as string[];
  /** The app's cookie changes, in order (a list is made on the first one). */
  jarChanges: readonly JarChange[] = NO_CHANGES;

  constructor(
    readonly id: string,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    private readonly rootLog: Logger,
  ) {
    this.method = req.method ?? 'GET';
  }

  /** The request's child logger, made on first use: most requests never log. */
  get log(): Logger {
    return (this.childLog ??= this.rootLog.child(this.logId ? { reqId: this.id, session: this.logId } : { reqId: this.id }));
  }

  set log(value: Logger) {
    this.childLog = value;
  }

  addJarChange(change: JarChange): void {
    if (this.jarChanges === NO_CHANGES) this.jarChanges = [change];
    else (this.jarChanges as JarChange[]).push(change);
  }
}

/** A stage either lets the request go on (`true`) or has answered it itself (`false`). */
export type RequestStage = (ctx: RequestContext, deps: PipelineDeps) => boolean | Promise<boolean>;
export type ResponseStage = (ctx: RequestContext, deps: PipelineDeps) => boolean | Promise<boolean>;

export function ruleMatches(rules: readonly Rule[], method: string, pathname: string): boolean {
  for (const r of rules) {
    if (r.methods && !r.methods.includes(method)) continue;
    if (r.kind === 'exact') {
      if (pathname === r.path || (pathname.length === r.path.length + 1 && pathname.endsWith('/') && pathname.startsWith(r.path))) return true;
    } else {
      const p = r.path.endsWith('/') ? r.path : `${r.path}/`;
      if (pathname === r.path || pathname.startsWith(p)) return true;
    }
  }
  return false;
}
