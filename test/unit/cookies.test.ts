import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseCookieHeader, setCookieName } from '../../src/cookies/header.js';
import { isBrowserCookieName, isCookieName, isCookieNamePattern, NameMatcher } from '../../src/cookies/names.js';
import { CookiePolicy } from '../../src/cookies/policy.js';
import { Cookie } from 'tough-cookie';
import { cookieHeaderFor, cookieTargetOf, expiryOf, jarCookieHeader, RequestJar, sameSiteContextOf } from '../../src/cookies/jar.js';
import { decodeRecord, encodeRecord, encodeRecordJson, type SessionMeta } from '../../src/session/record.js';

const NOW = Date.UTC(2026, 5, 1, 12, 0, 0);
const URL_ROOT = 'https://app.example.com/';

/** A jar's cookies, as the session service keeps them: fields to cookies. */
class Jar {
  readonly cookies: readonly Cookie[];
  constructor(cookies: Iterable<Cookie>) {
    this.cookies = [...cookies];
  }
  /** The Cookie header a browser would send for `url` at `now`. */
  cookieHeader(url: string, now: number, sameSite: Parameters<typeof cookieHeaderFor>[3]): string {
    return cookieHeaderFor(this.cookies, cookieTargetOf(url), now, sameSite);
  }
}

/** Applies Set-Cookies at `url` through a RequestJar and folds the changes in, as the session service does. */
function jarWith(setCookies: string[], url = URL_ROOT, now = NOW): Jar {
  const jar = new RequestJar();
  const cookies = new Map<string, Cookie>();
  for (const sc of setCookies) {
    const change = jar.apply(sc, url, now, undefined);
    if (change.kind === 'set') cookies.set(change.field, change.cookie);
    else if (change.kind === 'delete') cookies.delete(change.field);
  }
  return new Jar(cookies.values());
}

describe('Cookie header parsing', () => {
  const cases: Array<[string | undefined, Array<[string, string]>]> = [
    [undefined, []],
    ['', []],
    ['a=1', [['a', '1']]],
    ['a=1; b=2', [['a', '1'], ['b', '2']]],
    ['  a = 1 ;b=2;', [['a', '1'], ['b', '2']]],
    [';;;', []],
    ['noequals; =empty; c=3', [['c', '3']]],
    ['a@b=1; my cookie=2; "q"=3', [['a@b', '1'], ['my cookie', '2'], ['"q"', '3']]],
    ['ctl\u0001=1; d=4', [['d', '4']]],
    ['q="quoted value"', [['q', '"quoted value"']]],
    ['t=x=y=z', [['t', 'x=y=z']]],
    ['u=Ã©', [['u', 'Ã©']]],
  ];
  for (const [header, expected] of cases) {
    test(`parses ${JSON.stringify(header)}`, () => {
      assert.deepEqual(
        parseCookieHeader(header).map((p) => [p.name, p.value]),
        expected,
      );
    });
  }
  // Names as RFC 6265bis and Chromium/Firefox take them: anything but controls, `=` and `;`,
  // trimmed of SP and HTAB only. Strings are latin1 header strings: `Ã©` is é's UTF-8 bytes.
  const nameCases: Array<[string, string | undefined]> = [
    ['sid=1; Path=/', 'sid'],
    [' sid =1', 'sid'],
    ['\tsid\t=1', 'sid'],
    ['user@site=1', 'user@site'],
    ['(paren)=1', '(paren)'],
    ['"quoted"=1', '"quoted"'],
    ['a b=1', 'a b'],
    ['  my  cookie  =1', 'my  cookie'],
    ['{a}[b]/c?d:e,f\\g=1', '{a}[b]/c?d:e,f\\g'],
    ['prÃ©nom=1', 'prÃ©nom'],
    // à = C3 A0, and String#trim() takes 0xA0 for a space: the byte must stay.
    ['voilÃ\u00a0=1', 'voilÃ\u00a0'],
    ['\u00a0lead=1', '\u00a0lead'],
    ['=1', undefined],
    ['  =1', undefined],
    ['novalue', undefined],
    ['a;b=1', undefined],
    ['a\u0001b=1', undefined],
    ['a\u001fb=1', undefined],
    ['a\u007fb=1', undefined],
    ['a\tb=1', undefined],
    ['\u0000=1', undefined],
    ['\u6625=1', undefined],
  ];
  for (const [value, expected] of nameCases) {
    test(`Set-Cookie ${JSON.stringify(value)} is named ${JSON.stringify(expected)}`, () => {
      assert.equal(setCookieName(value), expected);
      // The client side reads a name the same way.
      const pair = value.split(';')[0] as string;
      assert.deepEqual(
        parseCookieHeader(pair).map((p) => p.name),
        expected === undefined ? [] : [expected],
      );
    });
  }
  test('config names stay RFC 6265 tokens; traffic takes browser names', () => {
    for (const n of ['sid', 'XSRF-TOKEN', '__Host-x']) assert.ok(isCookieName(n) && isBrowserCookieName(n), n);
    for (const n of ['a@b', 'a b', '(x)', '"q"', 'prÃ©nom']) {
      assert.ok(!isCookieName(n) && !isCookieNamePattern(n), `${n} is not a config name`);
      assert.ok(isBrowserCookieName(n), `${n} is a browser name`);
    }
    for (const n of ['', ' a', 'a ', 'a=b', 'a;b', 'a\u0001', '\u6625']) assert.ok(!isBrowserCookieName(n), JSON.stringify(n));
  });
  test('a value keeps its bytes through the Cookie header, 0xA0 included', () => {
    assert.deepEqual(parseCookieHeader('v=lÃ\u00a0; w=\u00a0x\u00a0 '), [
      { name: 'v', value: 'lÃ\u00a0' },
      { name: 'w', value: '\u00a0x\u00a0' },
    ]);
  });
  test('name patterns', () => {
    const m = new NameMatcher(['_ga*', 'theme', 'a*b']);
    assert.ok(m.matches('_ga'));
    assert.ok(m.matches('_ga_XYZ'));
    assert.ok(m.matches('theme'));
    assert.ok(m.matches('a-long-b'));
    assert.ok(!m.matches('themes'));
    assert.ok(!m.matches('x_ga'));
    assert.ok(!m.matches('ab.'));
  });
});

