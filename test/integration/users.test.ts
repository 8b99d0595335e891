// Users and incidents (issue 16): whose session it is (from the login request itself, with no
// change to the app), the admin API (list a user's sessions, revoke by user, by a log id read in
// a log line, revoke everything), logout rules of scope user and others and their response
// header forms, session.maxPerUser, and the API's token checks. On the memory store, on a real
// redis-server, and through two instances on one Redis.
import assert from 'node:assert/strict';
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { after, before, describe, test, type TestContext } from 'node:test';
import type { ConfigInput } from '../../src/config/schema.js';
import { Browser, send, type Reply } from '../helpers/client.js';
import { startCoatcheck, storeOverrides, type Harness, type StoreChoice } from '../helpers/coatcheck.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const TOKEN = 'admin-token-0123456789-abcdefghijklmnopqrstuvwxyz';
const CHROME = 'Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0';
const FIREFOX = 'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0';

let redis: RedisServer;
let app: Upstream;
/** Every login body the app received, byte for byte, by the test's marker header. */
const loginBodies = new Map<string, Buffer>();
let prefixes = 0;

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** The app's login: any body; "wrong" in it fails (401). It names no user to coatcheck. */
async function appLogin(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const body = await readBody(req);
  const marker = req.headers['x-test-marker'];
  if (typeof marker === 'string') loginBodies.set(marker, body);
  if (body.includes('wrong')) {
    res.writeHead(401, { 'content-type': 'text/plain' });
    res.end('bad password');
    return;
  }
  res.setHeader('set-cookie', [`app_session=s${Math.random().toString(36).slice(2)}; Path=/; HttpOnly`]);
  res.end(`logged in (${body.length} bytes)`);
}

before(async () => {
  redis = await startRedis();
  app = await startUpstream();
  app.route('/login', appLogin);
  app.route('/api/session', appLogin);
  app.route('/account/password', async (req, res) => {
    const body = await readBody(req);
    res.writeHead(body.includes('wrong') ? 403 : 200);
    res.end(body.includes('wrong') ? 'refused' : 'password changed');
  });
  app.route('/app/revoke-others', (_req, res) => {
    res.setHeader('coatcheck-session', 'revoke-others');
    res.end('the app ended the other sessions');
  });
  app.route('/app/revoke-user', (_req, res) => {
    res.setHeader('coatcheck-session', 'revoke-user');
    res.end('the app ended every session');
  });
  app.route('/app/names-carol', (_req, res) => {
    res.setHeader('coatcheck-user', 'carol');
    res.setHeader('set-cookie', 'app_session=carol; Path=/');
    res.end('carol, said the app');
  });
});
after(async () => {
  await app?.close();
  await redis?.stop();
});

const RULES = {
  login: [
    { path: '/login', methods: ['POST'], user: { formField: 'username' } },
    { path: '/api/session', methods: ['POST'], user: { jsonField: 'user.email' } },
    { path: '/app/names-carol', methods: ['POST'] },
  ],
  logout: [{ path: '/logout' }, { path: '/account/sessions/end-all', scope: 'user' as const }, { path: '/account/password', methods: ['POST'], scope: 'others' as const }],
} satisfies Partial<ConfigInput>;

async function start(t: TestContext, choice: StoreChoice, overrides: Partial<ConfigInput> = {}, prefix = `u${++prefixes}:`): Promise<Harness> {
  const h = await startCoatcheck(app.origin, { ...RULES, ...storeOverrides(choice, prefix), admin: { listen: '127.0.0.1:0', token: TOKEN }, ...overrides });
  t.after(() => h.close());
  return h;
}

/** A browser that logged in as `user` (a urlencoded form unless told otherwise). */
async function login(h: Harness, user: string, opts: { ua?: string; as?: 'form' | 'json' | 'multipart'; password?: string } = {}): Promise<{ b: Browser; reply: Reply }> {
  const b = new Browser(h.port);
  const password = opts.password ?? 'secret';
  const headers: Record<string, string> = { 'user-agent': opts.ua ?? CHROME };
  let body: Buffer;
  let path = '/login';
  if (opts.as === 'json') {
    path = '/api/session';
    headers['content-type'] = 'application/json';
    body = Buffer.from(JSON.stringify({ user: { email: user }, password }));
  } else if (opts.as === 'multipart') {
    const form = new FormData();
    form.set('username', user);
    form.set('password', password);
    const r = new Request('http://x/', { method: 'POST', body: form });
    headers['content-type'] = r.headers.get('content-type') as string;
    body = Buffer.from(await r.arrayBuffer());
  } else {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    body = Buffer.from(new URLSearchParams({ username: user, password }).toString());
  }
  const reply = await b.send(path, { method: 'POST', headers, body });
  return { b, reply };
}

