// Session security hardening: data at rest, forged tickets, families and renewal, binding,
// app control headers, alarms and metrics. Against a real redis-server (and the memory store
// where the behaviour is the store's).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Browser, cookieValue, send, type Reply } from '../helpers/client.js';
import { FakeClock } from '../helpers/clock.js';
import { DEFAULT_RULES, startCoatcheck, storeOverrides, TEST_SECRET, type Harness, type StoreChoice } from '../helpers/coatcheck.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { setsCookies, startUpstream, type Upstream } from '../helpers/upstream.js';
import { jarKeyOf, openRecord, storeKeyOf } from '../../src/session/crypto.js';
import { untagged } from '../../src/store/lineage.js';
import { decodeRecord } from '../../src/session/record.js';

const echoCookie = (r: Reply): string | undefined => (JSON.parse(r.body) as { headers: { cookie?: string } }).headers.cookie;
const MIN = 60_000;

let redis: RedisServer;
let upstream: Upstream;
let prefixes = 0;

before(async () => {
  redis = await startRedis();
  upstream = await startUpstream();
  upstream.route('/login', setsCookies('app_session=alice-secret-value; Path=/; HttpOnly', 'prefs=dark-secret-pref; Path=/'));
  upstream.route('/logout', setsCookies('app_session=; Path=/; Max-Age=0'));
});
after(async () => {
  await upstream.close();
  await redis.stop();
});

function redisChoice(): StoreChoice {
  return { kind: 'redis', url: redis.url };
}

async function start(choice: StoreChoice, overrides: Parameters<typeof startCoatcheck>[1] = {}, clock = new FakeClock(Date.now())) {
  const prefix = `h${++prefixes}:`;
  const h = await startCoatcheck(upstream.origin, { ...storeOverrides(choice, prefix), ...overrides }, { clock });
  return { h, clock, prefix };
}

async function login(h: Harness, headers: Record<string, string> = {}): Promise<Browser> {
  const b = new Browser(h.port);
  const r = await b.send('/login', { method: 'POST', headers });
  assert.equal(r.status, 200);
  assert.ok(b.ticket);
  return b;
}

