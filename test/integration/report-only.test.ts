// Report-only mode end to end (issue 16 §5): coatcheck in front of the demo "legacy" app
// (examples/demo-app.mjs; the issue names "the seed's Flask app", which this repository does not
// have: the demo app is its legacy app with a signed client-side session cookie) and a dummy app,
// on the memory store, one Redis, two instances on one Redis, a Redis that goes away, a
// sentinel-watched master and a Redis Cluster. Every cookie crosses untouched both ways; a
// cookie presented at a logout and presented again is reported once per request, never refused.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import type { Server } from 'node:http';
import { send, type Reply } from '../helpers/client.js';
import { FakeClock } from '../helpers/clock.js';
import { DEFAULT_RULES, REPO_ROOT, startCoatcheck, storeOverrides, type Harness } from '../helpers/coatcheck.js';
import type { LogLine } from '../helpers/logs.js';
import { redisClusterForSuite } from '../helpers/redis-cluster.js';
import { redisForSuite, startRedis } from '../helpers/redis-server.js';
import { startSentinelDeployment, type SentinelDeployment } from '../helpers/redis-sentinel.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { keySlot } from '../../src/store/redis/slots.js';

interface DemoApp {
  server: Server;
  port: number;
  url: string;
  close(): Promise<void>;
}
const { startDemoApp } = (await import(pathToFileURL(join(REPO_ROOT.replace(/\/$/, ''), 'examples', 'demo-app.mjs')).href)) as {
  startDemoApp(options?: { port?: number; secret?: string }): Promise<DemoApp>;
};

const REPORT_ONLY = { mode: 'report-only', ...DEFAULT_RULES } satisfies Partial<ConfigInput>;
/** Managed cookie values long enough to be fingerprinted. */
const SID = 's3ss10n-0123456789abcdefghij';
const REMEMBER = 'r3m3mb3r-ZYXWVUTSRQPONMLKJIH';
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

let demo: DemoApp;
let upstream: Upstream;

before(async () => {
  [demo, upstream] = await Promise.all([startDemoApp({ port: 0, secret: 'report-only-test-secret' }), startUpstream()]);
  upstream.route('/logout', (_req, res) => {
    res.setHeader('set-cookie', ['sid=; Path=/; Max-Age=0']);
    res.end('bye');
  });
  upstream.route('/app-signout', (_req, res) => {
    res.setHeader('coatcheck-session', 'revoke');
    res.setHeader('coatcheck-user', 'alice');
    res.end('signed out by the app');
  });
  upstream.route('/clear-remember', (_req, res) => {
    res.setHeader('set-cookie', ['remember=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT']);
    res.end('cleared');
  });
  upstream.route('/headers', (_req, res) => {
    res.setHeader('set-cookie', ['sid=new-0123456789abcdef; Path=/; HttpOnly', 'garbage', 'coatcheck=from-the-app', '_ga=GA1.2.3; Path=/']);
    res.setHeader('coatcheck-session', 'rotate');
    res.setHeader('coatcheck-user', 'bob');
    res.setHeader('x-app', 'kept');
    res.end('headers');
  });
});
after(async () => {
  await Promise.all([demo?.close(), upstream?.close()]);
});

/** The Cookie header a browser sends after these Set-Cookies (values only; a cleared cookie is gone). */
function browserCookies(setCookies: readonly string[], jar = new Map<string, string>()): Map<string, string> {
  for (const sc of setCookies) {
    const pair = sc.split(';')[0] as string;
    const eq = pair.indexOf('=');
    const name = pair.slice(0, eq);
    if (/;\s*max-age=0/i.test(sc)) jar.delete(name);
    else jar.set(name, pair.slice(eq + 1));
  }
  return jar;
}
const cookieHeader = (jar: Map<string, string>): string => [...jar].map(([n, v]) => `${n}=${v}`).join('; ');

/** A Set-Cookie with its value replaced, to compare the attributes of two logins' cookies. */
const shape = (sc: string): string => sc.replace(/^([^=]+)=[^;]*/, '$1=<value>');

const replays = (h: Harness): LogLine[] => h.logs.events('session.replay');
const cookieSeen = (r: Reply): string | undefined => (JSON.parse(r.body) as { headers: { cookie?: string } }).headers.cookie;

