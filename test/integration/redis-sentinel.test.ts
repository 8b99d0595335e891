// Redis Sentinel and durable revocation, end to end, on real processes (loopback only): a master,
// a replica and three sentinels (test/helpers/redis-sentinel.ts), a real coatcheck and a real
// app. coatcheck follows the master across failovers by itself, fails closed while there is
// none, and with store.replicas a logout is answered only once the replicas hold the tombstone
// (or replicaTimeout passed: then it is logged and counted), without holding up other traffic.
// Waits are on events and polled state; the only timers are deadlines and a request pacer.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { ConfigInput } from '../../src/config/schema.js';
import { StoreUnavailableError } from '../../src/errors.js';
import { RedisStore } from '../../src/store/redis.js';
import { send, type Reply } from '../helpers/client.js';
import { DEFAULT_RULES, REPO_ROOT, runCli, startCoatcheck, type Harness } from '../helpers/coatcheck.js';
import { captureLogger, type LogLine } from '../helpers/logs.js';
import { freePort } from '../helpers/redis-server.js';
import { info, pollUntil, redisCommand, startSentinelDeployment, type SentinelDeployment } from '../helpers/redis-sentinel.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const TIMEOUT_MS = 250;
/** Generous correctness bound on "fast" (a loaded 2-core machine), as in redis-store-failure.test.ts. */
const MARGIN_MS = 1500;
/** Failover, promotion, recovery: each must happen within this. */
const DEADLINE_MS = 20_000;
const REVOKE_CONNECTION = 'coatcheck-revoke';

function sentinelStore(d: SentinelDeployment, over: Record<string, unknown> = {}): Partial<ConfigInput> {
  return {
    store: { kind: 'redis', sentinel: { name: d.name, nodes: d.sentinelNodes() }, prefix: 'cc:', timeout: `${TIMEOUT_MS}ms`, connectTimeout: '2s', ...over },
  } as Partial<ConfigInput>;
}

/** The app: /login?u=NAME sets its session cookie app_user=NAME; /page answers with the app_user it received. */
async function startApp(): Promise<Upstream> {
  const app = await startUpstream();
  app.route('/login', (req, res) => {
    const u = new URL(req.url ?? '/', 'http://x').searchParams.get('u') ?? '';
    res.setHeader('set-cookie', `app_user=${u}; Path=/`);
    res.end('logged in');
  });
  app.route('/page', (req, res) => {
    res.end(`user=${appUser(req.headers.cookie) ?? '-'}`);
  });
  return app;
}

/** The app_user value in a Cookie header. */
function appUser(cookie: string | string[] | undefined): string | undefined {
  const header = Array.isArray(cookie) ? cookie.join('; ') : (cookie ?? '');
  for (const pair of header.split(';')) {
    const [k, v] = pair.trim().split('=');
    if (k === 'app_user') return v;
  }
  return undefined;
}

/** A request with a ticket (or none), as a browser that kept it would send it. */
function get(port: number, path: string, ticket: string | undefined): Promise<Reply> {
  return send(port, path, { headers: ticket ? { cookie: `coatcheck=${ticket}` } : {} });
}

/** Logs NAME in through coatcheck; its ticket. */
async function login(port: number, name: string): Promise<string> {
  const r = await send(port, `/login?u=${name}`, { method: 'POST' });
  assert.equal(r.status, 200, `login of ${name}: ${r.status} ${r.body}`);
  const sc = r.setCookies.find((c) => c.startsWith('coatcheck='));
  assert.ok(sc, `login of ${name} gave no ticket`);
  return (sc.split(';')[0] as string).slice('coatcheck='.length);
}

/** Connected clients of a node (or sentinel), each as its CLIENT LIST fields. */
async function clientList(port: number): Promise<Array<Record<string, string>>> {
  const text = String(await redisCommand(port, ['CLIENT', 'LIST']));
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map((line) => Object.fromEntries(line.trim().split(' ').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])));
}