/** A call to the admin API. */
async function admin(h: Harness, method: 'GET' | 'POST', path: string, body?: unknown, token: string | null = TOKEN): Promise<{ status: number; json: Record<string, unknown>; headers: Reply['headers'] }> {
  const headers: Record<string, string> = {};
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const r = await send(h.adminPort as number, path, { method, headers, ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}) });
  return { status: r.status, json: JSON.parse(r.body) as Record<string, unknown>, headers: r.headers };
}

type Listed = { id: string; createdAt: string; lastSeenAt: string; expiresAt: string; userAgent: string | null; client: string | null };
async function sessionsOf(h: Harness, user: string): Promise<Listed[]> {
  const r = await admin(h, 'GET', `/sessions?user=${encodeURIComponent(user)}`);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.user, user);
  return r.json.sessions as Listed[];
}

/** Does the browser's session still work (the app gets its request with the jar)? */
async function works(b: Browser): Promise<boolean> {
  const r = await b.send('/echo');
  if (r.status !== 200) return false;
  return ((JSON.parse(r.body) as { headers: { cookie?: string } }).headers.cookie ?? '').includes('app_session=');
}

/** The log id of the newest session a login gave (its session.rotated / session.created line). */
function lastIssued(h: Harness): string {
  const lines = h.logs.lines.filter((l) => l.event === 'session.created' || l.event === 'session.rotated');
  return (lines[lines.length - 1] as { newSession: string }).newSession;
}

const STORES: Array<[string, () => StoreChoice]> = [
  ['memory', () => ({ kind: 'memory' })],
  ['redis', () => ({ kind: 'redis', url: redis.url })],
];

