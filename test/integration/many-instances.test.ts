// Many coatcheck instances on one Redis behave as one: every request checks the store's current
// version of its session, so what one instance does (create, cookie change, logout, rotation,
// renewal, the app's revocation, a touch, expiry) holds on every other at its very next request,
// however warm that instance's ticket cache is; and concurrent writes to one session through
// different instances lose nothing. Real redis-server, real instances, one dummy app.
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { Browser, cookieValue, send, type Reply } from '../helpers/client.js';
import { FakeClock } from '../helpers/clock.js';
import { DEFAULT_RULES, startCoatcheck, storeOverrides, type Harness } from '../helpers/coatcheck.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { setsCookies, startUpstream, type Upstream } from '../helpers/upstream.js';

const MIN = 60_000;
const JAR = 'app_session=alice; prefs=dark';

const cookieSeen = (r: Reply): string | undefined => (JSON.parse(r.body) as { headers: { cookie?: string } }).headers.cookie;

let redis: RedisServer;
let upstream: Upstream;
let prefixes = 0;

before(async () => {
  redis = await startRedis();
  upstream = await startUpstream();
  upstream.route('/login', setsCookies('app_session=alice; Path=/; HttpOnly', 'prefs=dark; Path=/'));
  upstream.route('/logout', setsCookies('app_session=; Path=/; Max-Age=0'));
  upstream.route('/set-theme', setsCookies('theme=blue; Path=/'));
  upstream.route('/clear-theme', setsCookies('theme=; Path=/; Max-Age=0'));
  upstream.route('/app-revokes', (_req, res) => {
    res.setHeader('coatcheck-session', 'revoke');
    res.end('revoked by the app');
  });
});
after(async () => {
  await upstream?.close();
  await redis?.stop();
});

/**
 * `n` instances on one Redis key prefix (one namespace per test), sharing one fake clock, each
 * closed when the test ends.
 */
async function instances(t: { after(fn: () => Promise<void>): void }, n: number, overrides: Parameters<typeof startCoatcheck>[1] = {}) {
  const clock = new FakeClock(Date.now());
  const prefix = `mi${++prefixes}:`;
  const list: Harness[] = [];
  for (let i = 0; i < n; i++) {
    const h = await startCoatcheck(upstream.origin, { ...DEFAULT_RULES, ...storeOverrides({ kind: 'redis', url: redis.url }, prefix), ...overrides }, { clock });
    t.after(() => h.close());
    list.push(h);
  }
  return { list, clock };
}

/** One request with `ticket` to the instance `h`. */
function via(h: Harness, ticket: string, path: string, opts: { method?: string } = {}): Promise<Reply> {
  return send(h.port, path, { ...opts, headers: { cookie: `coatcheck=${ticket}` } });
}

async function login(h: Harness): Promise<string> {
  const b = new Browser(h.port);
  const r = await b.send('/login', { method: 'POST' });
  assert.equal(r.status, 200);
  assert.ok(b.ticket, 'login gives a ticket');
  return b.ticket;
}

/** Sends a request the app must never see: answered by coatcheck alone. */
async function rejectedWithoutApp(h: Harness, ticket: string, path = '/echo'): Promise<Reply> {
  const before = upstream.received.length;
  const r = await via(h, ticket, path);
  assert.equal(upstream.received.length, before, `the app was contacted for ${path}`);
  return r;
}