/** How many WAITs a node has run (INFO commandstats). */
async function waitCalls(port: number): Promise<number> {
  const stats = await info(port, 'commandstats');
  return Number(/calls=(\d+)/.exec(stats.get('cmdstat_wait') ?? '')?.[1] ?? 0);
}

/** Resolves with what `p` resolves with, or fails with `what` after `ms`. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`not within ${ms}ms: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves once `cond()` holds, checked every few ms; fails after `ms`. */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > deadline) assert.fail(`timed out waiting: ${what}`);
    await pace();
  }
}

/** Paces a request loop (a throttle, not a wait for anything): a few ms between requests. */
function pace(): Promise<void> {
  return new Promise((r) => setTimeout(r, 5));
}

/** A scrape of the admin listener's /metrics: the value of one sample. */
async function metric(h: Harness, name: string): Promise<number> {
  assert.ok(h.adminPort !== undefined);
  const r = await send(h.adminPort, '/metrics');
  const line = r.body.split('\n').find((l) => l.startsWith(`${name} `));
  assert.ok(line, `${name} is not in /metrics`);
  return Number(line.slice(name.length + 1));
}

describe('redis sentinel: following the master', () => {
  let d: SentinelDeployment;
  let app: Upstream;
  before(async () => {
    d = await startSentinelDeployment();
    app = await startApp();
  });
  after(async () => {
    await app?.close();
    await d?.stop();
  });

  test('coatcheck serves through the master the sentinels name; without replicas no revocation connection is opened; the failover watch subscribes on every sentinel', async (t) => {
    const h = await startCoatcheck(app.origin, { ...DEFAULT_RULES, ...sentinelStore(d) });
    t.after(() => h.close());
    const ticket = await login(h.port, 'ann');
    const page = await get(h.port, '/page', ticket);
    assert.equal(page.status, 200);
    assert.equal(page.body, 'user=ann');
    const names = (await clientList(d.master.port)).map((c) => c.name);
    assert.ok(names.includes('coatcheck'), `no coatcheck connection on the master: ${names.join(',')}`);
    assert.ok(!names.includes(REVOKE_CONNECTION), 'replicas: 0 opened a revocation connection');
    // The watch is subscribed to +switch-master on each sentinel (one connection, one channel).
    for (const s of d.sentinels) {
      await pollUntil(
        `failover watch subscribed on sentinel ${s.port}`,
        async () => ((await clientList(s.port)).some((c) => c.name === 'coatcheck-failover-watch' && c.sub === '1') ? true : undefined),
        DEADLINE_MS,
      );
    }
    const out = await get(h.port, '/logout', ticket);
    assert.equal(out.status, 200);
    assert.equal((await get(h.port, '/page', ticket)).status, 401);
  });

  test('a master name the sentinels do not monitor fails start() with a message that says so', async (t) => {
    const { logger } = captureLogger();
    const store = new RedisStore({
      target: { mode: 'sentinel', name: 'nosuchmaster', sentinels: d.sentinels.map((s) => ({ host: '127.0.0.1', port: s.port })), tls: false, db: 0 },
      prefix: 'x:',
      timeout: TIMEOUT_MS,
      connectTimeout: 600,
      logger,
    });
    t.after(() => store.close());
    const err = await store.start().then(
      () => assert.fail('start() succeeded'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof StoreUnavailableError, String(err));
    assert.match(err.message, /monitors no master named "nosuchmaster"/);
  });

  test('a write that lands on a replica fails cleanly (READONLY, 503) and the connection is rebuilt; reads go on', async (t) => {
    // A store pointed straight at the replica: as a connection to a demoted master would be.
    const { logger, logs } = captureLogger();
    const store = new RedisStore({ target: { mode: 'single', url: `redis://127.0.0.1:${d.replica.port}` }, prefix: 'ro:', timeout: TIMEOUT_MS, connectTimeout: 2000, logger });
    t.after(() => store.close());
    await store.start();
    const idOf = async () => (await clientList(d.replica.port)).find((c) => c.name === 'coatcheck')?.id;
    const before = await idOf();
    assert.ok(before);
    const err = await store.create('k', Buffer.from('x'), 60_000).then(
      () => assert.fail('a write on a replica succeeded'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof StoreUnavailableError, String(err));
    assert.match(err.message, /READONLY/);
    // The connection is dropped and made again (to whatever the address is now).
    await pollUntil('a new connection', async () => ((await idOf()) !== undefined && (await idOf()) !== before ? true : undefined), DEADLINE_MS);
    await pollUntil('store ready again', async () => (store.available() ? true : undefined), DEADLINE_MS);
    assert.deepEqual(await store.load('k'), { state: 'none' });
    assert.ok(logs.lines.some((l) => /connection lost/.test(l.msg ?? '')), 'the reconnect was logged');
  });

  test('a manual failover: coatcheck moves to the new master as the sentinels announce it, before the old one is demoted, and a logout after it is final', async (t) => {
    const h = await startCoatcheck(app.origin, { ...DEFAULT_RULES, ...sentinelStore(d) });
    t.after(() => h.close());
    const ticket = await login(h.port, 'bob');
    const oldMaster = d.master.port;
    await redisCommand(d.sentinels[0]!.port, ['SENTINEL', 'FAILOVER', d.name]);
    const moved = await within(h.logs.waitFor((l) => l.event === 'store.failover'), DEADLINE_MS, 'coatcheck logs store.failover');
    const newMaster = await d.waitForMaster(oldMaster, DEADLINE_MS);
    assert.equal(moved.master, `127.0.0.1:${newMaster}`);
    // The old master still answers as a master (Sentinel demotes it only seconds later): only
    // the watch moved the connection, and with it every write after this point.
    assert.equal((await info(oldMaster, 'replication')).get('role'), 'master', 'the old master was demoted already: this test proves nothing');
    await pollUntil('coatcheck serves again', async () => ((await get(h.port, '/page', ticket)).status === 200 ? true : undefined), DEADLINE_MS);
    assert.ok(!(await clientList(oldMaster)).some((c) => c.name === 'coatcheck'), 'a coatcheck connection stayed on the old master');
    assert.ok((await clientList(newMaster)).some((c) => c.name === 'coatcheck'));
    assert.equal((await get(h.port, '/logout', ticket)).status, 200);
    // Another instance, started now, finds the revocation on the new master.
    const fresh = await startCoatcheck(app.origin, { ...DEFAULT_RULES, ...sentinelStore(d) });
    t.after(() => fresh.close());
    assert.equal((await get(fresh.port, '/page', ticket)).status, 401);

    // The new master has no replica yet: a store that waits for one says so at start.
    const { logger, logs } = captureLogger();
    const store = new RedisStore({
      target: { mode: 'sentinel', name: d.name, sentinels: d.sentinels.map((s) => ({ host: '127.0.0.1', port: s.port })), tls: false, db: 0 },
      prefix: 'cc:',
      timeout: TIMEOUT_MS,
      connectTimeout: 2000,
      replicas: 1,
      replicaTimeout: 100,
      logger,
    });
    t.after(() => store.close());
    await store.start();
    const warned = logs.lines.find((l) => l.event === 'store.replicas_missing');
    assert.ok(warned, 'no store.replicas_missing warning');
    assert.equal(warned.level, 'warn');
    assert.equal(warned.connected, 0);
  });
});

describe('redis sentinel: durable revocation (store.replicas: 1)', () => {
  let d: SentinelDeployment;
  let app: Upstream;
  before(async () => {
    d = await startSentinelDeployment();
    app = await startApp();
  });
  after(async () => {
    await app?.close();
    await d?.stop();
  });

  test('the ACL of docs/security.md allows the revocations and their WAITs', async (t) => {
    const doc = readFileSync(join(REPO_ROOT, 'docs/security.md'), 'utf8');
    const block = /```\s*\n\s*(ACL SETUSER coatcheck[^`]*)```/.exec(doc)?.[1];
    assert.ok(block, 'docs/security.md has an ACL SETUSER block');
    const password = 'acl-test-password-0123456789';
    const args = block.trim().split(/\s+/).slice(2).map((a) => (a.startsWith('>') ? `>${password}` : a));
    await redisCommand(d.master.port, ['ACL', 'SETUSER', ...args]);
    const { logger, logs } = captureLogger();
    const store = new RedisStore({
      target: { mode: 'sentinel', name: d.name, sentinels: d.sentinels.map((s) => ({ host: '127.0.0.1', port: s.port })), tls: false, db: 0, username: 'coatcheck', password },
      prefix: 'coatcheck:',
      timeout: 2000,
      connectTimeout: 5000,
      replicas: 1,
      replicaTimeout: 2000,
      logger,
    });
    t.after(() => store.close());
    await store.start();
    const data = Buffer.from('sealed');
    assert.equal(await store.create('a1', data, 60_000), true);
    assert.equal(await store.rotate('a1', 1, 60_000, 'a2', data, 60_000, undefined, { logId: 'acl-test' }), 'ok');
    assert.equal(await store.revoke('a2', 60_000, { logId: 'acl-test' }), true);
    assert.equal(await store.revokeFamily('fam', 'a3', 60_000), 0);
    assert.equal((await store.load('a2')).state, 'revoked');
    // The replica is up: every WAIT was answered in time, nothing to warn about.
    assert.deepEqual(logs.warnings(), []);
    assert.equal(store.stats().revokeNotReplicated, 0);
  });

  test('with the replica frozen, concurrent logouts share WAITs and are answered after replicaTimeout, logged and counted; loads and logins meanwhile are served at once', async (t) => {
    const replicaTimeout = 800;
    const h = await startCoatcheck(app.origin, {
      ...DEFAULT_RULES,
      ...sentinelStore(d, { replicas: 1, replicaTimeout: `${replicaTimeout}ms` }),
      admin: { listen: '127.0.0.1:0' },
    });
    t.after(() => h.close());
    assert.equal((await clientList(d.master.port)).filter((c) => c.name === REVOKE_CONNECTION).length, 1, 'one revocation connection');

    const names = ['u0', 'u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7'];
    const tickets = new Map<string, string>();
    for (const n of [...names, 'reader']) tickets.set(n, await login(h.port, n));

    // Replica up: the logout is replicated, nothing is logged.
    assert.equal((await get(h.port, '/logout', tickets.get('u0'))).status, 200);
    assert.equal(h.logs.events('store.revoke_not_replicated').length, 0);
    assert.equal(await metric(h, 'coatcheck_store_revoke_not_replicated_total'), 0);

    const waitsBefore = await waitCalls(d.master.port);
    const linesBefore = h.logs.lines.length;
    await d.replica.pause();
    t.after(() => d.replica.resume());
    let answered = 0;
    const outs = names.slice(1, 6);
    const logouts = outs.map(async (n) => {
      const t0 = performance.now();
      const r = await get(h.port, '/logout', tickets.get(n));
      answered += 1;
      return { r, ms: performance.now() - t0 };
    });
    // The revocation connection is blocked in a WAIT on the master…
    await pollUntil(
      'the revocation connection blocked in WAIT',
      async () => ((await clientList(d.master.port)).some((c) => c.name === REVOKE_CONNECTION && c.cmd === 'wait' && c.flags?.includes('b')) ? true : undefined),
      DEADLINE_MS,
    );
    // …while loads and a login on the same coatcheck are answered, every logout still waiting.
    for (let i = 0; i < 5; i++) {
      const r = await get(h.port, `/page?n=${i}`, tickets.get('reader'));
      assert.equal(r.status, 200);
      assert.equal(r.body, 'user=reader');
      assert.equal(answered, 0, 'a load waited for a logout');
    }
    tickets.set('late', await login(h.port, 'late'));
    assert.equal(answered, 0, 'a login waited for a logout');

    const results = await Promise.all(logouts);
    for (const { r, ms } of results) {
      assert.equal(r.status, 200, 'the logout is answered (the master holds the tombstone)');
      assert.ok(r.setCookies.some((c) => c.startsWith('coatcheck=;')), 'the ticket is cleared');
      // WAIT returned on its timeout: no logout came back before it.
      assert.ok(ms >= replicaTimeout * 0.9, `a logout answered after ${ms}ms, before replicaTimeout`);
    }
    // One WAIT per batch: the writes that came while a WAIT was in flight shared the next one.
    const waits = (await waitCalls(d.master.port)) - waitsBefore;
    assert.ok(waits >= 1 && waits <= 2, `${outs.length} logouts took ${waits} WAITs`);
    const slowest = Math.max(...results.map((x) => x.ms));
    assert.ok(slowest < outs.length * replicaTimeout, `${outs.length} logouts took ${slowest}ms: one WAIT after another`);

    // One warning per revocation, naming the session by its log id; the counter moved as much.
    const lines = h.logs.lines.slice(linesBefore);
    const warned = lines.filter((l) => l.event === 'store.revoke_not_replicated');
    const loggedOut = lines.filter((l) => l.event === 'session.logout').map((l) => l.session);
    assert.equal(warned.length, outs.length);
    for (const w of warned) {
      assert.equal(w.level, 'warn');
      assert.equal(w.op, 'revokeFamily');
      assert.equal(w.acknowledged, 0);
      assert.match(String(w.session), /^[A-Za-z0-9_-]{6,32}$/);
    }
    assert.deepEqual(new Set(warned.map((w) => w.session)), new Set(loggedOut));
    assert.equal(new Set(loggedOut).size, outs.length);
    assert.equal(await metric(h, 'coatcheck_store_revoke_not_replicated_total'), outs.length);
    // Nothing secret in any line.
    const text = h.logs.raw.join('\n');
    for (const ticket of tickets.values()) {
      assert.ok(!text.includes(ticket), 'a ticket is in the logs');
      assert.ok(!text.includes(ticket.split('.')[1] as string), 'a session id is in the logs');
    }

    await d.replica.resume();
    for (const n of outs) assert.equal((await get(h.port, '/page', tickets.get(n))).status, 401);

    // A script the master forgot (SCRIPT FLUSH) is sent again after its NOSCRIPT reply: the WAIT
    // must come after that second send, not between the two (where, every earlier write being
    // acknowledged, it would return at once and count a write it never saw).
    await d.waitReplicated(d.master.port, DEADLINE_MS);
    await d.replica.pause();
    await redisCommand(d.master.port, ['SCRIPT', 'FLUSH']);
    const t0 = performance.now();
    assert.equal((await get(h.port, '/logout', tickets.get('u6'))).status, 200);
    assert.ok(performance.now() - t0 >= replicaTimeout * 0.9, 'the WAIT did not wait for the write sent again');
    assert.equal(h.logs.events('store.revoke_not_replicated').length, outs.length + 1);

    // A WAIT cut off (its connection killed) confirms nothing: that logout fails closed, 503.
    const cut = get(h.port, '/logout', tickets.get('u7'));
    const blocked = await pollUntil(
      'the revocation connection blocked in WAIT',
      async () => (await clientList(d.master.port)).find((c) => c.name === REVOKE_CONNECTION && c.cmd === 'wait' && c.flags?.includes('b')),
      DEADLINE_MS,
    );
    await redisCommand(d.master.port, ['CLIENT', 'KILL', 'ID', blocked.id as string]);
    assert.equal((await cut).status, 503);
    assert.equal(h.logs.events('store.revoke_not_replicated').length, outs.length + 1, 'a failed WAIT is no "not replicated"');

    await d.replica.resume();
    assert.equal((await get(h.port, '/page', tickets.get('u6'))).status, 401);
    assert.equal((await get(h.port, '/page', tickets.get('late'))).body, 'user=late');
  });

  test('kill -9 of the master under load: no acknowledged logout is lost, live sessions keep working, nothing unchecked reaches the app', async (t) => {
    const h = await startCoatcheck(app.origin, { ...DEFAULT_RULES, ...sentinelStore(d, { replicas: 1, replicaTimeout: '1s' }) });
    t.after(() => h.close());
    const names = Array.from({ length: 16 }, (_, i) => `k${i}`);
    const tickets = new Map<string, string>();
    await Promise.all(names.map(async (n) => tickets.set(n, await login(h.port, n))));
    const out = names.slice(0, 8);
    const live = names.slice(8);
    // Everything so far is on the replica too (sessions are written without WAIT).
    await d.waitReplicated(d.master.port, DEADLINE_MS);
    const oldMaster = d.master.port;
    const appSeen = app.received.length;

    interface Rec {
      name: string;
      kind: 'live' | 'logout' | 'after';
      status: number;
      ms: number;
      body: string;
    }
    const recs: Rec[] = [];
    let stop = false;
    const lastOk = new Map<string, number>();
    const timed = async (name: string, kind: Rec['kind'], path: string): Promise<Rec> => {
      const t0 = performance.now();
      const r = await get(h.port, path, tickets.get(name));
      const rec = { name, kind, status: r.status, ms: performance.now() - t0, body: r.body };
      recs.push(rec);
      return rec;
    };
    let n = 0;
    const liveLoops = live.map(async (name) => {
      while (!stop) {
        const r = await timed(name, 'live', `/page?u=${name}&n=${n++}`);
        if (r.status === 200 && r.body === `user=${name}`) lastOk.set(name, performance.now());
        await pace();
      }
    });
    /** Logs out until it is done (200, or 401 when an earlier attempt revoked it after all), then replays the old ticket until the end. */
    const logoutAndReplay = async (name: string): Promise<void> => {
      for (;;) {
        const r = await timed(name, 'logout', `/logout?u=${name}`);
        if (r.status === 200 || r.status === 401) break;
        assert.equal(r.status, 503, `logout of ${name}: ${r.status} ${r.body}`);
        await pace();
      }
      while (!stop) {
        await timed(name, 'after', `/page?u=${name}&phase=after&n=${n++}`);
        await pace();
      }
    };
    const outLoops: Promise<void>[] = [];
    // Half of the logouts with the master up, one after another, while the live users browse…
    for (const name of out.slice(0, 4)) {
      const loop = logoutAndReplay(name);
      outLoops.push(loop);
      await until(() => recs.some((r) => r.name === name && r.kind === 'logout' && r.status === 200), DEADLINE_MS, `logout of ${name}`);
    }
    const linesAtKill = h.logs.lines.length;
    // …then the other half, and the master is killed while they and the live requests are in flight.
    for (const name of out.slice(4)) outLoops.push(logoutAndReplay(name));
    await d.master.kill();
    const newMaster = await d.waitForMaster(oldMaster, DEADLINE_MS);
    const promoted = performance.now();
    await until(() => live.every((name) => (lastOk.get(name) ?? 0) > promoted), DEADLINE_MS, 'every live user served after the promotion');
    await until(() => out.every((name) => recs.some((r) => r.name === name && r.kind === 'after')), DEADLINE_MS, 'every logout done');
    stop = true;
    await Promise.all([...liveLoops, ...outLoops]);

    // The outage was real, and it failed closed, fast.
    const failed = recs.filter((r) => r.status === 503);
    t.diagnostic(
      `${recs.length} requests, ${failed.length} answered 503; logouts: ${recs.filter((r) => r.kind === 'logout' && r.status === 200).length} acknowledged, ` +
        `${recs.filter((r) => r.kind === 'logout' && r.status === 503).length} refused (503) and retried, ${recs.filter((r) => r.kind === 'logout' && r.status === 401).length} found revoked on retry`,
    );
    assert.ok(failed.length > 0, 'no request failed: the master was not killed under load');
    for (const r of failed) assert.ok(r.ms < TIMEOUT_MS + MARGIN_MS, `a 503 took ${r.ms}ms`);
    for (const r of recs) {
      if (r.kind === 'live') assert.ok((r.status === 200 && r.body === `user=${r.name}`) || r.status === 503, `live ${r.name}: ${r.status} ${r.body}`);
      if (r.kind === 'after') assert.ok(r.status === 401 || r.status === 503, `a logged-out ticket of ${r.name} got ${r.status}`);
    }
    // The logouts acknowledged before the kill were all replicated (no warning before it).
    assert.equal(h.logs.lines.slice(0, linesAtKill).filter((l: LogLine) => l.event === 'store.revoke_not_replicated').length, 0);

    // After the failover, on this instance and on one started now: every logged-out ticket is
    // rejected, every live one works.
    const fresh = await startCoatcheck(app.origin, { ...DEFAULT_RULES, ...sentinelStore(d, { replicas: 1, replicaTimeout: '1s' }) });
    t.after(() => fresh.close());
    for (const port of [h.port, fresh.port]) {
      for (const name of out) assert.equal((await get(port, `/page?u=${name}&phase=check`, tickets.get(name))).status, 401, `${name} logged out, on ${port}`);
      for (const name of live) {
        const r = await get(port, `/page?u=${name}&phase=check`, tickets.get(name));
        assert.equal(r.status, 200, `${name} live, on ${port}`);
        assert.equal(r.body, `user=${name}`);
      }
    }
    assert.ok((await clientList(newMaster)).some((c) => c.name === 'coatcheck'));

    // The app saw only checked requests: each with its own user's cookie from the jar, no client
    // cookie, and no request of a ticket after its logout was answered.
    for (const rec of app.received.slice(appSeen)) {
      const url = new URL(rec.url, 'http://x');
      assert.ok(url.searchParams.get('phase') !== 'after', `a request after logout reached the app: ${rec.url}`);
      const cookie = rec.headers.cookie;
      assert.ok(!String(cookie ?? '').includes('coatcheck='), 'the ticket reached the app');
      if (url.pathname === '/page') assert.equal(appUser(cookie), url.searchParams.get('u'), `${rec.url} reached the app with cookie ${String(cookie)}`);
    }
  });
});

describe('redis sentinel: start-up', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'coatcheck-sentinel-cli-'));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('with every sentinel down the CLI exits 1 and says so', async () => {
    const ports = [await freePort(), await freePort(), await freePort()];
    const file = join(dir, 'sentinel-down.yaml');
    await writeFile(
      file,
      [
        'listen: "127.0.0.1:0"',
        'upstream: "http://127.0.0.1:9"',
        'secrets: ["test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"]',
        'logout: [{ path: /logout }]',
        'store:',
        '  kind: redis',
        '  sentinel:',
        '    name: mymaster',
        `    nodes: [${ports.map((p) => `"127.0.0.1:${p}"`).join(', ')}]`,
        '  connectTimeout: 500ms',
        '',
      ].join('\n'),
    );
    const cli = runCli(['--config', file]);
    const closed = once(cli.proc, 'close');
    const code = await within(cli.exited, DEADLINE_MS, 'coatcheck did not exit');
    await within(closed, DEADLINE_MS, 'stdio never closed');
    assert.equal(code, 1);
    const fatal = cli.stdout.lines.find((l) => l.level === 'fatal');
    assert.ok(fatal, `no fatal line:\n${cli.stdout.raw.join('\n')}\n${cli.stderr()}`);
    const msg = String(fatal.msg);
    assert.match(msg, /could not start/);
    assert.match(msg, /sentinel master "mymaster"/);
    assert.match(msg, /none of the sentinels answered/);
    for (const p of ports) assert.match(msg, new RegExp(`127\\.0\\.0\\.1:${p}`));
    assert.doesNotMatch(msg, /Retrying/);
    assert.ok(!cli.stdout.lines.some((l) => l.msg === 'listening'), 'it said "listening" anyway');
  });
});
