// The per-request context every stage reads and writes, what stages share, and what a stage
// may decide (the Outcome). Imports nothing from the stages.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { Clock } from '../clock.js';
import type { Config } from '../config/schema.js';
import type { CookiePair } from '../cookies/header.js';
import type { CookiePolicy } from '../cookies/policy.js';
import type { CookieTarget, JarChange, RequestJar, SameSiteContext } from '../cookies/jar.js';
import type { Logger } from '../log.js';
import type { ForwardEngine, Forwarding, UpstreamResponse } from '../proxy/engine.js';
import type { LiveSession, Resolution, SessionService } from '../session/service.js';
import type { Metrics } from '../admin/metrics.js';
import type { HttpErrorKind } from '../errors.js';
import type { TicketCookie } from './ticket-cookie.js';
import type { ProxyTrust } from './headers.js';
import type { FingerprintStore } from '../store/types.js';
import type { LiveConnections } from '../live/connections.js';

/** Built once at start-up and shared by every request. */
export interface PipelineDeps {
  config: Readonly<Config>;
  service: SessionService;
  engine: ForwardEngine;
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
  /** Whose cookie is it: the ticket's, the app's jar's or the client's. */
  cookies: CookiePolicy;
  /** The ticket cookie's Set-Cookie forms. */
  ticket: TicketCookie;
  /** App cookie names whose clearing by the app revokes the session (logout.onCookieCleared). */
  onCookieCleared: ReadonlySet<string>;
  /** Client cookie names already logged as stripped (once per name per process; bounded by the stage). */
  strippedCookieNames: Set<string>;
  /** Which peers and X-Forwarded-For hops are trusted proxies (trustProxy). */
  proxies: ProxyTrust;
  /** Where report-only mode records and looks up cookie fingerprints: the session store (report-only.ts). */
  fingerprints: FingerprintStore;
  /** Open WebSockets and streaming responses, by session: a revocation ends them. */
  live: LiveConnections;
}

const NO_STRINGS: readonly string[] = Object.freeze([]);
const NO_COOKIES: readonly CookiePair[] = Object.freeze([]);
const NO_CHANGES: readonly JarChange[] = Object.freeze([]);
const NO_SESSIONS: readonly LiveSession[] = Object.freeze([]);
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
  /** The client's address (behind trusted proxies: the first untrusted X-Forwarded-For hop from the right). */
  clientIp = '';
  /** The address of the peer on our socket. */
  peerIp = '';
  /** The peer is a trusted proxy (trustProxy): its X-Forwarded-* headers were believed. */
  proxied = false;
  /** Binding of this request (when session.bind is on). */
  bind: string | undefined = undefined;
  /** The app asked for a revocation (Coatcheck-Session: revoke, or clearing an onCookieCleared cookie). */
  appRevoke = false;
  /** The app asked for a new id (Coatcheck-Session: rotate). */
  appRotate = false;
  /** The app named the session's user (Coatcheck-User). */
  appUser: string | undefined = undefined;
  /** The user the login request named in its body (a login rule's `user`). */
  loginUser: string | undefined = undefined;
  /**
   * Revoke the user's other sessions once the app answered below 400 (a logout rule of scope
   * `others`, or Coatcheck-Session: revoke-others), and who asked.
   */
  revokeOthers: 'rule' | 'app' | undefined = undefined;
  /** Revoke every session of the user (Coatcheck-Session: revoke-user), with this one. */
  appRevokeUser = false;
  sameSite: SameSiteContext = undefined;
  /** Every cookie the client sent. */
  clientCookies: readonly CookiePair[] = NO_COOKIES;
  /** Values of the ticket cookie the client sent (normally one). */
  ticketValues: readonly string[] = NO_STRINGS;
  resolution: Resolution = NO_SESSION;
  /** The live session used for this request (none when anonymous, or after logout). */
  session: LiveSession | undefined = undefined;
  /**
   * The live sessions of a request with several tickets that is not served with any of them
   * (resolution 'mixed'): a logout revokes every one.
   */
  otherSessions: readonly LiveSession[] = NO_SESSIONS;
  /** An invalid-session answer decided before the logout rules ran, given after them (several tickets). */
  deferredReject: RejectKind | undefined = undefined;
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
  /**
   * The body to forward when it is not the client's request as it is (set by matchRules after
   * reading a `_method` field: the bytes read, then the rest). undefined: the request itself.
   */
  body: Readable | undefined = undefined;
  /** The request to the app, once sent (cancelled when the client goes away). */
  forwarding: Forwarding | undefined = undefined;
  /** The client went away before the response was complete. */
  aborted = false;
  /** A WebSocket upgrade (handler.ts createUpgradeHandler): forwarded with the engine's upgrade(). */
  upgrade = false;
  /**
   * coatcheck itself cut the response after it started, and why: 'upstream' (the app's body
   * failed), 'failed' (a failure after the headers were sent), 'revoked' (a streaming response
   * of a session that was revoked meanwhile). Unset: not cut by coatcheck.
   */
  cutBy: 'upstream' | 'failed' | 'revoked' | undefined = undefined;
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

/** Invalid-session answers: the configured status, or a 303 to the configured location. */
export type RejectKind = Extract<HttpErrorKind, 'SESSION_REVOKED' | 'SESSION_EXPIRED' | 'SESSION_BINDING' | 'SESSION_CONFLICT'>;

/**
 * What a stage decided when the request cannot go on. The handler is the one place that acts
 * on it: it discards an upstream body, then answers (or, once the response has started, cuts
 * the connection).
 * - `reject`: an invalid session, answered per `invalidSession` (status or redirect);
 * - `fail`: an error, answered with the status and code it maps to (errors.ts).
 * A stage may also throw: a thrown error is answered as `fail`.
 */
export type Outcome = { readonly kind: 'reject'; readonly error: RejectKind } | { readonly kind: 'fail'; readonly error: unknown };

/** undefined: go on with the next stage. */
export type StageResult = Outcome | undefined;

/**
 * A request or response stage: a function of the context and the shared dependencies. It never
 * answers the client itself; it changes the context and returns (or resolves to) undefined to
 * go on, or an Outcome. Synchronous stages keep the hot path free of promises.
 */
export type Stage = (ctx: RequestContext, deps: PipelineDeps) => StageResult | Promise<StageResult>;

const REJECTS: { readonly [K in RejectKind]: Outcome } = {
  SESSION_REVOKED: Object.freeze({ kind: 'reject', error: 'SESSION_REVOKED' }),
  SESSION_EXPIRED: Object.freeze({ kind: 'reject', error: 'SESSION_EXPIRED' }),
  SESSION_BINDING: Object.freeze({ kind: 'reject', error: 'SESSION_BINDING' }),
  SESSION_CONFLICT: Object.freeze({ kind: 'reject', error: 'SESSION_CONFLICT' }),
};

/** Refuse an invalid session (see Outcome). */
export function reject(kind: RejectKind): Outcome {
  return REJECTS[kind];
}

/** Answer with the status `error` maps to (see Outcome). */
export function fail(error: unknown): Outcome {
  return { kind: 'fail', error };
}