describe('data at rest', () => {
  test('raw Redis holds neither a session id nor any cookie value', async (t) => {
    const { h, prefix } = await start(redisChoice(), { ...DEFAULT_RULES, session: { renewAfter: '10m' } });
    t.after(() => h.close());
    const b = await login(h);
    const tickets = [b.ticket as string];
    upstream.route('/more', setsCookies('cart=cart-secret-42; Path=/'));
    await b.send('/more');
    const raw = redis.client();
    let dump = '';
    let decoded = '';
    for (const key of await raw.keys(`${prefix}*`)) {
      dump += `${key}\n`;
      const type = await raw.type(key);
      if (type === 'string') {
        const v = (await raw.getBuffer(key)) as Buffer;
        dump += `${v.toString('latin1')}\n`;
        // a merely encoded value is still a value in clear
        for (const enc of ['base64url', 'base64', 'hex'] as const) decoded += `${Buffer.from(v.toString('latin1'), enc).toString('latin1')}\n`;
      }
      else if (type === 'set') dump += (await raw.smembers(key)).join('\n');
    }
    assert.ok(dump.includes(prefix), 'the dump is not empty');
    for (const ticket of tickets) {
      const sidText = ticket.split('.')[1] as string;
      const sid = Buffer.from(sidText, 'base64url');
      for (const form of [sidText, sid.toString('hex'), sid.toString('base64'), ticket]) assert.ok(!dump.includes(form), 'no form of the id is stored');
    }
    for (const value of ['alice-secret-value', 'dark-secret-pref', 'cart-secret-42']) {
      assert.ok(!dump.includes(value), `${value} is not stored in clear`);
      assert.ok(!decoded.includes(value), `${value} is not stored merely encoded`);
    }
  });

  test('a tampered or transplanted session record is refused with a warning, never sent to the app', async (t) => {
    const { h, prefix } = await start(redisChoice(), DEFAULT_RULES);
    t.after(() => h.close());
    const a = await login(h);
    const b = await login(h);
    const c = await login(h);
    const raw = redis.client();
    const live = async () => {
      const out: string[] = [];
      for (const k of await raw.keys(`${prefix}s:*`)) if ((await raw.getrange(k, 0, 0)) === 'L') out.push(k);
      return out;
    };
    const keys = await live();
    assert.equal(keys.length, 3);
    const echoes = async () => Promise.all([a, b, c].map(async (x) => (await x.send('/echo')).status));
    assert.deepEqual(await echoes(), [200, 200, 200]);
    const [k1, k2, k3] = keys as [string, string, string];
    // one session's sealed record copied over another's: valid ciphertext, wrong session key
    await raw.set(k1, (await raw.getBuffer(k2)) as Buffer, 'KEEPTTL');
    // one byte of a third record flipped (in its authentication tag, so even the cache of
    // opened records, which is keyed by version and tag, cannot hide it)
    const v = (await raw.getBuffer(k3)) as Buffer;
    const i = v.length - 1;
    v[i] = (v[i] as number) ^ 0x01;
    await raw.set(k3, v, 'KEEPTTL');
    const results = await Promise.all([a, b, c].map((x) => x.send('/echo')));
    // exactly two sessions are damaged (which browser holds which key is not known here): they
    // reach the app as anonymous requests carrying none of the jar's cookies
    const withCookies = results.filter((r) => echoCookie(r) !== undefined);
    assert.equal(withCookies.length, 1, 'only the untouched session still has its cookies');
    assert.equal(h.logs.events('session.record_unreadable').length, 2);
  });

  test('a forged ticket sends no command to Redis', async (t) => {
    const { h } = await start(redisChoice(), DEFAULT_RULES);
    t.after(() => h.close());
    const b = await login(h);
    const real = b.ticket as string;
    const raw = redis.client();
    const stats = async () => {
      const info = await raw.info('commandstats');
      const calls = (cmd: string) => Number(new RegExp(`cmdstat_${cmd}:calls=(\\d+)`).exec(info)?.[1] ?? 0);
      return calls('get') + calls('mget') + calls('evalsha') + calls('eval') + calls('getrange') + calls('exists');
    };
    // the counter works: a real ticket costs one load
    const base = await stats();
    await send(h.port, '/echo', { headers: { cookie: `coatcheck=${real}` } });
    assert.ok((await stats()) > base, 'a real ticket is looked up');
    const [, sid, mac] = real.split('.') as [string, string, string];
    const forged = [
      `v1.${sid}.${mac.slice(0, -1)}${mac.endsWith('A') ? 'E' : 'A'}`,
      `v1.${'A'.repeat(43)}.${mac}`,
      'v1.garbage',
      'not-a-ticket',
      `v2.${sid}.${mac}`,
    ];
    const before = await stats();
    for (const f of forged) {
      const r = await send(h.port, '/echo', { headers: { cookie: `coatcheck=${f}` } });
      assert.equal(r.status, 200, 'goes on as anonymous');
      assert.equal(echoCookie(r), undefined);
    }
    assert.equal(await stats(), before, 'no store command for forged tickets');
    assert.equal(h.logs.events('session.forged').length, 2, 'ticket-shaped values with a bad signature');
    assert.equal(h.logs.events('session.unknown').length, 3, 'values that are no ticket at all');
  });

  test('the jar limits drop what exceeds them, with a warning that names the cookie', async (t) => {
    const { h } = await start({ kind: 'memory' }, { limits: { maxCookiesPerSession: 3 } });
    t.after(() => h.close());
    upstream.route('/five', setsCookies('c1=1', 'c2=2', 'c3=3', 'c4=4', 'c5=5'));
    const b = new Browser(h.port);
    await b.send('/five');
    assert.equal(echoCookie(await b.send('/echo')), 'c1=1; c2=2; c3=3');
    const warned = h.logs.events('session.jar_limit').map((l) => l.cookieName);
    assert.deepEqual(warned, ['c4', 'c5']);
  });

  test('the jar byte limit counts name, domain, path and value: what would exceed it is dropped, smaller cookies still fit', async (t) => {
    // each big cookie counts 15 ("big1;127.0.0.1;/" less one) + 100 + 32 attribute bytes
    const { h } = await start({ kind: 'memory' }, { limits: { maxJarBytes: 400 } });
    t.after(() => h.close());
    const v = 'x'.repeat(100);
    upstream.route('/bytes', setsCookies(`big1=${v}`, `big2=${v}`, `big3=${v}`, 's=1'));
    const b = new Browser(h.port);
    await b.send('/bytes');
    assert.equal(echoCookie(await b.send('/echo')), `big1=${v}; big2=${v}; s=1`);
    const warned = h.logs.events('session.jar_limit');
    assert.deepEqual(warned.map((l) => l.cookieName), ['big3']);
    assert.equal(warned[0]?.maxBytes, 400);
    // replacing a cookie by a smaller one frees room (and keeps its creation time, so its place)
    upstream.route('/shrink', setsCookies('big1=1', `big3=${v}`));
    await b.send('/shrink');
    assert.equal(echoCookie(await b.send('/echo')), `big1=1; big2=${v}; s=1; big3=${v}`);
  });
});

