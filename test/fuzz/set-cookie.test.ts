// Property tests of the jar (issue 13): Set-Cookie strings that are valid, near-valid and
// hostile (attributes in every order and case, huge values, control characters, non-ASCII,
// duplicate attributes, dates in the formats browsers accept) applied as the response stages
// apply them. RequestJar.apply never throws; for ASCII cookies the Cookie header the jar then
// sends equals the one tough-cookie's own jar (browser mode, the same options) sends; the jar
// a write stores never exceeds the limits.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { CookieJar, type Cookie } from 'tough-cookie';
import { cookieHeaderFor, cookieTargetOf, RequestJar, type JarChange, type SameSiteContext } from '../../src/cookies/jar.js';
import { buildJar } from '../../src/session/jar-builder.js';
import { pino } from 'pino';
import { fuzz } from './settings.js';

// tough-cookie's getCookies checks expiry against the real clock (it takes no `now`): the
// differential property takes the real time of each case, a few ms before tough-cookie reads it.
const NOW = Date.now();
const quiet = pino({ level: 'silent' });

const HOSTS = ['app.example', 'sub.app.example', 'other.example', 'localhost:8443', '127.0.0.1:8080'];
const PATHS = ['/', '/account/settings', '/a/b/c', '/account'];
const url = (scheme: string, host: string, path: string) => `${scheme}://${host}${path}`;
const anyUrl = fc.tuple(fc.constantFrom('http', 'https'), fc.constantFrom(...HOSTS), fc.constantFrom(...PATHS)).map(([s, h, p]) => url(s, h, p));
const URLS = HOSTS.flatMap((h) => PATHS.flatMap((p) => [url('http', h, p), url('https', h, p)]));
/** Where the cookies are set and where they are read: mostly the same host, any scheme and path. */
const setAndGet = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(fc.constantFrom('http', 'https'), fc.constantFrom('http', 'https'), fc.constantFrom(...HOSTS), fc.constantFrom(...PATHS), fc.constantFrom(...PATHS)).map(([s1, s2, h, p1, p2]) => [url(s1, h, p1), url(s2, h, p2)] as const) },
  { weight: 1, arbitrary: fc.tuple(anyUrl, anyUrl) },
);

const tokenChar = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&\'*+-.^_`|~'.split(''));
const name = fc.oneof(
  fc.string({ unit: tokenChar, minLength: 1, maxLength: 12 }),
  fc.constantFrom('__Host-id', '__Secure-id', '__host-x', 'sid', 'SID', 'session', 'a'),
);
const valueChar = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&\'()*+-./:<=>?@[]^_`{|}~'.split(''));
const value = fc.oneof(fc.string({ unit: valueChar, maxLength: 40 }), fc.constantFrom('', '""', '"quoted"', 'a=b', 'x y'));

/** Dates in the forms RFC 6265's date parser (and browsers) accept, and some they do not. */
const date = fc.integer({ min: Date.UTC(1969, 0, 1), max: Date.UTC(2040, 0, 1) }).chain((ms) => {
  const d = new Date(ms);
  return fc.constantFrom(
    d.toUTCString(),
    d.toUTCString().replace('GMT', 'UTC'),
    d.toUTCString().replace(/ (\d{4}) /, (_m, y: string) => ` ${y.slice(2)} `),
    d.toUTCString().replace(/ /g, '-'),
    d.toISOString(),
    'Thu, 01 Jan 1970 00:00:00 GMT',
    'not a date',
    '',
  );
});

const ws = fc.constantFrom('', ' ', '  ', '\t');
const attribute = fc.oneof(
  fc.tuple(fc.constantFrom('Path', 'path', 'PATH'), fc.constantFrom('/', '/', '/', '/a', '/a/b', '/account', '', 'x', '/%2F', '/account/')).map(([k, v]) => `${k}=${v}`),
  fc.tuple(fc.constantFrom('Domain', 'domain'), fc.constantFrom('app.example', '.app.example', 'sub.app.example', 'example', 'com', 'other.example', 'localhost', '127.0.0.1', '')).map(([k, v]) => `${k}=${v}`),
  fc.tuple(fc.constantFrom('Expires', 'expires'), date).map(([k, v]) => `${k}=${v}`),
  fc.tuple(fc.constantFrom('Max-Age', 'max-age'), fc.oneof(fc.integer({ min: -100, max: 10_000_000 }).map(String), fc.constantFrom('0', '-0', '+5', '1e3', 'abc', '', '99999999999999999999'))).map(
    ([k, v]) => `${k}=${v}`,
  ),
  fc.constantFrom('Secure', 'secure', 'HttpOnly', 'httponly', 'Partitioned'),
  fc.tuple(fc.constantFrom('SameSite', 'samesite'), fc.constantFrom('Lax', 'Strict', 'None', 'lax', 'bogus', '')).map(([k, v]) => `${k}=${v}`),
  fc.constantFrom('Unknown=1', 'Priority=High', 'Version=1', 'Comment=x'),
);