async function metric(h: Harness, name: string, labels = ''): Promise<number> {
  const text = await h.app.metrics.registry.metrics();
  const m = new RegExp(`^${name}${labels.replace(/[{}]/g, '\\$&')} (\\d+)$`, 'm').exec(text);
  return Number(m?.[1] ?? NaN);
}
const reportedReplays = (h: Harness) => metric(h, 'coatcheck_security_events_total', '{event="revoked",mode="report-only"}');

/** Nothing coatcheck logged holds these strings (cookie values, fingerprints). */
function assertNotLogged(h: Harness, ...secrets: string[]): void {
  const all = h.logs.raw.join('\n');
  for (const s of secrets) assert.ok(!all.includes(s), `a log line holds ${s.slice(0, 6)}…`);
}

describe('report-only in front of the demo app (memory store)', () => {
  test("the app's own cookies work as without coatcheck; a replay after logout is reported once per request and not refused", async (t) => {
    const clock = new FakeClock(Date.now());
    const h = await startCoatcheck(demo.url, REPORT_ONLY, { clock });
    t.after(() => h.close());
    const loginBody = 'user=alice&password=pw';

    // Login: the app's answer and cookies, exactly as the app gives them directly.
    const direct = await send(demo.port, '/login', { method: 'POST', headers: FORM, body: loginBody });
    const login = await send(h.port, '/login', { method: 'POST', headers: FORM, body: loginBody });
    assert.equal(login.status, 303);
    assert.equal(login.headers.location, '/profile');
    assert.deepEqual(login.setCookies.map(shape), direct.setCookies.map(shape));
    assert.deepEqual(login.setCookies.map(shape), ['demo_session=<value>; Path=/; HttpOnly; SameSite=Lax', 'demo_prefs=<value>; Path=/; SameSite=Lax']);
    assert.equal(login.headers['cache-control'], direct.headers['cache-control']);
    const jar = browserCookies(login.setCookies);
    const stolen = jar.get('demo_session') as string;
    assert.ok(stolen.length >= 16);
    const aliceCookies = cookieHeader(jar);

    // The client's cookies reach the app as they were sent: its answers are its direct answers.
    for (const path of ['/profile', '/whoami']) {
      const headers = { cookie: aliceCookies, accept: 'application/json' };
      const [viaCoatcheck, straight] = [await send(h.port, path, { headers }), await send(demo.port, path, { headers })];
      assert.equal(viaCoatcheck.status, 200);
      assert.equal(viaCoatcheck.body, straight.body);
    }
    const profile = JSON.parse((await send(h.port, '/profile', { headers: { cookie: aliceCookies, accept: 'application/json' } })).body) as { user: string; prefs: string };
    assert.deepEqual(profile, { user: 'alice', greeting: 'Hello, alice', prefs: 'theme=dark' });

    // Logout: the app's clearing Set-Cookies reach the browser verbatim; the presented cookies are recorded.
    const logoutDirect = await send(demo.port, '/logout', { headers: { cookie: aliceCookies } });
    const logout = await send(h.port, '/logout', { headers: { cookie: aliceCookies } });
    assert.equal(logout.status, 200);
    assert.deepEqual(logout.setCookies, logoutDirect.setCookies);
    const recorded = h.logs.events('report_only.logout');
    assert.equal(recorded.length, 1);
    // demo_prefs=theme=dark is 10 characters: never fingerprinted.
    assert.deepEqual(recorded[0]?.cookies, ['demo_session']);
    assert.equal(recorded[0]?.by, 'rule');
    assert.equal(replays(h).length, 0);
    assert.equal(await metric(h, 'coatcheck_report_only_fingerprints_total'), 1);

    // Whoever copied the cookie before logout replays it: the app answers as it always did, and
    // each replay is one report.
    for (let i = 1; i <= 2; i++) {
      const replay = await send(h.port, '/profile', { headers: { cookie: `demo_session=${stolen}`, accept: 'application/json' } });
      assert.equal(replay.status, 200, 'report-only never refuses');
      assert.equal((JSON.parse(replay.body) as { user: string }).user, 'alice');
      assert.equal(replays(h).length, i);
      assert.equal(await reportedReplays(h), i);
    }
    const report = replays(h)[0] as LogLine;
    assert.equal(report.mode, 'report-only');
    assert.equal(report.class, 'revoked');
    assert.equal(report.level, 'warn');
    assert.deepEqual(report.cookies, ['demo_session']);
    assert.equal(report.session, recorded[0]?.session, 'the log id ties the replay to its logout');
    assert.match(String(report.session), /^[A-Za-z0-9_-]{12}$/);
    assert.equal(report.loggedOutAt, new Date(clock.t).toISOString());
    assert.equal(await metric(h, 'coatcheck_security_events_total', '{event="revoked",mode="enforce"}'), 0);

    // Another user's cookie is no replay; a short one never is.
    const bob = browserCookies((await send(h.port, '/login', { method: 'POST', headers: FORM, body: 'user=bob&password=pw' })).setCookies);
    assert.equal((await send(h.port, '/profile', { headers: { cookie: cookieHeader(bob) } })).status, 200);
    assert.equal((await send(h.port, '/whoami', { headers: { cookie: 'demo_prefs=theme=dark' } })).status, 200);
    assert.equal(replays(h).length, 2);

    // No ticket, ever; nothing secret in the logs; what enforce would have stored, counted.
    for (const line of h.logs.lines) assert.notEqual(line.event, 'session.created');
    assert.equal(await metric(h, 'coatcheck_sessions_total', '{action="created"}'), 0);
    assertNotLogged(h, stolen, bob.get('demo_session') as string);
    // alice's login, bob's login (2 each) and the logout's 2 clearings.
    assert.equal(await metric(h, 'coatcheck_report_only_jar_cookies_total'), 6);
    // Every request but the two logins carried a managed cookie: 3 + logout + 2 replays + 2.
    assert.equal(await metric(h, 'coatcheck_report_only_managed_requests_total'), 8);
    assert.equal(h.logs.events('report_only.started').length, 1);
  });

  test('a browser that kept its cookies after logout (the app did not clear them) is reported on each request', async (t) => {
    const h = await startCoatcheck(demo.url, REPORT_ONLY);
    t.after(() => h.close());
    const jar = browserCookies((await send(h.port, '/login', { method: 'POST', headers: FORM, body: 'user=alice&password=x' })).setCookies);
    const cookies = cookieHeader(jar);
    await send(h.port, '/logout', { method: 'POST', headers: { ...FORM, cookie: cookies }, body: '' });
    // Logging out again with the logged-out cookie is a replay too (and records it once more).
    await send(h.port, '/logout', { headers: { cookie: cookies } });
    assert.equal(replays(h).length, 1);
    assert.equal(h.logs.events('report_only.logout').length, 2);
  });
});

