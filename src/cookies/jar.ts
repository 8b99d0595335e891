// The per-request view of one session's cookie jar. RFC 6265 rules (domain and path
// matching, host-only cookies, expiry, Secure, SameSite, cookie prefixes, public suffixes,
// ordering) are tough-cookie's; this file only moves cookies between tough-cookie and the
// compact form kept in the store. Pure: every function takes `now`, none does I/O.
import { canonicalDomain, Cookie, cookieCompare, CookieJar, domainMatch, pathMatch, Store, type Callback, type ErrorCallback, type Nullable } from 'tough-cookie';
import { splitCookiePair } from './names.js';

export type SameSiteContext = 'strict' | 'lax' | 'none' | undefined;

/** The store field of a cookie: its identity in a jar (RFC 6265 §5.3 step 11). */
export function fieldOf(cookie: Cookie): string {
  return `${cookie.key};${cookie.domain ?? ''};${cookie.path ?? '/'}`;
}

const F_SECURE = 1;
const F_HTTP_ONLY = 2;
const F_HOST_ONLY = 4;
const SAME_SITE_CODE: Record<string, number> = { strict: 1, lax: 2, none: 3 };
const SAME_SITE_NAME = ['', 'strict', 'lax', 'none'] as const;

/**
 * Compact stored form: [value, flags, expires, creation, sameSite], times in ms relative to
 * `base` (the record's creation time; expires 0 = a session cookie). Name, domain and path
 * live in the field name; the order of cookies created in the same millisecond (tough-cookie's
 * creation index: one response setting several) is kept by the order of the records' entries,
 * so it is given back to cookieFromTuple(). Max-Age is turned into an absolute expiry when
 * the cookie is received, as a browser does.
 */
export type CookieTuple = [value: string, flags: number, expires: number, creation: number, sameSite: number];

export function cookieTuple(cookie: Cookie, base: number): CookieTuple {
  const flags = (cookie.secure ? F_SECURE : 0) | (cookie.httpOnly ? F_HTTP_ONLY : 0) | (cookie.hostOnly ? F_HOST_ONLY : 0);
  // A stored cookie has not expired, so its expiry is after the record's creation: never 0.
  const expires = cookie.expires instanceof Date ? Math.max(1, cookie.expires.getTime() - base) : 0;
  const creation = cookie.creation instanceof Date ? cookie.creation.getTime() - base : 0;
  const sameSite = SAME_SITE_CODE[(cookie.sameSite ?? '').toLowerCase()] ?? 0;
  return [cookie.value, flags, expires, creation, sameSite];
}

/**
 * Rebuilds a cookie from its field and stored form (`data` is untrusted: anything JSON.parse
 * returns, read from `offset` on); undefined when either is malformed.
 */
export function cookieFromTuple(field: string, data: readonly unknown[], offset: number, base: number, order: number): Cookie | undefined {
  const first = field.indexOf(';');
  const second = first === -1 ? -1 : field.indexOf(';', first + 1);
  if (first <= 0 || second === -1) return undefined;
  if (data.length - offset < 5) return undefined;
  const value = data[offset];
  const flags = data[offset + 1];
  const expires = data[offset + 2];
  const creation = data[offset + 3];
  const sameSite = data[offset + 4];
  if (typeof value !== 'string' || !isInt(flags) || !isInt(expires) || !isInt(creation) || !isInt(sameSite)) return undefined;
  const ss = SAME_SITE_NAME[sameSite];
  const cookie = new Cookie({
    key: field.slice(0, first),
    value,
    domain: field.slice(first + 1, second),
    path: field.slice(second + 1),
    secure: (flags & F_SECURE) !== 0,
    httpOnly: (flags & F_HTTP_ONLY) !== 0,
    hostOnly: (flags & F_HOST_ONLY) !== 0,
    expires: expires !== 0 ? new Date(base + expires) : 'Infinity',
    creation: new Date(base + creation),
    ...(ss ? { sameSite: ss } : {}),
  });
  cookie.creationIndex = order;
  return cookie;
}

function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v);
}

/** Orders cookies as they were created (creation time, then creation index): the order a record keeps. */
export function byCreation(a: Cookie, b: Cookie): number {
  const ta = a.creation instanceof Date ? a.creation.getTime() : 0;
  const tb = b.creation instanceof Date ? b.creation.getTime() : 0;
  return ta - tb || a.creationIndex - b.creationIndex;
}

/** What one `Set-Cookie` from the app does to the jar. */
export type JarChange =
  | { kind: 'set'; field: string; name: string; cookie: Cookie }
  | { kind: 'delete'; field: string; name: string }
  | { kind: 'rejected'; name: string | undefined; reason: string };

const JAR_OPTIONS = {
  looseMode: false,
  rejectPublicSuffixes: true,
  allowSpecialUseDomain: true,
  prefixSecurity: 'strict',
} as const;

const SAME_SITE_LEVEL: Record<string, number> = { strict: 3, lax: 2, none: 1 };

