// Behaviours 1–8 of the core issue, run against the memory store and a real redis-server.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { ServerResponse } from 'node:http';
import { Browser, cookieValue, send } from '../helpers/client.js';
import { FakeClock } from '../helpers/clock.js';
import { DEFAULT_RULES, startCoatcheck, storeOverrides, type Harness, type StoreChoice } from '../helpers/coatcheck.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { setsCookies, startUpstream, type Upstream } from '../helpers/upstream.js';

interface Echo {
  url: string;
  headers: Record<string, string | undefined>;
}

const echoOf = (body: string): Echo => JSON.parse(body) as Echo;

/** A deferred the tests resolve to let a held upstream response go. */
function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

function suite(name: string, choose: () => StoreChoice) {
  describe(`sessions (${name})`, () => {
    let upstream: Upstream;
    let clock: FakeClock;
    let cc: Harness;
    let prefixCounter = 0;

    before(async () => {
      upstream = await startUpstream();
      upstream.route('/login', (req, res) => {
        res.setHeader('set-cookie', ['app_session=user-alice; Path=/; HttpOnly', 'prefs=dark; Path=/']);
        res.end('logged in');
      });
      upstream.route('/logout', setsCookies('app_session=; Path=/; Max-Age=0'));
      upstream.route('/anon', (_req, res) => {
        res.end('nothing set');
      });
      upstream.route('/set-theme', setsCookies('theme=blue; Path=/', 'consent=yes; Path=/'));
    });
    after(async () => {
      await upstream.close();
    });

    /** A fresh coatcheck (and store namespace) per test: no state shared between tests. */
    async function fresh(overrides: Parameters<typeof startCoatcheck>[1] = {}): Promise<Harness> {
      clock = new FakeClock(Date.now());
      cc = await startCoatcheck(upstream.origin, { ...storeOverrides(choose(), `t${++prefixCounter}:`), ...overrides }, { clock });
      return cc;
    }

    async function login(h: Harness): Promise<Browser> {
      const b = new Browser(h.port);
      const r = await b.send('/login', { method: 'POST' });
      assert.equal(r.status, 200);
      assert.ok(b.ticket, 'login gives a ticket');
      return b;
    }

    test('1. the browser gets only the ticket; anonymous traffic creates no session', async (t) => {
      const h = await fresh({ ...DEFAULT_RULES, session: { passthrough: ['consent'] } });
      t.after(() => h.close());
      const anon = await send(h.port, '/anon');
      assert.equal(anon.status, 200);
      assert.deepEqual(anon.setCookies, [], 'no ticket for anonymous traffic');
      const login = await send(h.port, '/login', { method: 'POST' });
      assert.equal(login.setCookies.length, 1, `only the ticket: ${JSON.stringify(login.setCookies)}`);
      assert.match(login.setCookies[0] as string, /^coatcheck=v1\.[\w-]{43}\.[\w-]{43}; Path=\/; HttpOnly; SameSite=Lax$/);
      assert.equal(login.headers['cache-control'], 'no-store');
      const b = new Browser(h.port);
      b.ticket = cookieValue(login.setCookies, 'coatcheck');
      const theme = await b.send('/set-theme');
      assert.deepEqual(theme.setCookies, ['consent=yes; Path=/'], 'passthrough cookies reach the browser, managed ones do not');
    });

    test('2. the app gets the jar as a browser would send it, never the ticket', async (t) => {
      const h = await fresh();
      t.after(() => h.close());
      upstream.route('/jar-setup', setsCookies('root=1; Path=/', 'scoped=2; Path=/app', 'short=3; Max-Age=60', 'other=4; Domain=other.example', 'gone=5; Path=/'));
      const b = new Browser(h.port);
      await b.send('/jar-setup');
      assert.ok(b.ticket);
      let e = echoOf((await b.send('/echo')).body);
      assert.equal(e.headers.cookie, 'root=1; short=3; gone=5', 'path-scoped and foreign-domain cookies are not sent to /echo');
      e = echoOf((await b.send('/app/echo')).body);
      assert.equal(e.headers.cookie, 'scoped=2; root=1; short=3; gone=5', 'longer paths first, as browsers order them');
      assert.ok(!e.headers.cookie?.includes('coatcheck'), 'the app never sees the ticket');

      upstream.route('/delete-gone', setsCookies('gone=; Path=/; Max-Age=0', 'root=1; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT'));
      await b.send('/delete-gone');
      clock.advance(61_000);
      e = echoOf((await b.send('/echo')).body);
      assert.equal(e.headers.cookie, undefined, 'deleted by Max-Age=0, by a past Expires, and expired by Max-Age');
    });

    test('2b. Secure jar cookies go only over a secure client connection; host-only cookies stay on their host', async (t) => {
      const h = await fresh({ trustProxy: true });
      t.after(() => h.close());
      upstream.route('/secure-setup', setsCookies('s=1; Secure; Path=/', 'p=2; Path=/'));
      const b = new Browser(h.port);
      await b.send('/secure-setup', { headers: { host: 'app.example.com', 'x-forwarded-proto': 'https' } });
      assert.ok(b.ticket);
      let e = echoOf((await b.send('/echo', { headers: { host: 'app.example.com', 'x-forwarded-proto': 'https' } })).body);
      assert.equal(e.headers.cookie, 's=1; p=2');
      e = echoOf((await b.send('/echo', { headers: { host: 'app.example.com', 'x-forwarded-proto': 'http' } })).body);
      assert.equal(e.headers.cookie, 'p=2', 'no Secure cookie over plain http');
      e = echoOf((await b.send('/echo', { headers: { host: 'sub.app.example.com', 'x-forwarded-proto': 'https' } })).body);
      assert.equal(e.headers.cookie, undefined, 'host-only cookies are not sent to a subdomain');
    });

    test('3. managed cookies sent by the client are stripped and reported', async (t) => {
      const h = await fresh({ ...DEFAULT_RULES, session: { passthrough: ['_ga*'] } });
      t.after(() => h.close());
      const b = await login(h);
      const r = await b.send('/echo', { headers: { cookie: 'app_session=stolen-before-deploy; _ga_X=GA1.1; random=1' } });
      const e = echoOf(r.body);
      assert.equal(e.headers.cookie, 'app_session=user-alice; prefs=dark; _ga_X=GA1.1');
      const alarms = h.logs.events('session.legacy_cookie_presented');
      assert.deepEqual(
        alarms.map((a) => a.cookieName),
        ['app_session'],
        'an alarm only for a name the app sets, not for unknown cookies',
      );
      // anonymous requests too: a cookie stolen before deployment is worthless
      const anon = echoOf((await send(h.port, '/echo', { headers: { cookie: 'app_session=stolen' } })).body);
      assert.equal(anon.headers.cookie, undefined);
    });

    test('4. logout revokes before forwarding; a replay gets 401 without reaching the app; others stay in', async (t) => {
      const h = await fresh(DEFAULT_RULES);
      t.after(() => h.close());
      const alice = await login(h);
      const bob = await login(h);
      const stolen = alice.ticket as string;
      const seen = upstream.nextRequest('/logout');
      const out = await alice.send('/logout');
      assert.equal(out.status, 200);
      assert.equal((await seen).headers.cookie, 'app_session=user-alice; prefs=dark', 'the app still gets its cookies so its logout runs');
      assert.ok(out.setCookies.some((c) => /^coatcheck=; .*Max-Age=0/.test(c)), 'the ticket is cleared');
      assert.equal(alice.ticket, undefined);

      const before = upstream.received.length;
      const replay = await send(h.port, '/profile', { headers: { cookie: `coatcheck=${stolen}` } });
      assert.equal(replay.status, 401);
      assert.match(replay.body, /COATCHECK_ERR_SESSION_REVOKED/);
      assert.equal(upstream.received.length, before, 'the app is not contacted for a replay');
      const events = h.logs.events('session.replay');
      assert.equal(events.length, 1);
      assert.ok(!JSON.stringify(events).includes(stolen), 'the ticket is never logged');

      const e = echoOf((await bob.send('/echo')).body);
      assert.equal(e.headers.cookie, 'app_session=user-alice; prefs=dark', 'another session is untouched');
    });

    test('4b. revoked handling is configurable: anonymous, or a redirect', async (t) => {
      const h = await fresh({ ...DEFAULT_RULES, invalidSession: { revoked: 'anonymous' } });
      t.after(() => h.close());
      const b = await login(h);
      const stolen = b.ticket as string;
      await b.send('/logout');
      const r = await send(h.port, '/echo', { headers: { cookie: `coatcheck=${stolen}`, 'sec-fetch-mode': 'cors' } });
      assert.equal(r.status, 200);
      assert.equal(echoOf(r.body).headers.cookie, undefined, 'goes on as anonymous, without the jar');
      assert.deepEqual(r.setCookies, [], 'a background request does not clear a revoked ticket: the browser may hold a newer one');
      const nav = await send(h.port, '/echo', { headers: { cookie: `coatcheck=${stolen}`, 'sec-fetch-mode': 'navigate' } });
      assert.ok(nav.setCookies.some((c) => /^coatcheck=; .*Max-Age=0/.test(c)), 'a page load clears it, so nobody stays stuck with it');

      const h2 = await fresh({ ...DEFAULT_RULES, invalidSession: { redirect: '/signed-out' } });
      t.after(() => h2.close());
      const b2 = await login(h2);
      const stolen2 = b2.ticket as string;
      await b2.send('/logout');
      const r2 = await send(h2.port, '/echo', { headers: { cookie: `coatcheck=${stolen2}` } });
      assert.equal(r2.status, 303);
      assert.equal(r2.headers.location, '/signed-out');
    });

    test('5. idle timeout slides per session; an expired ticket goes on as anonymous and is cleared', async (t) => {
      const h = await fresh({ ...DEFAULT_RULES, session: { idleTimeout: '10m', absoluteTimeout: '1h' } });
      t.after(() => h.close());
      const b = await login(h);
      for (let i = 0; i < 3; i++) {
        clock.advance(7 * 60_000); // 21 minutes in all, never 10 idle
        const e = echoOf((await b.send('/echo')).body);
        assert.equal(e.headers.cookie, 'app_session=user-alice; prefs=dark', `still live after ${(i + 1) * 7} minutes`);
      }
      clock.advance(10 * 60_000 + 1);
      const r = await b.send('/echo');
      assert.equal(r.status, 200);
      assert.equal(echoOf(r.body).headers.cookie, undefined);
      assert.equal(b.ticket, undefined, 'the dead ticket is cleared');
    });

    test('5b. absolute timeout caps a session however active; reject policy answers 401', async (t) => {
      const h = await fresh({ ...DEFAULT_RULES, session: { idleTimeout: '10m', absoluteTimeout: '30m' }, invalidSession: { expired: 'reject' } });
      t.after(() => h.close());
      const b = await login(h);
      for (let i = 0; i < 4; i++) {
        clock.advance(7 * 60_000);
        assert.equal((await b.send('/echo')).status, 200);
      }
      clock.advance(3 * 60_000); // 31 minutes since login
      const r = await b.send('/echo');
      assert.equal(r.status, 401);
      assert.match(r.body, /COATCHECK_ERR_SESSION_EXPIRED/);
    });

    test('6. login rotates the ticket: the one from before login dies, the jar moves over', async (t) => {
      const h = await fresh(DEFAULT_RULES);
      t.after(() => h.close());
      const b = new Browser(h.port);
      await b.send('/set-theme');
      const before = b.ticket as string;
      assert.ok(before);
      await b.send('/login', { method: 'POST' });
      assert.ok(b.ticket && b.ticket !== before, 'a new ticket at login');
      const e = echoOf((await b.send('/echo')).body);
      assert.equal(e.headers.cookie, 'theme=blue; consent=yes; app_session=user-alice; prefs=dark');
      const old = await send(h.port, '/echo', { headers: { cookie: `coatcheck=${before}` } });
      assert.equal(old.status, 401, 'the pre-login ticket no longer works');
      const getLogin = await b.send('/login');
      assert.equal(getLogin.setCookies.length, 0, 'GET /login does not match the POST rule: nothing new');
    });

    test('6b. a failed login (4xx) does not rotate, and buys no new absolute deadline', async (t) => {
      upstream.route('/login-fails', (_req, res) => {
        res.statusCode = 401;
        res.end('wrong password');
      });
      const h2 = await fresh({ session: { idleTimeout: '10m', absoluteTimeout: '30m' }, login: [{ path: '/login-fails', methods: ['POST'] }] });
      t.after(() => h2.close());
      const b = new Browser(h2.port);
      await b.send('/set-theme');
      const before = b.ticket as string;
      for (let i = 0; i < 4; i++) {
        clock.advance(7 * 60_000);
        const r = await b.send('/login-fails', { method: 'POST' });
        assert.equal(r.status, 401);
        assert.equal(b.ticket, before, 'no new ticket for a failed login');
      }
      clock.advance(3 * 60_000); // 31 minutes since the session began
      const r = await b.send('/echo');
      assert.equal(echoOf(r.body).headers.cookie, undefined, 'the absolute deadline held');
    });

    test('6c. a background request racing the login does not clear the new ticket', async (t) => {
      const h = await fresh(DEFAULT_RULES);
      t.after(() => h.close());
      const b = new Browser(h.port);
      await b.send('/set-theme');
      const old = b.ticket as string;
      const release = deferred();
      const held = deferred<ServerResponse>();
      upstream.route('/poll', async (_req, res) => {
        held.resolve(res);
        await release.promise;
        res.setHeader('set-cookie', 'seen=1; Path=/');
        res.end('poll');
      });
      const poll = send(h.port, '/poll', { headers: { cookie: `coatcheck=${old}`, 'sec-fetch-mode': 'cors' } });
      await held.promise;
      await b.send('/login', { method: 'POST' });
      const fresh2 = b.ticket as string;
      assert.notEqual(fresh2, old);
      release.resolve();
      const late = await poll;
      assert.deepEqual(late.setCookies, [], 'the late response does not touch the ticket cookie');
      const after = await send(h.port, '/poll-after', { headers: { cookie: `coatcheck=${old}`, 'sec-fetch-mode': 'cors' } });
      assert.equal(after.status, 401);
      assert.deepEqual(after.setCookies, [], 'nor does a rejected old ticket');
      assert.equal((await b.send('/echo')).status, 200, 'the browser keeps its new session');
    });

    test('8. revocation is final under concurrency; concurrent writes both persist', async (t) => {
      const h = await fresh(DEFAULT_RULES);
      t.after(() => h.close());
      const b = await login(h);
      const ticket = b.ticket as string;
      const release = deferred();
      const held = deferred<ServerResponse>();
      upstream.route('/slow-set', async (_req, res) => {
        held.resolve(res);
        await release.promise;
        res.setHeader('set-cookie', 'late=1; Path=/');
        res.end('late');
      });
      const slow = send(h.port, '/slow-set', { headers: { cookie: `coatcheck=${ticket}`, 'sec-fetch-mode': 'cors' } });
      await held.promise;
      await b.send('/logout');
      release.resolve();
      const late = await slow;
      assert.equal(late.status, 200);
      assert.ok(!late.setCookies.some((c) => c.startsWith('late=')), 'the app cookie is not leaked');
      assert.deepEqual(late.setCookies, [], 'no ticket change: a newer one may already be in the browser');
      await h.logs.waitFor((l) => l.event === 'session.write_after_revoke');
      const replay = await send(h.port, '/echo', { headers: { cookie: `coatcheck=${ticket}` } });
      assert.equal(replay.status, 401, 'the late write did not bring the session back');

      // Both requests load the session before either response is written: both writes start
      // from the same version, so one of them loses the compare-and-set and is applied again
      // on top of the other.
      const c = await login(h);
      const both = deferred();
      const arrived = new Set<string>();
      const heldRoute = (cookie: string) => async (req: { url?: string }, res: ServerResponse) => {
        arrived.add(req.url ?? '');
        if (arrived.size === 2) both.resolve();
        await both.promise;
        res.setHeader('set-cookie', cookie);
        res.end('ok');
      };
      upstream.route('/set-a', heldRoute('a=1; Path=/'));
      upstream.route('/set-b', heldRoute('b=2; Path=/'));
      await Promise.all([c.send('/set-a'), c.send('/set-b')]);
      const e = echoOf((await c.send('/echo')).body);
      const sent = (e.headers.cookie ?? '').split('; ');
      assert.deepEqual(sent.slice(0, 2), ['app_session=user-alice', 'prefs=dark']);
      assert.deepEqual(sent.slice(2).sort(), ['a=1', 'b=2'], 'both concurrent writes persist');
    });
  });
}