describe('report-only with a dummy app (memory store)', () => {
  test('cookies cross untouched both ways; control headers and a ticket-named client cookie never do', async (t) => {
    const h = await startCoatcheck(upstream.origin, REPORT_ONLY);
    t.after(() => h.close());
    const sent = `a=1;b=2;  spaced=x y ; lang=en; sid=${SID}; quoted="q;r`;
    assert.equal(cookieSeen(await send(h.port, '/echo', { headers: { cookie: sent } })), sent);
    // coatcheck's own ticket (left from an enforce deployment) is never the app's.
    assert.equal(cookieSeen(await send(h.port, '/echo', { headers: { cookie: `coatcheck=v1.abc.def; a=1; sid=${SID}` } })), `a=1; sid=${SID}`);
    assert.equal(cookieSeen(await send(h.port, '/echo')), undefined);

    const r = await send(h.port, '/headers');
    assert.deepEqual(r.setCookies, ['sid=new-0123456789abcdef; Path=/; HttpOnly', 'garbage', 'coatcheck=from-the-app', '_ga=GA1.2.3; Path=/']);
    assert.equal(r.headers['coatcheck-session'], undefined);
    assert.equal(r.headers['coatcheck-user'], undefined);
    assert.equal(r.headers['x-app'], 'kept');
    assert.equal(r.headers['cache-control'], undefined);
    assert.equal(h.logs.events('report_only.logout').length, 0, 'Coatcheck-Session: rotate is no logout');
  });

  test('only managed values of 16 characters or more are fingerprinted (passthrough, short and unlisted ones are not)', async (t) => {
    const h = await startCoatcheck(upstream.origin, { ...REPORT_ONLY, session: { passthrough: ['_ga*'] } });
    t.after(() => h.close());
    const ga = 'GA1.2.1234567890.1234567890';
    await send(h.port, '/logout', { headers: { cookie: `lang=en; _ga=${ga}; sid=${SID}; token=0123456789abcde` } });
    assert.deepEqual(h.logs.events('report_only.logout')[0]?.cookies, ['sid']);
    await send(h.port, '/echo', { headers: { cookie: `lang=en; _ga=${ga}; token=0123456789abcde` } });
    assert.equal(replays(h).length, 0);
    await send(h.port, '/echo', { headers: { cookie: `lang=en; sid=${SID}` } });
    assert.equal(replays(h).length, 1);

    // With a managed list, only the names listed are the app's.
    const listed = await startCoatcheck(upstream.origin, { ...REPORT_ONLY, session: { managed: ['remember'] } });
    t.after(() => listed.close());
    await send(listed.port, '/logout', { headers: { cookie: `sid=${SID}; remember=${REMEMBER}` } });
    assert.deepEqual(listed.logs.events('report_only.logout')[0]?.cookies, ['remember']);
    await send(listed.port, '/echo', { headers: { cookie: `sid=${SID}` } });
    assert.equal(replays(listed).length, 0);
  });

  test('a request presenting several logged-out cookies is one report naming them all', async (t) => {
    const h = await startCoatcheck(upstream.origin, REPORT_ONLY);
    t.after(() => h.close());
    await send(h.port, '/logout', { headers: { cookie: `sid=${SID}; remember=${REMEMBER}` } });
    const r = await send(h.port, '/echo', { headers: { cookie: `remember=${REMEMBER}; sid=${SID}; sid=${SID}` } });
    assert.equal(r.status, 200);
    assert.equal(replays(h).length, 1);
    assert.deepEqual(replays(h)[0]?.cookies, ['remember', 'sid']);
    assert.equal(await reportedReplays(h), 1);
  });

  test('fingerprints are kept for session.absoluteTimeout, by the clock', async (t) => {
    const clock = new FakeClock(Date.now());
    const h = await startCoatcheck(upstream.origin, { ...REPORT_ONLY, session: { idleTimeout: '10m', absoluteTimeout: '1h' } }, { clock });
    t.after(() => h.close());
    await send(h.port, '/logout', { headers: { cookie: `sid=${SID}` } });
    clock.advance(3_600_000 - 1);
    await send(h.port, '/echo', { headers: { cookie: `sid=${SID}` } });
    assert.equal(replays(h).length, 1);
    clock.advance(1);
    await send(h.port, '/echo', { headers: { cookie: `sid=${SID}` } });
    assert.equal(replays(h).length, 1, 'expired: no longer reported');
  });

  test("the app's revocations record as a logout rule does: Coatcheck-Session: revoke, clearing an onCookieCleared cookie", async (t) => {
    const h = await startCoatcheck(upstream.origin, { ...REPORT_ONLY, logout: { rules: [], onCookieCleared: ['remember'] } });
    t.after(() => h.close());
    const signout = await send(h.port, '/app-signout', { headers: { cookie: `sid=${SID}` } });
    assert.equal(signout.body, 'signed out by the app');
    assert.equal(signout.headers['coatcheck-session'], undefined);
    assert.equal(signout.headers['coatcheck-user'], undefined);
    await send(h.port, '/clear-remember', { headers: { cookie: `remember=${REMEMBER}` } });
    const by = h.logs.events('report_only.logout').map((l) => [l.by, l.cookies]);
    assert.deepEqual(by, [
      ['app', ['sid']],
      ['app', ['remember']],
    ]);
    await send(h.port, '/echo', { headers: { cookie: `sid=${SID}` } });
    await send(h.port, '/echo', { headers: { cookie: `remember=${REMEMBER}` } });
    assert.equal(replays(h).length, 2);
  });

  test('a login rule changes nothing: no session, no ticket, the login is forwarded as it is', async (t) => {
    const h = await startCoatcheck(upstream.origin, REPORT_ONLY);
    t.after(() => h.close());
    upstream.route('/login', (_req, res) => {
      res.setHeader('set-cookie', `sid=${SID}; Path=/`);
      res.end('in');
    });
    const r = await send(h.port, '/login', { method: 'POST', headers: { ...FORM, cookie: 'lang=en' }, body: 'user=a' });
    assert.deepEqual(r.setCookies, [`sid=${SID}; Path=/`]);
    assert.equal(h.logs.events('session.created').length, 0);
  });
});