for (const [name, choice] of STORES) {
  describe(`users and incidents (${name})`, () => {
    test('the login body names the user (form, JSON with a dotted path, multipart); the app gets the body byte for byte; a failed login names nobody', async (t) => {
      const h = await start(t, choice());
      const form = new URLSearchParams({ username: 'alice', password: 'secret', note: 'ü & =' }).toString();
      const r = await new Browser(h.port).send('/login', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-test-marker': 'form' }, body: form });
      assert.equal(r.status, 200);
      assert.equal(loginBodies.get('form')?.toString('latin1'), Buffer.from(form).toString('latin1'));
      await login(h, 'bob@example.com', { as: 'json', ua: FIREFOX });
      await login(h, 'carol', { as: 'multipart' });
      const failed = await login(h, 'dave', { password: 'wrong' });
      assert.equal(failed.reply.status, 401);

      assert.equal((await sessionsOf(h, 'alice')).length, 1);
      const bob = await sessionsOf(h, 'bob@example.com');
      assert.equal(bob.length, 1);
      assert.equal(bob[0]?.userAgent, FIREFOX);
      assert.equal(bob[0]?.client, '127.0.0.0/24');
      assert.equal((await sessionsOf(h, 'carol')).length, 1);
      assert.deepEqual(await sessionsOf(h, 'dave'), [], 'a failed login records no user');
      assert.deepEqual(await sessionsOf(h, 'nobody'), []);
    });

    test('a login body past 64 KiB streams to the app unchanged and records no user (a warning)', async (t) => {
      const h = await start(t, choice());
      const big = Buffer.alloc(1024 * 1024, 'a');
      const body = Buffer.concat([Buffer.from('username=erin&password=x&blob='), big]);
      const r = await new Browser(h.port).send('/login', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-test-marker': 'big' }, body });
      assert.equal(r.status, 200);
      assert.ok(loginBodies.get('big')?.equals(body), 'the app got the 1 MB body byte for byte');
      assert.equal(h.logs.events('login.user_body_too_large').length, 1);
      assert.deepEqual(await sessionsOf(h, 'erin'), []);
    });

    test('a chunked login body: the user is read from its first 64 KiB when it ends there; past it, the rest streams on (no user)', async (t) => {
      const h = await start(t, choice());
      const chunked = (marker: string, parts: Buffer[]): Promise<number> =>
        new Promise((resolve, reject) => {
          const req = httpRequest(
            { host: '127.0.0.1', port: h.port, path: '/login', method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-test-marker': marker }, agent: false },
            (res) => {
              res.resume();
              res.on('end', () => resolve(res.statusCode ?? 0));
            },
          );
          req.on('error', reject);
          for (const p of parts) req.write(p);
          req.end();
        });
      const small = [Buffer.from('username=fay'), Buffer.from('&password=x')];
      assert.equal(await chunked('chunked-small', small), 200);
      assert.equal(loginBodies.get('chunked-small')?.toString(), 'username=fay&password=x');
      assert.equal((await sessionsOf(h, 'fay')).length, 1);
      const large = [Buffer.from('username=gus&blob='), ...Array.from({ length: 16 }, () => Buffer.alloc(64 * 1024, 'b'))];
      assert.equal(await chunked('chunked-large', large), 200);
      assert.ok(loginBodies.get('chunked-large')?.equals(Buffer.concat(large)), 'every byte reached the app, in order');
      assert.deepEqual(await sessionsOf(h, 'gus'), []);
      assert.equal(h.logs.events('login.user_body_too_large').length, 1);
    });

    test("list, then revoke by user: both of alice's browsers are logged out everywhere, bob is not", async (t) => {
      const h = await start(t, choice());
      const a1 = await login(h, 'alice', { ua: CHROME });
      const a2 = await login(h, 'alice', { ua: FIREFOX });
      const bob = await login(h, 'bob');
      const listed = await sessionsOf(h, 'alice');
      assert.equal(listed.length, 2);
      assert.deepEqual(listed.map((s) => s.userAgent).sort(), [FIREFOX, CHROME].sort());
      assert.ok(Date.parse(listed[0]?.lastSeenAt ?? '') >= Date.parse(listed[1]?.lastSeenAt ?? ''), 'most recently seen first');
      for (const s of listed) {
        assert.match(s.id, /^[A-Za-z0-9_-]{12}$/);
        for (const time of [s.createdAt, s.lastSeenAt, s.expiresAt]) assert.match(time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      }
      assert.ok(listed.every((s) => h.logs.lines.some((l) => l.newSession === s.id)), 'each id is the log id of a logged login');

      const r = await admin(h, 'POST', '/sessions/revoke', { user: 'alice' });
      assert.deepEqual([r.status, r.json], [200, { revoked: 2 }]);
      const seenBefore = app.received.length;
      for (const b of [a1.b, a2.b]) {
        const replay = await b.send('/echo');
        assert.equal(replay.status, 401, 'a revoked ticket is rejected like a logged-out one');
      }
      assert.equal(app.received.length, seenBefore, 'the app never saw the revoked sessions');
      assert.equal(h.logs.events('session.replay').length, 2);
      assert.ok(await works(bob.b), "bob's session is untouched");
      assert.deepEqual(await sessionsOf(h, 'alice'), []);
      const audit = h.logs.events('admin.sessions_revoked');
      assert.equal(audit.length, 1);
      assert.equal(audit[0]?.count, 2);
      assert.equal(audit[0]?.caller, '127.0.0.1');
      assert.equal(h.logs.events('admin.sessions_listed').length, 2);
    });

    test('revoke one session by the log id of its log line: that browser only; an unknown id revokes nothing', async (t) => {
      const h = await start(t, choice());
      const a1 = await login(h, 'alice');
      const id = lastIssued(h);
      const a2 = await login(h, 'alice');
      const anon = new Browser(h.port);
      await anon.send('/app/names-carol', { method: 'POST' });
      assert.deepEqual((await admin(h, 'POST', '/sessions/revoke', { session: id })).json, { revoked: 1 });
      assert.equal((await a1.b.send('/echo')).status, 401);
      assert.ok(await works(a2.b));
      assert.deepEqual((await admin(h, 'POST', '/sessions/revoke', { session: id })).json, { revoked: 0 }, 'already revoked');
      assert.deepEqual((await admin(h, 'POST', '/sessions/revoke', { session: 'AAAAAAAAAAAA' })).json, { revoked: 0 });
      // A session whose user the app named (Coatcheck-User) is listed too.
      assert.equal((await sessionsOf(h, 'carol')).length, 1);
    });

    test('revoke-all: every session that exists is revoked on the spot; a login afterwards works', async (t) => {
      const h = await start(t, choice());
      const browsers = [await login(h, 'alice'), await login(h, 'bob'), await login(h, 'carol')];
      const r = await admin(h, 'POST', '/sessions/revoke-all');
      assert.equal(r.status, 200);
      assert.ok(Math.abs(Date.parse(r.json.revokedBefore as string) - Date.now()) < 60_000);
      for (const { b } of browsers) assert.equal((await b.send('/echo')).status, 401);
      assert.equal(h.logs.events('session.replay').length, 3);
      const fresh = await login(h, 'alice');
      assert.ok(await works(fresh.b), 'a session created afterwards works');
      assert.equal((await sessionsOf(h, 'alice')).length, 1);
    });

    test('logout of scope user ends every session of the user; scope others, on success only, every other one', async (t) => {
      const h = await start(t, choice());
      const a1 = await login(h, 'alice');
      const a2 = await login(h, 'alice');
      const a3 = await login(h, 'alice');
      const bob = await login(h, 'bob');
      // others, refused by the app: nothing happens
      const refused = await a1.b.send('/account/password', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'new=wrong' });
      assert.equal(refused.status, 403);
      assert.equal((await sessionsOf(h, 'alice')).length, 3);
      // others, accepted: a2 and a3 end, a1 goes on
      const changed = await a1.b.send('/account/password', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'new=better' });
      assert.equal(changed.status, 200);
      assert.ok(await works(a1.b), 'the session that changed the password stays');
      assert.equal((await a2.b.send('/echo')).status, 401);
      assert.equal((await a3.b.send('/echo')).status, 401);
      assert.equal(h.logs.events('session.user_logout')[0]?.revoked, 2);
      // user: a1 itself and a new a4 end
      const a4 = await login(h, 'alice');
      const end = await a1.b.send('/account/sessions/end-all');
      assert.equal(end.status, 200);
      assert.equal(a1.b.ticket, undefined, 'the ticket is cleared');
      assert.equal((await a4.b.send('/echo')).status, 401);
      assert.deepEqual(await sessionsOf(h, 'alice'), []);
      assert.ok(await works(bob.b));
    });

    test('the app can ask for it: Coatcheck-Session revoke-others and revoke-user', async (t) => {
      const h = await start(t, choice());
      const a1 = await login(h, 'alice');
      const a2 = await login(h, 'alice');
      const r = await a1.b.send('/app/revoke-others');
      assert.equal(r.status, 200);
      assert.equal(r.headers['coatcheck-session'], undefined, 'the control header never reaches the client');
      assert.ok(await works(a1.b));
      assert.equal((await a2.b.send('/echo')).status, 401);
      const a3 = await login(h, 'alice');
      await a1.b.send('/app/revoke-user');
      assert.equal(a1.b.ticket, undefined);
      assert.equal((await a3.b.send('/echo')).status, 401);
      assert.deepEqual(await sessionsOf(h, 'alice'), []);
    });

    test('session.maxPerUser 2: a third login revokes the least recently used session', async (t) => {
      const h = await start(t, choice(), { session: { maxPerUser: 2 } });
      const a1 = await login(h, 'alice');
      const oldest = lastIssued(h);
      const a2 = await login(h, 'alice');
      const a3 = await login(h, 'alice');
      assert.equal((await a1.b.send('/echo')).status, 401, 'the least recently used one is gone');
      assert.ok(await works(a2.b));
      assert.ok(await works(a3.b));
      const evicted = h.logs.events('session.evicted');
      assert.deepEqual(evicted.map((l) => l.evicted), [oldest]);
      assert.equal((await sessionsOf(h, 'alice')).length, 2);
    });

    test('the token: missing or wrong → 401 with WWW-Authenticate, logged; bad bodies → 400 naming the problem; wrong method → 405', async (t) => {
      const h = await start(t, choice());
      const missing = await admin(h, 'GET', '/sessions?user=alice', undefined, null);
      assert.equal(missing.status, 401);
      assert.match(String(missing.headers['www-authenticate']), /^Bearer/);
      const wrong = await admin(h, 'POST', '/sessions/revoke-all', undefined, `${TOKEN}x`);
      assert.equal(wrong.status, 401);
      assert.equal(h.logs.events('admin.unauthorized').length, 2);
      assert.deepEqual(await sessionsOf(h, 'alice'), [], 'a refused revoke-all did nothing… and the right token works');
      const cases: Array<[string, 'GET' | 'POST', unknown, RegExp]> = [
        ['/sessions', 'GET', undefined, /"user"/],
        ['/sessions/revoke', 'POST', '{not json', /not valid JSON/],
        ['/sessions/revoke', 'POST', [1], /JSON object/],
        ['/sessions/revoke', 'POST', { user: 'a', session: 'b' }, /exactly one of "user"/],
        ['/sessions/revoke', 'POST', { user: '' }, /"user" must be a non-empty string/],
        ['/sessions/revoke', 'POST', { session: 42 }, /"session" must be a non-empty string/],
      ];
      for (const [path, method, body, message] of cases) {
        const r = await admin(h, method, path, body);
        assert.equal(r.status, 400, `${method} ${path} ${JSON.stringify(body)}`);
        assert.match(String(r.json.error), message);
      }
      const huge = await admin(h, 'POST', '/sessions/revoke', { user: 'x'.repeat(20_000) });
      assert.equal(huge.status, 413, 'a body past 16 KiB');
      assert.equal((await admin(h, 'GET', '/sessions/revoke')).status, 405);
      assert.equal((await admin(h, 'GET', '/sessions/nothing')).status, 404);
      assert.equal((await send(h.adminPort as number, '/healthz')).status, 200, 'the other endpoints need no token');
    });
  });
}

describe('users and incidents: the API off, and two instances on one Redis', () => {
  test('without admin.token the sessions API answers 404', async (t) => {
    const h = await startCoatcheck(app.origin, { ...RULES, admin: { listen: '127.0.0.1:0' } });
    t.after(() => h.close());
    const r = await admin(h, 'GET', '/sessions?user=alice');
    assert.equal(r.status, 404);
    assert.match(String(r.json.error), /admin\.token/);
  });

  test("a revocation by user on instance A logs the user out on B at the next request; B lists what A wrote", async (t) => {
    const prefix = `two${++prefixes}:`;
    const a = await start(t, { kind: 'redis', url: redis.url }, {}, prefix);
    const b = await start(t, { kind: 'redis', url: redis.url }, {}, prefix);
    const onA = await login(a, 'alice');
    const onB = await login(b, 'alice');
    const bob = await login(b, 'bob');
    assert.equal((await sessionsOf(b, 'alice')).length, 2);
    assert.deepEqual((await admin(a, 'POST', '/sessions/revoke', { user: 'alice' })).json, { revoked: 2 });
    // each browser now on the other instance
    const onBviaA = new Browser(a.port);
    onBviaA.ticket = onB.b.ticket;
    const onAviaB = new Browser(b.port);
    onAviaB.ticket = onA.b.ticket;
    assert.equal((await onBviaA.send('/echo')).status, 401);
    assert.equal((await onAviaB.send('/echo')).status, 401);
    assert.ok(await works(bob.b));
    // revoke-all on B holds on A
    const bobViaA = new Browser(a.port);
    bobViaA.ticket = bob.b.ticket;
    assert.equal((await admin(b, 'POST', '/sessions/revoke-all')).status, 200);
    assert.equal((await bobViaA.send('/echo')).status, 401);
  });

  test('a revoke-all time that is no time fails the loads (503): no session is served past it unread', async (t) => {
    const prefix = `bad${++prefixes}:`;
    const h = await start(t, { kind: 'redis', url: redis.url }, {}, prefix);
    const alice = await login(h, 'alice');
    assert.ok(await works(alice.b));
    await redis.client().set(`${prefix}revoked-before`, 'not a time');
    const seen = app.received.length;
    assert.equal((await alice.b.send('/echo')).status, 503);
    assert.equal(app.received.length, seen, 'the app was not contacted');
    await redis.client().del(`${prefix}revoked-before`);
    assert.ok(await works(alice.b), 'served again once the key is fixed');
  });

  test('a store outage answers the API 503 and revokes nothing it did not say', async (t) => {
    const server = await startRedis();
    t.after(() => server.stop());
    const h = await start(t, { kind: 'redis', url: server.url });
    await login(h, 'alice');
    await server.stop();
    const r = await admin(h, 'POST', '/sessions/revoke', { user: 'alice' });
    assert.equal(r.status, 503);
    assert.match(String(r.json.error), /unavailable/);
  });
});
