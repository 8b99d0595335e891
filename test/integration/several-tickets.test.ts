// Several ticket cookies in one request, through a running coatcheck, on the memory store and a
// real redis-server. The attack: a sibling subdomain plants the attacker's own ticket with
// Path=/logout, so the browser sends `coatcheck=<attacker>; coatcheck=<victim>` to /logout.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Browser, send, type Reply } from '../helpers/client.js';
import { DEFAULT_RULES, startCoatcheck, storeOverrides, type Harness, type StoreChoice } from '../helpers/coatcheck.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { setsCookies, startUpstream, type Upstream } from '../helpers/upstream.js';

/** The ticket's two forms when cookie.domain is set: coatcheck clears both. */
const CLEAR_DOMAIN = 'coatcheck=; Path=/; Domain=app.test; HttpOnly; SameSite=Lax; Max-Age=0';
const CLEAR_HOST_ONLY = 'coatcheck=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0';

function suite(name: string, choose: () => StoreChoice) {
  describe(`several tickets in one request (${name})`, () => {
    let upstream: Upstream;
    let prefixCounter = 0;
    before(async () => {
      upstream = await startUpstream();
      upstream.route('/login', setsCookies('app_session=user; Path=/; HttpOnly'));
      upstream.route('/logout', setsCookies('app_session=; Path=/; Max-Age=0'));
      upstream.route('/app-logout', (_req, res) => {
        res.setHeader('coatcheck-session', 'revoke');
        res.end('bye');
      });
    });
    after(() => upstream.close());

    async function fresh(overrides: Parameters<typeof startCoatcheck>[1] = {}): Promise<Harness> {
      return startCoatcheck(upstream.origin, {
        ...DEFAULT_RULES,
        ...storeOverrides(choose(), `several${++prefixCounter}:`),
        cookie: { name: 'coatcheck', secure: false, domain: 'app.test' },
        admin: { listen: '127.0.0.1:0' },
        ...overrides,
      });
    }

    async function login(h: Harness): Promise<string> {
      const b = new Browser(h.port);
      const r = await b.send('/login', { method: 'POST' });
      assert.equal(r.status, 200);
      return b.ticket as string;
    }

    const both = (first: string, second: string) => ({ cookie: `coatcheck=${first}; coatcheck=${second}` });

    /** Requests the app received since `mark`. */
    const since = (mark: number) => upstream.received.slice(mark).map((r) => r.url);

    async function metric(h: Harness, event: string): Promise<number> {
      const body = (await send(h.adminPort as number, '/metrics')).body;
      const m = new RegExp(`coatcheck_security_events_total\\{event="${event}",mode="enforce"\\} (\\d+)`).exec(body);
      return Number(m?.[1] ?? NaN);
    }

    function assertClearsEveryForm(r: Reply): void {
      assert.deepEqual([...r.setCookies].sort(), [CLEAR_DOMAIN, CLEAR_HOST_ONLY].sort(), 'the ticket is cleared in every form');
      assert.equal(r.headers['cache-control'], 'no-store');
    }

    test('the attack: attacker + victim on /logout revokes both; the victim\'s replay is then rejected', async (t) => {
      const h = await fresh();
      t.after(() => h.close());
      const attacker = await login(h);
      const victim = await login(h);
      const mark = upstream.received.length;
      const out = await send(h.port, '/logout', { headers: both(attacker, victim) });
      assert.equal(out.status, 200, 'the logout reaches the app');
      const appSaw = upstream.received.at(-1)?.headers.cookie;

      for (const [who, ticket] of [['victim', victim], ['attacker', attacker]]) {
        const replay = await send(h.port, '/echo', { headers: { cookie: `coatcheck=${ticket}` } });
        assert.equal(replay.status, 401, `the ${who}'s ticket is revoked: its replay is refused`);
      }
      assert.deepEqual(since(mark), ['/logout'], 'the replays never reach the app');
      assert.equal(appSaw, undefined, "neither jar is sent with the logout: neither session is the request's");
      assertClearsEveryForm(out);
      assert.equal(h.logs.events('session.logout').length, 2, 'both sessions revoked');
      assert.equal(h.logs.events('session.ticket_conflict').length, 1);
      assert.equal(h.logs.events('session.replay').length, 2);
      assert.equal(await metric(h, 'revoked'), 2);
      for (const line of h.logs.raw) assert.ok(!line.includes(victim) && !line.includes(attacker), 'no ticket is logged');
    });

    test('the app\'s Coatcheck-Session: revoke also revokes every live session the request carried', async (t) => {
      const h = await fresh({ invalidSession: { revoked: 'anonymous' } });
      t.after(() => h.close());
      const attacker = await login(h);
      const victim = await login(h);
      const out = await send(h.port, '/app-logout', { headers: both(attacker, victim) });
      assert.equal(out.status, 200);
      assert.equal(h.logs.events('session.logout').length, 2);
      assert.equal((await send(h.port, '/echo', { headers: { cookie: `coatcheck=${victim}` } })).status, 200, 'anonymous policy: forwarded');
      assert.equal(h.logs.events('session.replay').length, 1, 'the victim\'s ticket is revoked');
    });

    test('a revoked ticket next to a live one raises session.replay and is refused; the live one survives', async (t) => {
      const h = await fresh();
      t.after(() => h.close());
      const old = new Browser(h.port);
      await old.send('/login', { method: 'POST' });
      const revoked = old.ticket as string;
      await old.send('/logout');
      const live = await login(h);
      const mark = upstream.received.length;
      const r = await send(h.port, '/echo', { headers: both(revoked, live) });
      assert.equal(r.status, 401);
      assert.match(r.body, /COATCHECK_ERR_SESSION_REVOKED/);
      assertClearsEveryForm(r);
      assert.deepEqual(since(mark), [], 'the app is never contacted');
      const replay = h.logs.events('session.replay');
      assert.equal(replay.length, 1);
      assert.equal(await metric(h, 'revoked'), 1);
      const alone = await send(h.port, '/echo', { headers: { cookie: `coatcheck=${live}` } });
      assert.equal(alone.status, 200, 'the live session was not ended by a page request');
      assert.equal(JSON.parse(alone.body).headers.cookie, 'app_session=user');
    });

    test('two different live tickets on a page: refused as a conflict, every form cleared, and the user can log in again', async (t) => {
      const h = await fresh();
      t.after(() => h.close());
      const attacker = await login(h);
      const victim = await login(h);
      const mark = upstream.received.length;
      const r = await send(h.port, '/echo', { headers: { ...both(attacker, victim), 'sec-fetch-mode': 'cors' } });
      assert.equal(r.status, 401);
      assert.match(r.body, /COATCHECK_ERR_SESSION_CONFLICT/);
      assertClearsEveryForm(r);
      assert.deepEqual(since(mark), [], 'never served with whichever came first');
      const conflict = h.logs.events('session.ticket_conflict');
      assert.equal(conflict.length, 1);
      assert.equal(conflict[0]?.level, 'warn');
      assert.equal(await metric(h, 'ticket_conflict'), 1);
      // The browser, its tickets cleared, logs in again.
      const again = new Browser(h.port);
      assert.equal((await again.send('/login', { method: 'POST' })).status, 200);
      assert.equal((await again.send('/echo')).status, 200);
    });

    test('two copies of the same ticket are no conflict', async (t) => {
      const h = await fresh();
      t.after(() => h.close());
      const ticket = await login(h);
      const r = await send(h.port, '/echo', { headers: both(ticket, ticket) });
      assert.equal(r.status, 200);
      assert.equal(JSON.parse(r.body).headers.cookie, 'app_session=user');
      assert.deepEqual(h.logs.events('session.ticket_conflict'), []);
    });
  });
}