describe('report-only on one Redis', () => {
  const redis = redisForSuite();
  let prefixes = 0;

  async function instance(t: { after(fn: () => Promise<void>): void }, prefix: string): Promise<Harness> {
    const h = await startCoatcheck(upstream.origin, { ...REPORT_ONLY, ...storeOverrides({ kind: 'redis', url: redis().url }, prefix) });
    t.after(() => h.close());
    return h;
  }

  /** Calls of GET and MGET the server has answered so far. */
  async function loads(): Promise<number> {
    const info = await redis().client().info('commandstats');
    let n = 0;
    for (const cmd of ['get', 'mget']) n += Number(new RegExp(`^cmdstat_${cmd}:calls=(\\d+)`, 'm').exec(info)?.[1] ?? 0);
    return n;
  }

  test('logout on instance A, the replay reported on instance B; the keys hold no cookie value', async (t) => {
    const prefix = `ro${++prefixes}:`;
    const a = await instance(t, prefix);
    const b = await instance(t, prefix);
    assert.equal((await send(a.port, '/logout', { headers: { cookie: `sid=${SID}; remember=${REMEMBER}` } })).status, 200);
    const r = await send(b.port, '/echo', { headers: { cookie: `sid=${SID}` } });
    assert.equal(r.status, 200);
    assert.equal(cookieSeen(r), `sid=${SID}`);
    assert.equal(replays(b).length, 1);
    assert.deepEqual(replays(b)[0]?.cookies, ['sid']);
    assert.equal(replays(a).length, 0);
    assert.equal(replays(b)[0]?.session, a.logs.events('report_only.logout')[0]?.session);

    const keys = (await redis().client().keys(`${prefix}*`)).sort();
    assert.equal(keys.length, 2);
    for (const key of keys) {
      assert.match(key, new RegExp(`^${prefix}p:[A-Za-z0-9_-]{22}$`));
      const value = (await redis().client().get(key)) as string;
      assert.match(value, /^\d+$/);
      const ttl = await redis().client().pttl(key);
      assert.ok(ttl > 12 * 3_600_000 - 60_000 && ttl <= 12 * 3_600_000, `ttl ${ttl}`);
      assert.ok(!key.includes(SID) && !key.includes(REMEMBER));
    }
    assertNotLogged(a, SID, REMEMBER, ...keys.map((k) => k.slice(prefix.length + 2)));
    assertNotLogged(b, SID, REMEMBER, ...keys.map((k) => k.slice(prefix.length + 2)));
  });

  test('a secret rotation keeps the records: recorded under the old first secret, found under the new list', async (t) => {
    const prefix = `ro${++prefixes}:`;
    const store = storeOverrides({ kind: 'redis', url: redis().url }, prefix);
    const NEW_SECRET = 'rotated-secret-0123456789-ABCDEFGHIJKLMNOPQRSTUVWXYZ';
    const before = await startCoatcheck(upstream.origin, { ...REPORT_ONLY, ...store });
    t.after(() => before.close());
    const after = await startCoatcheck(upstream.origin, { ...REPORT_ONLY, ...store, secrets: [NEW_SECRET, before.config.secrets[0] as string] });
    t.after(() => after.close());
    await send(before.port, '/logout', { headers: { cookie: `sid=${SID}` } });
    await send(after.port, '/echo', { headers: { cookie: `sid=${SID}` } });
    assert.equal(replays(after).length, 1);
    // Logging out again under the new secret: the old record is found beside the new one's record.
    await send(after.port, '/logout', { headers: { cookie: `sid=${SID}` } });
    assert.equal(replays(after).length, 2);
    assert.equal((await redis().client().keys(`${prefix}*`)).length, 2);
  });

  test('requests without a managed value of 16 characters or more never reach the store; the others cost one load', async (t) => {
    const h = await instance(t, `ro${++prefixes}:`);
    const before = await loads();
    await send(h.port, '/echo');
    await send(h.port, '/echo', { headers: { cookie: 'lang=en; theme=dark; token=0123456789abcde' } });
    await send(h.port, '/echo', { headers: { cookie: 'coatcheck=v1.0123456789abcdefghijklmnop.x' } });
    assert.equal(await loads(), before);
    await send(h.port, '/echo', { headers: { cookie: `sid=${SID}; remember=${REMEMBER}` } });
    // Both lookups of that request went out in one MGET.
    assert.equal(await loads(), before + 1);
  });

  test('the store down: every request is still forwarded (fail-open); the failures are counted and logged', async (t) => {
    const own = await startRedis();
    t.after(() => own.stop());
    const h = await startCoatcheck(upstream.origin, { ...REPORT_ONLY, ...storeOverrides({ kind: 'redis', url: own.url }) });
    t.after(() => h.close());
    await own.kill();
    const r = await send(h.port, '/echo', { headers: { cookie: `sid=${SID}` } });
    assert.equal(r.status, 200);
    assert.equal(cookieSeen(r), `sid=${SID}`);
    const out = await send(h.port, '/logout', { headers: { cookie: `sid=${SID}` } });
    assert.equal(out.status, 200);
    assert.equal(out.body, 'bye');
    assert.equal(await metric(h, 'coatcheck_report_only_store_errors_total', '{op="find"}'), 1);
    assert.equal(await metric(h, 'coatcheck_report_only_store_errors_total', '{op="record"}'), 1);
    assert.equal(await metric(h, 'coatcheck_store_errors_total'), 0, 'nothing failed closed');
    const failed = h.logs.events('report_only.store_failed');
    assert.equal(failed.length, 1, 'rate-limited');
    assert.equal(failed[0]?.op, 'find');
    assert.equal(failed[0]?.level, 'warn');
    assertNotLogged(h, SID);
    // Ready all the same: a load balancer must not take the app away because the store went.
    assert.deepEqual(await h.app.readiness(), { ready: true, reason: 'ready (report-only: store unavailable, replays not reported)' });
  });
});