for (const [name, choice] of [
  ['redis', () => redisChoice()],
  ['memory', () => ({ kind: 'memory' }) as StoreChoice],
] as const) {
  describe(`families and renewal (${name})`, () => {
    test('log in, renew twice, log out: every earlier ticket is dead', async (t) => {
      const { h, clock } = await start(choice(), { ...DEFAULT_RULES, session: { renewAfter: '15m', renewGrace: '30s', idleTimeout: '30m' } });
      t.after(() => h.close());
      const b = await login(h);
      const seen = [b.ticket as string];
      for (let i = 0; i < 2; i++) {
        clock.advance(16 * MIN);
        const r = await b.send('/echo');
        assert.equal(echoCookie(r), 'app_session=alice-secret-value; prefs=dark-secret-pref');
        assert.ok(b.ticket && !seen.includes(b.ticket), `renewal ${i + 1} gives a new ticket`);
        assert.equal(r.headers['cache-control'], 'no-store');
        seen.push(b.ticket);
      }
      assert.equal(h.logs.events('session.renewed').length, 2);
      // within the grace window an earlier ticket still works, as an alias of the newest
      const alias = await send(h.port, '/echo', { headers: { cookie: `coatcheck=${seen[1]}` } });
      assert.equal(alias.status, 200);
      assert.equal(cookieValue(alias.setCookies, 'coatcheck'), seen[2], 'and hands out the newest ticket');
      await b.send('/logout');
      for (const old of seen) {
        const r = await send(h.port, '/echo', { headers: { cookie: `coatcheck=${old}` } });
        assert.equal(r.status, 401, 'dead: the whole family was revoked');
        // and in the store every id of the family is a tombstone, not a lingering renewal alias
        const sid = Buffer.from(old.split('.')[1] as string, 'base64url');
        assert.equal((await h.app.store.load(storeKeyOf(sid))).state, 'revoked', 'each family member is tombstoned');
      }
      assert.equal(h.logs.events('session.replay').length, seen.length);
    });

    test('renewal under concurrent requests loses no request; the old ticket dies after the grace window', async (t) => {
      const { h, clock } = await start(choice(), { ...DEFAULT_RULES, session: { renewAfter: '15m', renewGrace: '30s' } });
      t.after(() => h.close());
      const b = await login(h);
      const old = b.ticket as string;
      clock.advance(16 * MIN);
      const replies = await Promise.all(
        Array.from({ length: 16 }, () => send(h.port, '/echo', { headers: { cookie: `coatcheck=${old}` } })),
      );
      const tickets = new Set<string>();
      for (const r of replies) {
        assert.equal(r.status, 200);
        assert.equal(echoCookie(r), 'app_session=alice-secret-value; prefs=dark-secret-pref', 'every request kept its jar');
        const v = cookieValue(r.setCookies, 'coatcheck');
        assert.ok(v, 'every response names the new ticket');
        tickets.add(v);
      }
      assert.equal(tickets.size, 1, 'one successor, however many raced');
      const next = [...tickets][0] as string;
      assert.notEqual(next, old);
      clock.advance(31_000);
      assert.equal((await send(h.port, '/echo', { headers: { cookie: `coatcheck=${old}` } })).status, 401, 'dead after the grace window');
      const live = await send(h.port, '/echo', { headers: { cookie: `coatcheck=${next}` } });
      assert.equal(live.status, 200);
      assert.equal(echoCookie(live), 'app_session=alice-secret-value; prefs=dark-secret-pref');
    });
  });
}