suite('memory store', () => ({ kind: 'memory' }));

describe('with a real redis-server', () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis.stop();
  });
  suite('redis store', () => ({ kind: 'redis', url: redis.url }));

  describe('redis specifics', () => {
    let upstream: Upstream;
    before(async () => {
      upstream = await startUpstream();
      upstream.route('/login', setsCookies('app_session=user-alice; Path=/'));
    });
    after(() => upstream.close());

    test('1. anonymous traffic writes nothing to Redis; the TTL follows the idle timeout', async (t) => {
      const h = await startCoatcheck(upstream.origin, { ...DEFAULT_RULES, ...storeOverrides({ kind: 'redis', url: redis.url }, 'anon:'), session: { idleTimeout: '10m' } });
      t.after(() => h.close());
      const raw = redis.client();
      for (let i = 0; i < 5; i++) await send(h.port, '/echo');
      assert.deepEqual(await raw.keys('anon:*'), []);
      const b = new Browser(h.port);
      await b.send('/login', { method: 'POST' });
      const keys = await raw.keys('anon:s:*');
      assert.equal(keys.length, 1);
      assert.deepEqual(await raw.keys('anon:f:*'), [], 'a session that was never renewed needs no family index');
      assert.ok(((await raw.getBuffer(keys[0] as string)) as Buffer).subarray(0, 3).equals(Buffer.from('L1:')), 'one string: version 1');
      const pttl = await raw.pttl(keys[0] as string);
      assert.ok(pttl > 9 * 60_000 && pttl <= 10 * 60_000, `TTL ${pttl} follows idleTimeout`);
    });

    test('7. store down or slow: 503 fail-closed within the timeout, nobody logged out, recovery without restart', async (t) => {
      const h = await startCoatcheck(upstream.origin, { ...DEFAULT_RULES, ...storeOverrides({ kind: 'redis', url: redis.url }, 'fail:') });
      t.after(() => h.close());
      const b = new Browser(h.port);
      await b.send('/login', { method: 'POST' });
      const ticket = b.ticket as string;
      assert.ok(ticket);

      await redis.pause();
      let resumed = false;
      t.after(async () => {
        if (!resumed) await redis.resume();
      });
      const before = upstream.received.length;
      const started = performance.now();
      const slow = await send(h.port, '/echo', { headers: { cookie: `coatcheck=${ticket}; app_session=forged` } });
      const took = performance.now() - started;
      assert.equal(slow.status, 503);
      assert.match(slow.body, /COATCHECK_ERR_STORE_UNAVAILABLE/);
      assert.ok(took < 250 + 1500, `answered within the store timeout plus a margin (${Math.round(took)} ms)`);
      assert.equal(upstream.received.length, before, 'nothing forwarded with unchecked cookies');
      assert.equal(slow.setCookies.length, 0, 'a store failure never clears the ticket');
      // a response that needs a write fails closed too, and leaks no app cookie
      const anonLogin = await send(h.port, '/login', { method: 'POST' });
      assert.equal(anonLogin.status, 503);
      assert.equal(anonLogin.setCookies.length, 0);

      await redis.resume();
      resumed = true;
      // recovers by itself: poll until the same ticket works again
      const deadline = Date.now() + 10_000;
      let r = await send(h.port, '/echo', { headers: { cookie: `coatcheck=${ticket}` } });
      while (r.status !== 200 && Date.now() < deadline) {
        await new Promise((res) => setImmediate(res));
        r = await send(h.port, '/echo', { headers: { cookie: `coatcheck=${ticket}` } });
      }
      assert.equal(r.status, 200);
      assert.equal(echoOf(r.body).headers.cookie, 'app_session=user-alice', 'the session survived the outage');

      await redis.kill();
      const down = await send(h.port, '/echo', { headers: { cookie: `coatcheck=${ticket}` } });
      assert.equal(down.status, 503);
      await redis.restart();
      const deadline2 = Date.now() + 15_000;
      let fresh = await send(h.port, '/login', { method: 'POST' });
      while (fresh.status !== 200 && Date.now() < deadline2) {
        await new Promise((res) => setImmediate(res));
        fresh = await send(h.port, '/login', { method: 'POST' });
      }
      assert.equal(fresh.status, 200, 'serves again once Redis is back, without a restart');
      assert.ok(cookieValue(fresh.setCookies, 'coatcheck'));
    });

    test('4. a revoked session leaves only a tombstone that lives until the absolute deadline', async (t) => {
      const h = await startCoatcheck(upstream.origin, { ...DEFAULT_RULES, ...storeOverrides({ kind: 'redis', url: redis.url }, 'tomb:'), session: { idleTimeout: '5m', absoluteTimeout: '2h' } });
      t.after(() => h.close());
      const b = new Browser(h.port);
      await b.send('/login', { method: 'POST' });
      await b.send('/logout');
      const raw = redis.client();
      const keys = await raw.keys('tomb:s:*');
      assert.equal(keys.length, 1);
      assert.deepEqual(await raw.keys('tomb:f:*'), [], 'the family index goes with the family');
      const record = (await raw.get(keys[0] as string)) as string;
      assert.match(record, /^R\d+$/, 'a tombstone holds only its deadline');
      const pttl = await raw.pttl(keys[0] as string);
      assert.ok(pttl > 119 * 60_000, `tombstone TTL ${pttl} reaches the absolute deadline`);
    });
  });
});