/** A Set-Cookie a server could plausibly send (ASCII only): the differential property uses these. */
const asciiSetCookie = fc
  .tuple(name, value, fc.array(fc.tuple(ws, attribute, ws), { maxLength: 6 }))
  .map(([n, v, attrs]) => [`${n}=${v}`, ...attrs.map(([a, attr, b]) => `${a}${attr}${b}`)].join(';'));

/** Anything: hostile bytes, non-ASCII, control characters, huge values, no `=`, many `;`. */
const hostileSetCookie = fc.oneof(
  fc.string({ maxLength: 200 }),
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.tuple(asciiSetCookie, fc.string({ unit: 'binary', maxLength: 30 })).map(([s, x]) => s + x),
  fc.tuple(name, fc.integer({ min: 4000, max: 70_000 })).map(([n, len]) => `${n}=${'v'.repeat(len)}; Path=/`),
  fc.array(attribute, { maxLength: 40 }).map((attrs) => `dup=1; ${attrs.join('; ')}`),
  fc.constantFrom('=', ';', '=;', ' =x', 'a\u0000b=c', 'a=b\u0007', 'ü=ö', 'a=\u00a0b\u00a0', '\r\nSet-Cookie: x=y', 'a=b; Domain=.', 'a=b; Path'),
);

const sameSite = fc.constantFrom<SameSiteContext>(undefined, 'strict', 'lax', 'none');

/** Applies Set-Cookies in order as the response stages do: the changes kept in a field → cookie map. */
function applyAll(setCookies: readonly string[], url: string, ctx: SameSiteContext, now = NOW): { jar: Map<string, Cookie>; changes: JarChange[] } {
  const jar = new RequestJar();
  const map = new Map<string, Cookie>();
  const changes: JarChange[] = [];
  for (const sc of setCookies) {
    const change = jar.apply(sc, url, now, ctx);
    changes.push(change);
    if (change.kind === 'set') map.set(change.field, change.cookie);
    else if (change.kind === 'delete') map.delete(change.field);
  }
  return { jar: map, changes };
}

/** The pairs of a Cookie header, sorted (the order of equal-length paths may differ by creation ties). */
function pairs(header: string): string[] {
  return header === '' ? [] : header.split('; ').sort();
}

describe('fuzz: Set-Cookie into the jar', () => {
  it('never throws on any Set-Cookie, and reports each as set, delete or rejected', () => {
    fc.assert(
      fc.property(fc.array(hostileSetCookie, { minLength: 1, maxLength: 5 }), fc.constantFrom(...URLS), sameSite, (setCookies, url, ctx) => {
        const { changes } = applyAll(setCookies, url, ctx);
        for (const c of changes) assert.ok(c.kind === 'set' || c.kind === 'delete' || c.kind === 'rejected');
      }),
      fuzz(400),
    );
  });

  it("the Cookie header the jar sends equals tough-cookie's browser-mode jar's (ASCII cookies)", () => {
    fc.assert(
      fc.property(fc.array(asciiSetCookie, { minLength: 1, maxLength: 6 }), setAndGet, sameSite, (setCookies, [setUrl, getUrl], ctx) => {
        const now = Date.now();
        const { jar } = applyAll(setCookies, setUrl, ctx, now);
        const ours = cookieHeaderFor(jar.values(), cookieTargetOf(getUrl), now, ctx);
        const tough = new CookieJar(undefined, { looseMode: false, rejectPublicSuffixes: true, allowSpecialUseDomain: true, prefixSecurity: 'strict' });
        for (const sc of setCookies) {
          try {
            tough.setCookieSync(sc, setUrl, { http: true, now: new Date(now), ...(ctx ? { sameSiteContext: ctx } : {}), ignoreError: true });
          } catch {
            // refused: as our jar's 'rejected'
          }
        }
        const theirs = tough.getCookieStringSync(getUrl, { http: true, ...(ctx ? { sameSiteContext: ctx } : {}) });
        assert.deepEqual(pairs(ours), pairs(theirs), `Set-Cookie ${JSON.stringify(setCookies)} at ${setUrl}, read at ${getUrl} (${ctx ?? 'no'} SameSite context)`);
      }),
      fuzz(800),
    );
  });

  it('the jar a write stores stays within maxCookiesPerSession and maxJarBytes', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(asciiSetCookie, hostileSetCookie), { minLength: 1, maxLength: 30 }),
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 64, max: 4096 }),
        (setCookies, maxCookiesPerSession, maxJarBytes) => {
          const { changes } = applyAll(setCookies, 'https://app.example/', undefined);
          const limits = { maxCookiesPerSession, maxJarBytes };
          const { cookies } = buildJar(new Map(), changes, 'fuzz', limits, quiet);
          assert.ok(cookies.size <= maxCookiesPerSession, `${cookies.size} cookies`);
          let bytes = 0;
          for (const [field, c] of cookies) bytes += field.length + c.value.length + 32;
          assert.ok(bytes <= maxJarBytes, `${bytes} bytes`);
        },
      ),
      fuzz(300),
    );
  });
});
