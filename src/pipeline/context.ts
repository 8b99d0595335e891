// The per-request context every stage reads and writes, and the things stages share.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Clock } from '../clock.js';
import type { Config, Rule } from '../config/schema.js';
import type { CookiePair, NameMatcher } from '../cookies/header.js';
import type { CookieTarget, JarChange, RequestJar, SameSiteContext } from '../cookies/jar.js';
import type { Logger } from '../log.js';
import type { ForwardEngine, UpstreamResponse } from '../proxy/engine.js';
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

export interface RequestContext {
  readonly id: string;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly started: number;
  log: Logger;
  readonly method: string;
  /** Request target as sent upstream: path and query (origin-form). */
  target: string;
  /** Normalized path, for rule matching. */
  pathname: string;
  /** Scheme, host and path the browser used: what cookie rules are matched against. */
  publicUrl: string;
  /** The public URL as cookie matching needs it. */
  cookieTarget: CookieTarget;
  secure: boolean;
  host: string;
  /** The client's address (behind a trusted proxy: the last address it appended). */
  clientIp: string;
  /** The address of the peer on our socket. */
  peerIp: string;
  /** Binding of this request (when session.bind is on). */
  bind: string | undefined;
  /** The app asked for a revocation (Coatcheck-Session: revoke, or clearing an onCookieCleared cookie). */
  appRevoke: boolean;
  /** The app asked for a new id (Coatcheck-Session: rotate). */
  appRotate: boolean;
  /** The app named the session's user (Coatcheck-User). */
  appUser: string | undefined;
  sameSite: SameSiteContext;
  /** Every cookie the client sent. */
  clientCookies: CookiePair[];
  /** Values of the ticket cookie the client sent (normally one). */
  ticketValues: string[];
  resolution: Resolution;
  /** The live session used for this request (none when anonymous, or after logout). */
  session: LiveSession | undefined;
  jar: RequestJar | undefined;
  isLogout: boolean;
  isLogin: boolean;
  /** The response must clear the ticket cookie (unless a new ticket replaces it). */
  clearTicket: boolean;
  /** A new ticket to give the browser. */
  newTicket: string | undefined;
  /** Short keyed hash of the session id in use, for logs. */
  logId: string | undefined;
  /** Flat raw header list for the upstream request. */
  upstreamHeaders: string[];
  /** Aborts the upstream request when the client goes away. */
  readonly abort: AbortController;
  upstream: UpstreamResponse | undefined;
  /** Flat raw header list for the client response. */
  responseHeaders: string[];
  jarChanges: JarChange[];
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