describe('many instances on one Redis', () => {
  test('created on A, used on B and C; a cookie change on A is seen on B; a logout on B is final on A and C at once', async (t) => {
    const { list } = await instances(t, 3);
    const [a, b, c] = list as [Harness, Harness, Harness];
    const ticket = await login(a);
    // Every instance has now seen (and cached) the ticket.
    for (const h of [a, b, c]) assert.equal(cookieSeen(await via(h, ticket, '/echo')), JAR);

    assert.equal((await via(a, ticket, '/set-theme')).status, 200);
    assert.equal(cookieSeen(await via(b, ticket, '/echo')), `${JAR}; theme=blue`, 'B sees the cookie A stored');
    assert.equal((await via(c, ticket, '/clear-theme')).status, 200);
    assert.equal(cookieSeen(await via(a, ticket, '/echo')), JAR, 'A sees the deletion C stored');

    const out = await via(b, ticket, '/logout');
    assert.equal(out.status, 200);
    for (const h of [a, c]) {
      const replay = await rejectedWithoutApp(h, ticket);
      assert.equal(replay.status, 401);
      assert.match(replay.body, /COATCHECK_ERR_SESSION_REVOKED/);
      assert.equal(h.logs.events('session.replay').length, 1, 'the replay is logged where it happened');
    }
  });

  test('rotation at login on A: the pre-login ticket, known to B, is rejected on B', async (t) => {
    const { list } = await instances(t, 2);
    const [a, b] = list as [Harness, Harness];
    const first = await send(a.port, '/set-theme');
    const before = cookieValue(first.setCookies, 'coatcheck') as string;
    assert.ok(before, 'a first managed cookie gives a ticket');
    assert.equal(cookieSeen(await via(b, before, '/echo')), 'theme=blue', 'B serves the pre-login session');

    const loggedIn = await via(a, before, '/login', { method: 'POST' });
    const after = cookieValue(loggedIn.setCookies, 'coatcheck') as string;
    assert.ok(after && after !== before, 'a new ticket at login');

    const old = await rejectedWithoutApp(b, before);
    assert.equal(old.status, 401, 'the pre-login ticket is dead on B too');
    assert.equal(cookieSeen(await via(b, after, '/echo')), `theme=blue; ${JAR}`, 'the jar moved to the new id');
  });

  test('renewal on A: the old ticket works on B within the grace window (handing out the new one), and is rejected after it', async (t) => {
    const { list, clock } = await instances(t, 2, { session: { renewAfter: '15m', renewGrace: '30s' } });
    const [a, b] = list as [Harness, Harness];
    const old = await login(a);
    assert.equal(cookieSeen(await via(b, old, '/echo')), JAR);

    clock.advance(16 * MIN);
    const renewed = await via(a, old, '/echo');
    const next = cookieValue(renewed.setCookies, 'coatcheck') as string;
    assert.ok(next && next !== old, 'A renewed the id');
    assert.equal(a.logs.events('session.renewed').length, 1);

    const inGrace = await via(b, old, '/echo');
    assert.equal(inGrace.status, 200);
    assert.equal(cookieSeen(inGrace), JAR, 'within the grace window B serves the old ticket as an alias');
    assert.equal(cookieValue(inGrace.setCookies, 'coatcheck'), next, 'and gives the browser the ticket A minted');
    assert.equal(b.logs.events('session.renewed').length, 0, 'B did not renew again');

    clock.advance(31_000);
    const late = await rejectedWithoutApp(b, old);
    assert.equal(late.status, 401, 'past the grace window the old ticket is a replay on B');
    assert.equal(cookieSeen(await via(b, next, '/echo')), JAR, 'the new ticket works on B');
  });

  test("the app's Coatcheck-Session: revoke on A is honoured on B", async (t) => {
    const { list } = await instances(t, 2);
    const [a, b] = list as [Harness, Harness];
    const ticket = await login(a);
    assert.equal(cookieSeen(await via(b, ticket, '/echo')), JAR);
    const r = await via(a, ticket, '/app-revokes');
    assert.equal(r.status, 200);
    assert.ok(r.setCookies.some((v) => /^coatcheck=; .*Max-Age=0/.test(v)), 'A clears the ticket');
    const replay = await rejectedWithoutApp(b, ticket);
    assert.equal(replay.status, 401);
  });

  test("a touch on one instance keeps the session alive on the other; idle expiry holds on both", async (t) => {
    const { list, clock } = await instances(t, 2, { session: { idleTimeout: '10m', absoluteTimeout: '1h' } });
    const [a, b] = list as [Harness, Harness];
    const ticket = await login(a);
    assert.equal(cookieSeen(await via(b, ticket, '/echo')), JAR);
    // 28 minutes in all, never 10 idle: each instance alone would have seen the session idle
    // for 14 minutes, had it trusted what it last read instead of the store's current version.
    for (let i = 0; i < 4; i++) {
      clock.advance(7 * MIN);
      const h = i % 2 === 0 ? a : b;
      assert.equal(cookieSeen(await via(h, ticket, '/echo')), JAR, `live after ${(i + 1) * 7} minutes`);
    }
    clock.advance(10 * MIN + 1);
    for (const h of [b, a]) {
      const r = await via(h, ticket, '/echo');
      assert.equal(r.status, 200);
      assert.equal(cookieSeen(r), undefined, 'expired: served as anonymous, without the jar');
      assert.ok(r.setCookies.some((v) => /^coatcheck=; .*Max-Age=0/.test(v)), 'and the ticket cleared');
    }
  });

  test('concurrent cookie updates through three instances, all loaded before any is written, are all kept', async (t) => {
    const { list } = await instances(t, 3);
    const ticket = await login(list[0] as Harness);
    const N = 24;
    // The app holds every response until all N requests arrived: every request has loaded the
    // same version of the session before the first write, so the writes collide.
    let arrived = 0;
    let releaseAll!: () => void;
    const all = new Promise<void>((resolve) => (releaseAll = resolve));
    upstream.route('/set-many', async (req, res: ServerResponse) => {
      const i = new URL(req.url ?? '/', 'http://x').searchParams.get('i');
      if (++arrived === N) releaseAll();
      await all;
      res.setHeader('set-cookie', `c${i}=${i}; Path=/`);
      res.end('ok');
    });
    const replies = await Promise.all(Array.from({ length: N }, (_, i) => via(list[i % list.length] as Harness, ticket, `/set-many?i=${i}`)));
    for (const r of replies) {
      assert.equal(r.status, 200, r.body);
      assert.deepEqual(r.setCookies, [], 'no ticket change');
    }
    const sent = (cookieSeen(await via(list[1] as Harness, ticket, '/echo')) ?? '').split('; ');
    assert.deepEqual(sent.slice(0, 2), JAR.split('; '));
    assert.deepEqual(
      sent.slice(2).sort(),
      Array.from({ length: N }, (_, i) => `c${i}=${i}`).sort(),
      'every concurrent write persisted',
    );
  });
});