describe('binding', () => {
  test('userAgent binding: another agent is rejected, the owner goes on; revoke ends it for both', async (t) => {
    const { h } = await start(redisChoice(), { ...DEFAULT_RULES, session: { bind: ['userAgent'], bindMismatch: 'reject' } });
    t.after(() => h.close());
    const b = await login(h, { 'user-agent': 'Browser/1.0' });
    const thief = await send(h.port, '/echo', { headers: { cookie: `coatcheck=${b.ticket}`, 'user-agent': 'curl/8' } });
    assert.equal(thief.status, 401);
    assert.match(thief.body, /COATCHECK_ERR_SESSION_BINDING/);
    assert.ok(thief.setCookies.some((c) => /^coatcheck=; .*Max-Age=0/.test(c)), 'the mismatching copy is cleared, so a changed browser can log in again');
    assert.equal(h.logs.events('session.binding_mismatch').length, 1);
    const owner = await b.send('/echo', { headers: { 'user-agent': 'Browser/1.0' } });
    assert.equal(echoCookie(owner), 'app_session=alice-secret-value; prefs=dark-secret-pref');

    const { h: h2 } = await start(redisChoice(), { ...DEFAULT_RULES, session: { bind: ['userAgent'], bindMismatch: 'revoke' } });
    t.after(() => h2.close());
    const c = await login(h2, { 'user-agent': 'Browser/1.0' });
    assert.equal((await send(h2.port, '/echo', { headers: { cookie: `coatcheck=${c.ticket}`, 'user-agent': 'curl/8' } })).status, 401);
    assert.equal((await send(h2.port, '/echo', { headers: { cookie: `coatcheck=${c.ticket}`, 'user-agent': 'Browser/1.0' } })).status, 401, 'revoked for the owner too');
  });

  test('a binding survives secret rotation, and follows renewals', async (t) => {
    const prefix = `h${++prefixes}:`;
    const clock = new FakeClock(Date.now());
    const base = { ...DEFAULT_RULES, ...storeOverrides(redisChoice(), prefix), session: { bind: ['userAgent' as const], renewAfter: '15m' } };
    const h1 = await startCoatcheck(upstream.origin, base, { clock });
    const b = await login(h1, { 'user-agent': 'Browser/1.0' });
    await h1.close();
    const newSecret = 'n'.repeat(40);
    const h2 = await startCoatcheck(upstream.origin, { ...base, secrets: [newSecret, TEST_SECRET] }, { clock });
    t.after(() => h2.close());
    const b2 = new Browser(h2.port);
    b2.ticket = b.ticket;
    const r = await b2.send('/echo', { headers: { 'user-agent': 'Browser/1.0' } });
    assert.equal(r.status, 200, 'the binding does not depend on the signing secret');
    assert.equal(echoCookie(r), 'app_session=alice-secret-value; prefs=dark-secret-pref');
    clock.advance(16 * MIN);
    await b2.send('/echo', { headers: { 'user-agent': 'Browser/1.0' } });
    assert.notEqual(b2.ticket, b.ticket, 'renewed');
    assert.equal((await b2.send('/echo', { headers: { 'user-agent': 'Browser/1.0' } })).status, 200, 'the renewed id keeps the binding');
    assert.equal((await b2.send('/echo', { headers: { 'user-agent': 'Other/2.0' } })).status, 401, 'and still enforces it');
  });

  test('ipPrefix binding: same /24 passes, another /24 is only logged with bindMismatch: log', async (t) => {
    const { h } = await start({ kind: 'memory' }, { ...DEFAULT_RULES, trustProxy: true, session: { bind: ['ipPrefix'], bindMismatch: 'log' } });
    t.after(() => h.close());
    const b = await login(h, { 'x-forwarded-for': '198.51.100.7' });
    const same = await b.send('/echo', { headers: { 'x-forwarded-for': '198.51.100.200' } });
    assert.equal(echoCookie(same), 'app_session=alice-secret-value; prefs=dark-secret-pref');
    assert.equal(h.logs.events('session.binding_mismatch').length, 0);
    const other = await b.send('/echo', { headers: { 'x-forwarded-for': '203.0.113.7' } });
    assert.equal(other.status, 200, 'log only');
    assert.equal(echoCookie(other), 'app_session=alice-secret-value; prefs=dark-secret-pref');
    assert.equal(h.logs.events('session.binding_mismatch').length, 1);
  });
});