describe('jar rules (RFC 6265, via tough-cookie)', () => {
  const table: Array<{ name: string; set: string[]; setAt?: string; url: string; now?: number; expect: string }> = [
    { name: 'host-only cookie goes back to its host', set: ['a=1'], url: 'https://app.example.com/x', expect: 'a=1' },
    { name: 'host-only cookie does not go to a subdomain', set: ['a=1'], url: 'https://sub.app.example.com/', expect: '' },
    { name: 'Domain cookie goes to subdomains', set: ['a=1; Domain=example.com'], url: 'https://sub.example.com/', expect: 'a=1' },
    { name: 'Domain of another site is refused', set: ['a=1; Domain=other.com'], url: 'https://app.example.com/', expect: '' },
    { name: 'public suffix Domain is refused', set: ['a=1; Domain=com'], url: 'https://app.example.com/', expect: '' },
    { name: 'path scope: sent under the path', set: ['a=1; Path=/app'], url: 'https://app.example.com/app/page', expect: 'a=1' },
    { name: 'path scope: not sent elsewhere', set: ['a=1; Path=/app'], url: 'https://app.example.com/apple', expect: '' },
    { name: 'default path is the directory of the URL it was set at', set: ['a=1'], setAt: 'https://app.example.com/dir/page', url: 'https://app.example.com/other', expect: '' },
    { name: 'Secure cookie not sent over http', set: ['a=1; Secure'], url: 'http://app.example.com/', expect: '' },
    { name: 'Secure cookie sent over https', set: ['a=1; Secure'], url: 'https://app.example.com/', expect: 'a=1' },
    { name: 'Max-Age=0 deletes', set: ['a=1', 'a=; Max-Age=0'], url: URL_ROOT, expect: '' },
    { name: 'past Expires deletes', set: ['a=1', 'a=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT'], url: URL_ROOT, expect: '' },
    { name: 'Max-Age expires in time', set: ['a=1; Max-Age=10'], url: URL_ROOT, now: NOW + 10_001, expect: '' },
    { name: 'Max-Age still valid before', set: ['a=1; Max-Age=10'], url: URL_ROOT, now: NOW + 9_000, expect: 'a=1' },
    { name: 'Max-Age wins over Expires', set: ['a=1; Max-Age=10; Expires=Thu, 01 Jan 2099 00:00:00 GMT'], url: URL_ROOT, now: NOW + 11_000, expect: '' },
    { name: 'same name, different paths are two cookies; longer path first', set: ['a=root; Path=/', 'a=deep; Path=/d'], url: 'https://app.example.com/d/x', expect: 'a=deep; a=root' },
    { name: 'same name and path replaces', set: ['a=1', 'a=2'], url: URL_ROOT, expect: 'a=2' },
    { name: 'creation order kept for equal paths', set: ['z=1', 'y=2', 'x=3'], url: URL_ROOT, expect: 'z=1; y=2; x=3' },
    { name: '__Host- without Secure is refused', set: ['__Host-a=1; Path=/'], url: URL_ROOT, expect: '' },
    { name: '__Host- with Domain is refused', set: ['__Host-a=1; Secure; Path=/; Domain=example.com'], url: URL_ROOT, expect: '' },
    { name: '__Host- done right is kept', set: ['__Host-a=1; Secure; Path=/'], url: URL_ROOT, expect: '__Host-a=1' },
    { name: '__Secure- without Secure is refused', set: ['__Secure-a=1'], url: URL_ROOT, expect: '' },
  ];
  for (const row of table) {
    test(row.name, () => {
      const jar = jarWith(row.set, row.setAt ?? URL_ROOT);
      assert.equal(jar.cookieHeader(row.url, row.now ?? NOW, undefined), row.expect);
    });
  }

  test('apply reports what changed', () => {
    const jar = new RequestJar();
    const set = jar.apply('a=1; Path=/p', 'https://x.example/p/q', NOW, undefined);
    assert.equal(set.kind, 'set');
    assert.equal(set.kind === 'set' && set.field, 'a;x.example;/p');
    const del = jar.apply('a=; Path=/p; Max-Age=0', 'https://x.example/p/q', NOW, undefined);
    assert.deepEqual(del, { kind: 'delete', field: 'a;x.example;/p', name: 'a' });
    const bad = jar.apply('garbage', 'https://x.example/', NOW, undefined);
    assert.equal(bad.kind, 'rejected');
    const foreign = jar.apply('a=1; Domain=evil.example', 'https://x.example/', NOW, undefined);
    assert.equal(foreign.kind, 'rejected');
  });

  test('SameSite: strict cookies are not sent cross-site; lax only on top-level navigation', () => {
    const jar = jarWith(['s=1; SameSite=Strict', 'l=2; SameSite=Lax', 'n=3; SameSite=None; Secure']);
    assert.equal(jar.cookieHeader(URL_ROOT, NOW, sameSiteContextOf('same-origin', 'cors', 'POST')), 's=1; l=2; n=3');
    assert.equal(jar.cookieHeader(URL_ROOT, NOW, sameSiteContextOf('cross-site', 'navigate', 'GET')), 'l=2; n=3');
    assert.equal(jar.cookieHeader(URL_ROOT, NOW, sameSiteContextOf('cross-site', 'no-cors', 'GET')), 'n=3');
    assert.equal(jar.cookieHeader(URL_ROOT, NOW, sameSiteContextOf('cross-site', 'navigate', 'POST')), 'n=3');
    assert.equal(jar.cookieHeader(URL_ROOT, NOW, sameSiteContextOf(undefined, undefined, 'POST')), 's=1; l=2; n=3', 'no Fetch Metadata: not enforced');
  });

  const META: SessionMeta = { created: NOW - 5_000, deadline: NOW + 3_600_000, touched: NOW - 1_000, issued: NOW - 2_000, family: 'fam-1' };

  test('stored form round-trips every attribute and the metadata, and Max-Age becomes an absolute expiry', () => {
    const jar = new RequestJar();
    const change = jar.apply('k=v a l=ue; Domain=example.com; Path=/p; Max-Age=100; Secure; HttpOnly; SameSite=Strict', 'https://app.example.com/p', NOW, undefined);
    assert.equal(change.kind, 'set');
    if (change.kind !== 'set') return;
    const record = decodeRecord(encodeRecord({ ...META, user: 'u "1"', bind: 'b' }, new Map([[change.field, change.cookie]])));
    assert.ok(record);
    assert.deepEqual({ ...record.meta }, { ...META, user: 'u "1"', bind: 'b' });
    assert.equal(record.firstExpiry, NOW + 100_000);
    const back = record.cookies.get(change.field);
    assert.ok(back);
    assert.equal(back.key, 'k');
    assert.equal(back.value, 'v a l=ue');
    assert.equal(back.domain, 'example.com');
    assert.equal(back.path, '/p');
    assert.equal(back.secure, true);
    assert.equal(back.httpOnly, true);
    assert.equal(back.hostOnly, false);
    assert.equal(back.sameSite, 'strict');
    assert.equal(back.expires instanceof Date && back.expires.getTime(), NOW + 100_000);
    assert.equal(back.creation instanceof Date && back.creation.getTime(), NOW);
    const again = new Jar([back]);
    assert.equal(again.cookieHeader('https://www.example.com/p/x', NOW + 99_000, undefined), 'k=v a l=ue');
    assert.equal(again.cookieHeader('https://www.example.com/p/x', NOW + 100_000, undefined), '');
  });

  test('format 2 (JSON) is the JSON text of the record array, cookies in creation order whatever the Map order, and format 3 reads back the same', () => {
    const jar = new RequestJar();
    const made = ['a="q\\u"; Path=/; Max-Age=60; Secure', 'b=2; Path=/x; HttpOnly; SameSite=Lax', 'c=é3'].map((sc, i) => {
      const change = jar.apply(sc, 'https://app.example.com/x', NOW + i, undefined);
      assert.equal(change.kind, 'set');
      return change as Extract<typeof change, { kind: 'set' }>;
    });
    const [a, b, c] = made as [(typeof made)[0], (typeof made)[0], (typeof made)[0]];
    // Written in another order than created: the record keeps creation order.
    const cookies = new Map([[c.field, c.cookie], [a.field, a.cookie], [b.field, b.cookie]]);
    const meta = { ...META, user: 'ü "x"' };
    const base = meta.created;
    const tuple = (ch: typeof a, flags: number, expires: number, sameSite: number) => [ch.field, ch.cookie.value, flags, expires, (ch.cookie.creation as Date).getTime() - base, sameSite];
    const expected = JSON.stringify([
      2, base, meta.deadline - base, meta.touched - base, meta.issued - base, meta.family, meta.user, null,
      ...tuple(a, 5, NOW + 60_000 - base, 0), ...tuple(b, 6, 0, 2), ...tuple(c, 4, 0, 0),
    ]);
    assert.equal(encodeRecordJson(meta, cookies), expected);
    assert.deepEqual([...(decodeRecord(expected)?.cookies.keys() ?? [])], [a.field, b.field, c.field]);
    const binary = decodeRecord(encodeRecord(meta, cookies));
    assert.deepEqual([...(binary?.cookies.keys() ?? [])], [a.field, b.field, c.field]);
    assert.deepEqual({ ...binary?.meta }, meta);
  });

  // Browser names and their values go into the jar, through a stored record and back into a
  // Cookie header unchanged: the field `name;domain;path` splits at the name's end, since a name
  // never holds `;` (a path may, and it comes last).
  const jarNames: Array<{ set: string; url?: string; header: string }> = [
    { set: 'user@site=1', header: 'user@site=1' },
    { set: '(paren)=2', header: '(paren)=2' },
    { set: '"quoted"="v; not an attribute"', header: '"quoted"="v' },
    { set: ' my  cookie = a b ', header: 'my  cookie=a b' },
    { set: 'prÃ©nom=Ã©lodie', header: 'prÃ©nom=Ã©lodie' },
    { set: 'voilÃ\u00a0=lÃ\u00a0', header: 'voilÃ\u00a0=lÃ\u00a0' },
    { set: 'a:b=1', url: 'https://app.example.com/x;y/z', header: 'a:b=1' },
  ];
  for (const row of jarNames) {
    test(`jar and record keep ${JSON.stringify(row.set)}`, () => {
      const url = row.url ?? URL_ROOT;
      const change = new RequestJar().apply(row.set, url, NOW, undefined);
      assert.equal(change.kind, 'set');
      if (change.kind !== 'set') return;
      assert.equal(change.name, setCookieName(row.set));
      const record = decodeRecord(encodeRecord(META, new Map([[change.field, change.cookie]])));
      assert.ok(record, 'the record decodes');
      const back = record.cookies.get(change.field);
      assert.ok(back);
      assert.equal(back.key, change.cookie.key);
      assert.equal(back.path, change.cookie.path);
      assert.equal(new Jar([back]).cookieHeader(url, NOW, undefined), row.header);
    });
  }

  test('managed and passthrough matching take browser names as they come', () => {
    const all = new CookiePolicy({ ticketName: 'coatcheck', managed: '*', passthrough: ['_js*', 'theme'] });
    assert.equal(all.ownerOf('user@site'), 'jar');
    assert.equal(all.ownerOf('my cookie'), 'jar');
    assert.equal(all.ownerOf('_js prÃ©nom'), 'client');
    assert.equal(all.ownerOf('theme '), 'jar', 'no trimming here: names come trimmed');
    assert.equal(all.ownerOf('coatcheck'), 'ticket');
    all.noteAppCookie('prÃ©nom');
    assert.ok(all.isAppCookie('prÃ©nom'));
    assert.ok(!all.isAppCookie('prénom'), 'bytes, not decoded text');
    const listed = new CookiePolicy({ ticketName: 'coatcheck', managed: ['sid'], passthrough: [] });
    assert.equal(listed.ownerOf('sid'), 'jar');
    assert.equal(listed.ownerOf('(paren)'), 'client');
  });

  test('a record keeps the order cookies were created in, also within one millisecond and across a round trip', () => {
    const jar = new RequestJar();
    const cookies = new Map<string, Cookie>();
    // one response setting three cookies (same ms), then an older one carried over
    for (const sc of ['z=1', 'a=2', 'm=3']) {
      const c = jar.apply(sc, URL_ROOT, NOW, undefined);
      if (c.kind === 'set') cookies.set(c.field, c.cookie);
    }
    const older = jar.apply('old=0', URL_ROOT, NOW - 60_000, undefined);
    assert.equal(older.kind, 'set');
    if (older.kind === 'set') cookies.set(older.field, older.cookie);
    const once = decodeRecord(encodeRecord(META, cookies));
    assert.ok(once);
    assert.equal(new Jar(once.cookies.values()).cookieHeader(URL_ROOT, NOW, undefined), 'old=0; z=1; a=2; m=3');
    const twice = decodeRecord(encodeRecord(META, once.cookies));
    assert.ok(twice);
    assert.equal(new Jar(twice.cookies.values()).cookieHeader(URL_ROOT, NOW, undefined), 'old=0; z=1; a=2; m=3');
    assert.equal(twice.firstExpiry, Infinity, 'session cookies never expire by time');
  });

  test('malformed records are refused, not thrown', () => {
    const head = '2,1700000000000,1000,0,0,"f",null,null';
    for (const text of [
      'not json',
      '{}',
      '[]',
      `[1,${head.slice(2)}]`,
      `[${head}`,
      `[${head},"a;d;/"]`,
      `[${head},"a;d;/","v",0,0,0,0]`.replace(',0]', ']'),
      `[${head},"a;d;/",1,0,0,0,0]`,
      `[${head},"a;d;/","v",0.5,0,0,0]`,
      `[${head},"nofield","v",0,0,0,0]`,
      `[${head},"a;d;/","v",0,0,0,0,"a;d;/","w",0,0,0,0]`,
      `[2,"1700000000000",1000,0,0,"f",null,null]`,
      `[2,1700000000000,1000,0,0,"",null,null]`,
      `[2,1700000000000,1000,0,0,"f",7,null]`,
    ]) {
      assert.equal(decodeRecord(text), undefined, text);
    }
    assert.ok(decodeRecord(`[${head},"a;d;/","v",0,0,0,0]`), 'the control case is accepted');
  });
});