/** Where a request goes, as cookie matching needs it. */
export interface CookieTarget {
  /** Canonical host name: lower case, no port, IPv6 without brackets. */
  host: string;
  path: string;
  /** https, or a loopback host (a "potentially trustworthy" origin, as browsers and tough-cookie treat it). */
  secure: boolean;
}

/** Splits a public URL into what cookie matching needs. */
export function cookieTargetOf(url: string): CookieTarget {
  const u = new URL(url);
  const host = canonicalDomain(u.hostname.replace(/^\[|\]$/g, '')) ?? '';
  return { host, path: u.pathname || '/', secure: u.protocol === 'https:' || isLoopbackHost(host) };
}

export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host.endsWith('.localhost') || /^127\.\d+\.\d+\.\d+$/.test(host) || host === '::1';
}

interface HeaderMemo {
  host: string;
  path: string;
  secure: boolean;
  sameSite: SameSiteContext;
  /** The header holds until the first of the jar's cookies expires. */
  until: number;
  header: string;
}

/**
 * The last header built from each jar. A session's jar is a Map that is never changed once
 * made (a write makes a new one), and it is kept between requests, so a session that asks for
 * the same host and path again gets the same header without matching every cookie again.
 */
const headerMemo = new WeakMap<ReadonlyMap<string, Cookie>, HeaderMemo>();

/** cookieHeaderFor over a jar that is never changed, remembering its last answer (see headerMemo). */
export function jarCookieHeader(jar: ReadonlyMap<string, Cookie>, target: CookieTarget, now: number, sameSiteContext: SameSiteContext): string {
  const m = headerMemo.get(jar);
  if (m !== undefined && now < m.until && m.path === target.path && m.host === target.host && m.secure === target.secure && m.sameSite === sameSiteContext) {
    return m.header;
  }
  const header = cookieHeaderFor(jar.values(), target, now, sameSiteContext);
  let until = Infinity;
  for (const c of jar.values()) {
    const exp = expiryOf(c);
    if (exp < until) until = exp;
  }
  headerMemo.set(jar, { host: target.host, path: target.path, secure: target.secure, sameSite: sameSiteContext, until, header });
  return header;
}

/**
 * The `Cookie` header value a browser would send to `target` at `now` ('' when none): the
 * matching of tough-cookie's `getCookies` (host-only and domain match, path match, Secure,
 * SameSite, expiry, ordering), with tough-cookie's own rule functions, over a plain list, so
 * the hot path builds no jar.
 */
export function cookieHeaderFor(cookies: Iterable<Cookie>, target: CookieTarget, now: number, sameSiteContext: SameSiteContext): string {
  const sameSiteLevel = sameSiteContext ? (SAME_SITE_LEVEL[sameSiteContext] ?? 0) : 0;
  const matched: Cookie[] = [];
  for (const c of cookies) {
    if (c.hostOnly ? c.domain !== target.host : !domainMatch(target.host, c.domain ?? undefined, false)) continue;
    if (typeof c.path === 'string' && !pathMatch(target.path, c.path)) continue;
    if (c.secure && !target.secure) continue;
    if (sameSiteLevel && (SAME_SITE_LEVEL[c.sameSite ?? ''] ?? 1) > sameSiteLevel) continue;
    if (expiryOf(c) <= now) continue;
    matched.push(c);
  }
  // A jar is kept in creation order, so with one path the list is nearly always in order already.
  if (matched.length > 1 && !inOrder(matched)) matched.sort(cookieCompare);
  let s = '';
  for (const c of matched) s += (s === '' ? '' : '; ') + c.cookieString();
  return s;
}

/**
 * When a cookie expires (ms; Infinity: a session cookie). The jar's cookies hold an absolute
 * Expires (Max-Age is turned into one when received), so this is Cookie#expiryTime() without
 * its `expires == "Infinity"` test, which turns a Date into its text on every call (a third of
 * a microsecond each, for every cookie of every request that builds a header).
 */
export function expiryOf(c: Cookie): number {
  if (c.maxAge != null) return c.expiryTime() ?? Infinity;
  return c.expires instanceof Date ? c.expires.getTime() : Infinity;
}

/** Whether a list already is in cookieCompare order (then sorting it would change nothing). */
function inOrder(cookies: readonly Cookie[]): boolean {
  for (let i = 1; i < cookies.length; i++) if (cookieCompare(cookies[i - 1] as Cookie, cookies[i] as Cookie) > 0) return false;
  return true;
}

/**
 * One session's cookies for the span of one response: `apply` takes the app's `Set-Cookie`s
 * through a tough-cookie jar (made on the first one) and reports each as a change for the
 * session service to persist. What a browser would send is `cookieHeaderFor`/`jarCookieHeader`.
 */
export class RequestJar {
  private jar: CookieJar | undefined;

  /** `cookies`: the session's jar (field → cookie), read and never changed. */
  constructor(private readonly cookies: ReadonlyMap<string, Cookie> = NO_COOKIES) {}

  private tough(): CookieJar {
    return (this.jar ??= new CookieJar(new SessionCookieStore(this.cookies), JAR_OPTIONS));
  }