suite('memory store', () => ({ kind: 'memory' }));

describe('with a real redis-server', () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(() => redis.stop());
  suite('redis store', () => ({ kind: 'redis', url: redis.url }));

  test('several tickets are loaded in one MGET, one ticket too (with the revoke-all time)', async (t) => {
    const upstream = await startUpstream();
    t.after(() => upstream.close());
    upstream.route('/login', setsCookies('app_session=user; Path=/'));
    const h = await startCoatcheck(upstream.origin, { ...DEFAULT_RULES, ...storeOverrides({ kind: 'redis', url: redis.url }, 'batch:') });
    t.after(() => h.close());
    const tickets: string[] = [];
    for (let i = 0; i < 3; i++) {
      const b = new Browser(h.port);
      await b.send('/login', { method: 'POST' });
      tickets.push(b.ticket as string);
    }
    const raw = redis.client();
    const calls = async (): Promise<{ get: number; mget: number }> => {
      const info = await raw.info('commandstats');
      const count = (cmd: string) => Number(new RegExp(`cmdstat_${cmd}:calls=(\\d+)`).exec(info)?.[1] ?? 0);
      return { get: count('get'), mget: count('mget') };
    };
    let before = await calls();
    await send(h.port, '/echo', { headers: { cookie: tickets.map((v) => `coatcheck=${v}`).join('; ') } });
    let now = await calls();
    assert.deepEqual({ get: now.get - before.get, mget: now.mget - before.mget }, { get: 0, mget: 1 });
    before = now;
    await send(h.port, '/echo', { headers: { cookie: `coatcheck=${tickets[0]}` } });
    now = await calls();
    // One key of the session and the revoke-all time, read once per event-loop turn with the loads.
    assert.deepEqual({ get: now.get - before.get, mget: now.mget - before.mget }, { get: 0, mget: 1 });
  });
});