describe('jarCookieHeader: the header of a jar that never changes, remembered', () => {
  /** The Map a session holds: each Set-Cookie applied at the app's root, keyed by its field. */
  function jarOf(setCookies: string[]): Map<string, Cookie> {
    const jar = new RequestJar();
    const m = new Map<string, Cookie>();
    for (const sc of setCookies) {
      const change = jar.apply(sc, URL_ROOT, NOW, undefined);
      assert.equal(change.kind, 'set', sc);
      if (change.kind === 'set') m.set(change.field, change.cookie);
    }
    return m;
  }

  // A jar as a session holds it: a Map built once. The answers must always be cookieHeaderFor's.
  function sessionJar(): Map<string, Cookie> {
    return jarOf([
      'sid=s1; Path=/; Secure; HttpOnly',
      'api=a1; Path=/api',
      'lax=l1; Path=/; SameSite=Lax',
      'strict=t1; Path=/; SameSite=Strict',
      'short=x1; Path=/; Max-Age=60',
      'wide=w1; Domain=example.com; Path=/',
    ]);
  }

  test('every change of host, path, scheme, same-site context or time gives the header cookieHeaderFor gives', () => {
    const jar = sessionJar();
    const targets = [
      'https://app.example.com/',
      'https://app.example.com/api/v1',
      'https://app.example.com/api/v1',
      'http://app.example.com/api/v1',
      'https://other.example.com/',
      'https://app.example.com/',
    ].map(cookieTargetOf);
    const contexts = ['strict', 'lax', 'none', undefined] as const;
    const times = [NOW, NOW + 1000, NOW + 59_999, NOW + 60_000, NOW + 61_000, NOW];
    let checked = 0;
    for (const time of times) {
      for (const target of targets) {
        for (const ctx of contexts) {
          const want = cookieHeaderFor(jar.values(), target, time, ctx);
          assert.equal(jarCookieHeader(jar, target, time, ctx), want, `${target.host}${target.path} secure=${target.secure} ${ctx} at +${time - NOW}`);
          // Asked again with nothing changed: the remembered answer, the same.
          assert.equal(jarCookieHeader(jar, target, time, ctx), want);
          checked += 1;
        }
      }
    }
    assert.equal(checked, 144);
    const at = cookieTargetOf('https://app.example.com/');
    assert.match(jarCookieHeader(jar, at, NOW + 59_999, 'strict'), /short=x1/);
    assert.doesNotMatch(jarCookieHeader(jar, at, NOW + 60_000, 'strict'), /short=x1/, 'a remembered header never outlives a cookie in it');
  });

  test("expiryOf gives tough-cookie's expiryTime for every kind of cookie, Infinity for a session cookie", () => {
    const jar = sessionJar();
    for (const c of jar.values()) assert.equal(expiryOf(c), c.expiryTime() ?? Infinity, c.key);
    assert.equal(expiryOf(jar.get('short;app.example.com;/') as Cookie), NOW + 60_000);
    assert.equal(expiryOf(jar.get('sid;app.example.com;/') as Cookie), Infinity);
    // A cookie straight from Cookie.parse still holds its Max-Age: relative to when it was last accessed.
    const raw = Cookie.parse('m=1; Max-Age=10') as Cookie;
    raw.lastAccessed = new Date(NOW);
    assert.equal(expiryOf(raw), NOW + 10_000);
    const gone = Cookie.parse('m=1; Max-Age=0') as Cookie;
    assert.equal(expiryOf(gone), -Infinity);
  });

  test('two jars never share a remembered header', () => {
    const a = sessionJar();
    const b = jarOf(['other=o1; Path=/']);
    const target = cookieTargetOf('https://app.example.com/');
    assert.match(jarCookieHeader(a, target, NOW, 'strict'), /^sid=s1/);
    assert.equal(jarCookieHeader(b, target, NOW, 'strict'), 'other=o1');
    assert.equal(jarCookieHeader(new Map(), target, NOW, 'strict'), '');
  });
});