describe('report-only on a Redis Cluster', () => {
  const cluster = redisClusterForSuite();

  test('fingerprints spread over slots, one command per key or slot: recorded, found, reported once', async (t) => {
    const prefix = 'roc:';
    const h = await startCoatcheck(upstream.origin, {
      ...REPORT_ONLY,
      store: { kind: 'redis', cluster: { nodes: cluster().seeds }, prefix, timeout: '2s', connectTimeout: '10s' },
    });
    t.after(() => h.close());
    const third = 'th1rd-cookie-0123456789abcdef';
    const cookies = `sid=${SID}; remember=${REMEMBER}; third=${third}`;
    assert.equal((await send(h.port, '/logout', { headers: { cookie: cookies } })).status, 200);
    const keys: string[] = [];
    for (const node of cluster().nodes) keys.push(...((await node.client().call('KEYS', `${prefix}*`)) as string[]));
    assert.equal(keys.length, 3);
    assert.equal(new Set(keys.map(keySlot)).size, 3, 'three slots');
    const r = await send(h.port, '/echo', { headers: { cookie: cookies } });
    assert.equal(r.status, 200);
    assert.equal(replays(h).length, 1);
    assert.deepEqual(replays(h)[0]?.cookies, ['sid', 'remember', 'third']);
    assert.equal(h.logs.events('report_only.store_failed').length, 0);
  });
});

describe('report-only on a sentinel-watched master', () => {
  let d: SentinelDeployment;
  before(async () => {
    d = await startSentinelDeployment();
  });
  after(() => d?.stop());

  test('recorded on the master (and replicated), reported at the replay', async (t) => {
    const h = await startCoatcheck(upstream.origin, {
      ...REPORT_ONLY,
      store: { kind: 'redis', sentinel: { name: d.name, nodes: d.sentinelNodes() }, prefix: 'ros:', timeout: '2s', connectTimeout: '5s' },
    });
    t.after(() => h.close());
    await send(h.port, '/logout', { headers: { cookie: `sid=${SID}` } });
    const r = await send(h.port, '/echo', { headers: { cookie: `sid=${SID}` } });
    assert.equal(r.status, 200);
    assert.equal(replays(h).length, 1);
    await d.waitReplicated(d.master.port, 20_000);
    const keys = (await d.command(d.replica.port, ['KEYS', 'ros:*'])) as string[];
    assert.equal(keys.length, 1);
    assert.match(keys[0] as string, /^ros:p:[A-Za-z0-9_-]{22}$/);
  });
});