  /**
   * Applies one `Set-Cookie` value received for `url`, as a browser would. A cookie that is
   * already expired (Max-Age ≤ 0, Expires in the past) deletes its field.
   */
  apply(setCookie: string, url: string, now: number, sameSiteContext: SameSiteContext): JarChange {
    const parsed = Cookie.parse(setCookie, { loose: false });
    const semi = setCookie.indexOf(';');
    const pair = splitCookiePair(semi === -1 ? setCookie : setCookie.slice(0, semi));
    if (!parsed || !pair) return { kind: 'rejected', name: undefined, reason: 'unparseable Set-Cookie' };
    // tough-cookie trims the name and value with String#trim(), which also cuts 0xA0 (a byte of
    // many UTF-8 characters in a latin1 header string): keep the bytes as the browser would.
    parsed.key = pair.name;
    parsed.value = pair.value;
    const name = pair.name;
    // Max-Age is relative to the moment of receipt; keep it as an absolute expiry.
    if (typeof parsed.maxAge === 'number') {
      parsed.expires = parsed.maxAge <= 0 ? new Date(0) : new Date(now + parsed.maxAge * 1000);
      parsed.maxAge = null;
    } else if (parsed.maxAge === '-Infinity') {
      parsed.expires = new Date(0);
      parsed.maxAge = null;
    } else if (parsed.maxAge === 'Infinity') {
      parsed.maxAge = null;
    }
    const expired = parsed.expires instanceof Date && parsed.expires.getTime() <= now;
    let stored: Cookie | undefined;
    try {
      stored = this.tough().setCookieSync(parsed, url, {
        http: true,
        now: new Date(now),
        ...(sameSiteContext ? { sameSiteContext } : {}),
      });
    } catch (err) {
      return { kind: 'rejected', name, reason: (err as Error).message };
    }
    if (!stored) return { kind: 'rejected', name, reason: 'refused by RFC 6265 rules (cookie prefix or SameSite)' };
    const field = fieldOf(stored);
    if (expired) return { kind: 'delete', field, name };
    return { kind: 'set', field, name, cookie: stored };
  }
}

const NO_COOKIES: ReadonlyMap<string, Cookie> = new Map();

/**
 * The tough-cookie store a RequestJar's CookieJar works on: the session's own jar, read in place
 * by field, with what this response stored over it. setCookie() asks it for the cookie a
 * Set-Cookie replaces (findCookie) and stores the result (putCookie/updateCookie): a
 * MemoryCookieStore would first need every cookie of the session put into its index, a promise
 * and two closures each, on every response that sets a cookie. Synchronous, as setCookieSync()
 * requires; the other Store methods are never called on it (the base class throws).
 */
class SessionCookieStore extends Store {
  private stored: Map<string, Cookie> | undefined;

  constructor(private readonly session: ReadonlyMap<string, Cookie>) {
    super();
    this.synchronous = true;
  }

  override findCookie(domain: Nullable<string>, path: Nullable<string>, key: Nullable<string>): Promise<Cookie | undefined>;
  override findCookie(domain: Nullable<string>, path: Nullable<string>, key: Nullable<string>, callback: Callback<Cookie | undefined>): void;
  override findCookie(domain: Nullable<string>, path: Nullable<string>, key: Nullable<string>, callback?: Callback<Cookie | undefined>): unknown {
    let found: Cookie | undefined;
    if (domain != null && path != null && key != null) {
      const field = `${key};${domain};${path}`;
      found = this.stored?.get(field) ?? this.session.get(field);
    }
    if (callback === undefined) return Promise.resolve(found);
    callback(null, found);
    return undefined;
  }

  override putCookie(cookie: Cookie): Promise<void>;
  override putCookie(cookie: Cookie, callback: ErrorCallback): void;
  override putCookie(cookie: Cookie, callback?: ErrorCallback): unknown {
    (this.stored ??= new Map()).set(fieldOf(cookie), cookie);
    if (callback === undefined) return Promise.resolve();
    callback(null);
    return undefined;
  }

  override updateCookie(oldCookie: Cookie, newCookie: Cookie): Promise<void>;
  override updateCookie(oldCookie: Cookie, newCookie: Cookie, callback: ErrorCallback): void;
  override updateCookie(_oldCookie: Cookie, newCookie: Cookie, callback?: ErrorCallback): unknown {
    return callback === undefined ? this.putCookie(newCookie) : this.putCookie(newCookie, callback);
  }
}

/**
 * The SameSite context of a request, from the Fetch Metadata headers browsers send.
 * Without them (older clients, scripts) SameSite is not enforced.
 */
export function sameSiteContextOf(secFetchSite: string | undefined, secFetchMode: string | undefined, method: string): SameSiteContext {
  switch (secFetchSite) {
    case 'same-origin':
    case 'same-site':
    case 'none':
      return 'strict';
    case 'cross-site':
      return secFetchMode === 'navigate' && (method === 'GET' || method === 'HEAD') ? 'lax' : 'none';
    default:
      return undefined;
  }
}