describe('logout without configuration, and control from the app', () => {
  test('the app clearing an onCookieCleared cookie revokes the session', async (t) => {
    const { h } = await start(redisChoice(), { login: DEFAULT_RULES.login, logout: { rules: [], onCookieCleared: ['app_session'] } });
    t.after(() => h.close());
    upstream.route('/signout-somewhere', setsCookies('app_session=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT'));
    const b = await login(h);
    const ticket = b.ticket as string;
    const r = await b.send('/signout-somewhere');
    assert.ok(r.setCookies.some((c) => /^coatcheck=; .*Max-Age=0/.test(c)));
    assert.equal((await send(h.port, '/echo', { headers: { cookie: `coatcheck=${ticket}` } })).status, 401);
  });

  test('Coatcheck-Session and Coatcheck-User are acted on and never reach the browser', async (t) => {
    const { h, prefix } = await start(redisChoice(), DEFAULT_RULES);
    t.after(() => h.close());
    const b = await login(h);
    upstream.route('/whoami-set', (_req, res) => {
      res.setHeader('coatcheck-user', 'user-1234');
      res.end('ok');
    });
    const r1 = await b.send('/whoami-set');
    assert.equal(r1.headers['coatcheck-user'], undefined);
    const raw = redis.client();
    // the user id is kept inside the sealed record: readable with the session's id only
    const sid = Buffer.from((b.ticket as string).split('.')[1] as string, 'base64url');
    const stored = (await raw.getBuffer(`${prefix}s:${untagged(storeKeyOf(sid))}`)) as Buffer;
    assert.ok(!stored.toString('latin1').includes('user-1234'), 'not in clear');
    const opened = openRecord(jarKeyOf(sid), stored.subarray(stored.indexOf(':') + 1));
    assert.equal(decodeRecord(opened ?? '')?.meta.user, 'user-1234');

    upstream.route('/elevate', (_req, res) => {
      res.setHeader('coatcheck-session', 'rotate');
      res.end('ok');
    });
    const before = b.ticket as string;
    const r2 = await b.send('/elevate');
    assert.equal(r2.headers['coatcheck-session'], undefined);
    assert.ok(b.ticket && b.ticket !== before, 'rotated');
    assert.equal((await send(h.port, '/echo', { headers: { cookie: `coatcheck=${before}` } })).status, 401);

    upstream.route('/end', (_req, res) => {
      res.setHeader('coatcheck-session', 'revoke');
      res.end('bye');
    });
    const current = b.ticket as string;
    const r3 = await b.send('/end');
    assert.equal(r3.status, 200);
    assert.equal(r3.headers['coatcheck-session'], undefined);
    assert.equal(b.ticket, undefined, 'cleared');
    assert.equal((await send(h.port, '/echo', { headers: { cookie: `coatcheck=${current}` } })).status, 401);

    // a client cannot forge them: in a request they mean nothing to coatcheck
    const c = await login(h);
    const forged = await c.send('/echo', { headers: { 'coatcheck-session': 'revoke' } });
    assert.equal(forged.status, 200);
    assert.equal((await c.send('/echo')).status, 200, 'still logged in');
  });

  test('logout responses can carry Clear-Site-Data; ticket changes carry Cache-Control: no-store', async (t) => {
    const { h } = await start({ kind: 'memory' }, { login: DEFAULT_RULES.login, logout: { rules: [{ path: '/logout' }], clearSiteData: true } });
    t.after(() => h.close());
    const b = await login(h);
    const out = await b.send('/logout');
    assert.equal(out.headers['clear-site-data'], '"cache", "cookies", "storage"');
    assert.equal(out.headers['cache-control'], 'no-store');
    const plain = await login(h);
    const r = await plain.send('/echo');
    assert.equal(r.headers['clear-site-data'], undefined);
  });
});

describe('alarms and metrics', () => {
  test('admin: health, readiness follows the store, metrics count each class once', async (t) => {
    const { h } = await start(redisChoice(), { ...DEFAULT_RULES, admin: { listen: '127.0.0.1:0' } });
    t.after(() => h.close());
    const adminPort = h.adminPort;
    assert.ok(adminPort, 'the admin listener is up');
    assert.equal((await send(adminPort, '/healthz')).status, 200);
    assert.equal((await send(adminPort, '/readyz')).status, 200);
    const b = await login(h);
    const stolen = b.ticket as string;
    await b.send('/logout');
    await send(h.port, '/echo', { headers: { cookie: `coatcheck=${stolen}` } });
    await send(h.port, '/echo', { headers: { cookie: 'coatcheck=v1.forged' } });
    await send(h.port, '/echo', { headers: { cookie: `coatcheck=${stolen.slice(0, -1)}${stolen.endsWith('A') ? 'E' : 'A'}` } });
    const metrics = (await send(adminPort, '/metrics')).body;
    assert.match(metrics, /coatcheck_security_events_total\{event="revoked",mode="enforce"\} 1\b/);
    assert.match(metrics, /coatcheck_security_events_total\{event="forged",mode="enforce"\} 1\b/);
    assert.match(metrics, /coatcheck_security_events_total\{event="unknown",mode="enforce"\} 1\b/);
    assert.match(metrics, /coatcheck_sessions_total\{action="created"\} 1\b/);
    assert.match(metrics, /coatcheck_sessions_total\{action="revoked"\} 1\b/);
    assert.match(metrics, /coatcheck_requests_total\{status="401"\} 1\b/);
    assert.ok(!metrics.includes(stolen) && !metrics.includes(TEST_SECRET));

    await redis.pause();
    try {
      assert.equal((await send(adminPort, '/readyz')).status, 503, 'not ready while the store does not answer');
    } finally {
      await redis.resume();
    }
  });
});
