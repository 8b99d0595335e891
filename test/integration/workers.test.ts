// `workers: N`, run as a real process (dist/cli.js, so `npm run build` first) on a real
// redis-server: a primary and N workers sharing the listener. Which worker served a request is
// read from the access log (each worker's lines carry its pid), never from a header; the totals
// from the primary's /metrics. Waits on log lines and exits, never on sleeps.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { send, type Reply } from '../helpers/client.js';
import { killIfRunning, REPO_ROOT, runCli, within, type CliProcess } from '../helpers/coatcheck.js';
import type { LogLine } from '../helpers/logs.js';
import { freePort, startRedis, type RedisServer } from '../helpers/redis-server.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const CLI = join(REPO_ROOT, 'dist', 'cli.js');
const SECRET = 'Unique-Secret-Value-9f8e7d6c5b4a39281706-workers';



function assertNoStack(text: string, what: string): void {
  assert.ok(!/\s{2,}at \S/.test(text.replace(/\\n/g, '\n')), `${what} holds a stack trace:\n${text}`);
  assert.ok(!/"stack":"[^"]/.test(text), `${what} holds a stack trace:\n${text}`);
}

/** The value of one series in a Prometheus text exposition. */
function metric(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

const isPrimary = (l: LogLine) => l.role === 'primary';

describe('workers (several processes on one listener)', () => {
  let dir: string;
  let redis: RedisServer;
  let up: Upstream;
  let files = 0;
  before(async () => {
    assert.ok(existsSync(CLI), `${CLI} is missing: run "npm run build" first`);
    dir = await mkdtemp(join(tmpdir(), 'coatcheck-workers-'));
    redis = await startRedis();
    up = await startUpstream();
  });
  after(async () => {
    await up?.close();
    await redis?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function configFile(lines: string[]): Promise<string> {
    const file = join(dir, `workers-${++files}.yaml`);
    await writeFile(
      file,
      [
        'listen: "127.0.0.1:0"',
        `upstream: "${up.origin}"`,
        'secrets:',
        `  - "${SECRET}"`,
        'cookie: { name: coatcheck, secure: false }',
        'logout: [{ path: /logout }]',
        'log: { level: info }',
        ...lines,
        '',
      ].join('\n'),
    );
    return file;
  }

  /** Two workers on the suite's Redis (a key prefix of their own), the admin listener on a free port. */
  const twoWorkers = (extra: string[] = []) =>
    configFile(['workers: 2', `store: { kind: redis, url: "${redis.url}", prefix: "w${files}:", connectTimeout: 2s }`, 'admin: { listen: "127.0.0.1:0" }', ...extra]);

  /** Starts the CLI and waits for the primary's "listening" line. */
  async function start(file: string, t: { after(fn: () => void): void }): Promise<{ cli: CliProcess; port: number; admin: number; workerPids: number[] }> {
    const cli = runCli(['--config', file]);
    t.after(() => killIfRunning(cli));
    const listening = await within(
      cli.stdout.waitFor((l) => l.msg === 'listening'),
      `no "listening" line; stdout:\n${cli.stdout.raw.join('\n')}\nstderr:\n${cli.stderr()}`,
    );
    assert.ok(isPrimary(listening), 'with several workers the primary says "listening", once all are');
    assert.equal(listening.workers, 2);
    const workerPids = cli.stdout.events('worker.started').map((l) => l.pid as number);
    assert.equal(workerPids.length, 2, 'one start line per worker');
    assert.equal(cli.stdout.lines.filter((l) => l.event === 'worker.listening').length, 2, 'both workers listen before the primary says so');
    return { cli, port: listening.port as number, admin: (listening.admin as { port: number }).port, workerPids };
  }

  /** Sends requests to `paths` one after another (a connection each); resolves with the pids that served them, by the access log. */
  async function serve(cli: CliProcess, port: number, paths: string[]): Promise<number[]> {
    const replies: Reply[] = [];
    for (const p of paths) replies.push(await send(port, p));
    for (const r of replies) assert.equal(r.status, 200, r.body);
    const lines = await within(
      Promise.all(paths.map((p) => cli.stdout.waitFor((l) => l.event === 'access' && l.path === p))),
      'an access line is missing',
    );
    return lines.map((l) => l.pid as number);
  }

  test('workers: 2 — requests are served by both workers; /healthz, /readyz and /metrics (the sum of both) on the primary', { timeout: 90_000 }, async (t) => {
    const { cli, port, admin, workerPids } = await start(await twoWorkers(), t);
    const paths = Array.from({ length: 10 }, (_, i) => `/served/${i}`);
    const pids = await serve(cli, port, paths);
    assert.deepEqual(new Set(pids), new Set(workerPids), 'both workers served, and nothing else did');
    for (const l of cli.stdout.lines.filter((x) => x.event === 'access')) assert.ok(!isPrimary(l), 'the primary forwards nothing');

    assert.equal((await send(admin, '/healthz')).status, 200);
    const ready = await send(admin, '/readyz');
    assert.equal(ready.status, 200);
    assert.equal(ready.body, 'ready: 2 of 2 workers\n');
    const m = await send(admin, '/metrics');
    assert.equal(m.status, 200);
    assert.equal(metric(m.body, 'coatcheck_requests_total{status="200"}'), 10, `the sum over both workers:\n${m.body}`);
    assert.equal(metric(m.body, 'coatcheck_request_duration_seconds_count'), 10);
    assert.equal(metric(m.body, 'coatcheck_workers{state="listening"}'), 2);
    assert.equal(metric(m.body, 'coatcheck_worker_restarts_total'), 0);
    assert.ok((metric(m.body, 'coatcheck_process_cpu_seconds_total') ?? 0) > 0, 'the workers\' process metrics too');

    cli.proc.kill('SIGTERM');
    assert.equal(await within(cli.exited, 'no exit after SIGTERM'), 0);
    assertNoStack(cli.stderr(), 'stderr');
  });

  test('the sessions API on the primary (admin.token): lists and revokes what the workers wrote', { timeout: 90_000 }, async (t) => {
    const token = 'workers-admin-token-0123456789abcdefghij';
    const file = await configFile([
      'workers: 2',
      `store: { kind: redis, url: "${redis.url}", prefix: "w${files}:", connectTimeout: 2s }`,
      `admin: { listen: "127.0.0.1:0", token: "${token}" }`,
      'login: [{ path: /login, methods: [POST], user: { formField: username } }]',
    ]);
    const { cli, port, admin } = await start(file, t);
    up.route('/login', (_req, res: ServerResponse) => {
      res.setHeader('set-cookie', 'app_session=w; Path=/');
      res.end('in');
    });
    const tickets: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await send(port, '/login', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'username=wendy&password=x' });
      assert.equal(r.status, 200);
      tickets.push(/coatcheck=([^;]+)/.exec(r.setCookies.join('\n'))?.[1] as string);
    }
    const auth = { authorization: `Bearer ${token}` };
    const listed = await send(admin, '/sessions?user=wendy', { headers: auth });
    assert.equal(listed.status, 200, listed.body);
    assert.equal((JSON.parse(listed.body) as { sessions: unknown[] }).sessions.length, 4);
    assert.equal((await send(admin, '/sessions?user=wendy')).status, 401, 'no token, no answer');
    const revoked = await send(admin, '/sessions/revoke', { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: '{"user":"wendy"}' });
    assert.deepEqual(JSON.parse(revoked.body), { revoked: 4 });
    for (const ticket of tickets) assert.equal((await send(port, '/echo', { headers: { cookie: `coatcheck=${ticket}` } })).status, 401);
    await within(cli.stdout.waitFor((l) => l.event === 'admin.sessions_revoked' && isPrimary(l)), 'no audit line from the primary');
    cli.proc.kill('SIGTERM');
    assert.equal(await within(cli.exited, 'no exit after SIGTERM'), 0);
  });

  test('kill -9 one worker: logged, started again, the service goes on, and the totals keep what it served', { timeout: 90_000 }, async (t) => {
    const { cli, port, admin, workerPids } = await start(await twoWorkers(), t);
    const served = await serve(cli, port, ['/k/0', '/k/1', '/k/2', '/k/3']);
    assert.equal(new Set(served).size, 2);
    assert.equal(metric((await send(admin, '/metrics')).body, 'coatcheck_requests_total{status="200"}'), 4);

    const victim = workerPids[0] as number;
    process.kill(victim, 'SIGKILL');
    const died = await within(cli.stdout.waitFor((l) => l.event === 'worker.died' && l.pid === victim), 'the death is not logged');
    assert.ok(isPrimary(died));
    assert.equal(died.level, 'error');
    assert.equal(died.signal, 'SIGKILL');
    assert.equal(died.failedStart, false);
    assert.equal(died.restartInMs, 100);
    assert.match(String(died.msg), new RegExp(`^worker 1 \\(pid ${victim}\\) died: killed by SIGKILL; starting it again in 100 ms$`));
    const restarted = await within(cli.stdout.waitFor((l) => l.event === 'worker.started' && l.restart === true), 'no restart');
    assert.equal(restarted.worker, 1, 'the same slot');
    const fresh = restarted.pid as number;
    assert.ok(!workerPids.includes(fresh));
    await within(cli.stdout.waitFor((l) => l.event === 'worker.listening' && l.pid === fresh), 'the new worker never listened');

    const after = await serve(cli, port, ['/k/4', '/k/5', '/k/6', '/k/7', '/k/8', '/k/9']);
    assert.deepEqual(new Set(after), new Set([fresh, workerPids[1]]), 'the survivor and the new worker serve');
    const m = (await send(admin, '/metrics')).body;
    assert.equal(metric(m, 'coatcheck_requests_total{status="200"}'), 10, 'the dead worker\'s 4 (or its share of them) still count: totals never drop');
    assert.equal(metric(m, 'coatcheck_worker_restarts_total'), 1);
    assert.equal(metric(m, 'coatcheck_workers{state="listening"}'), 2);
    assert.equal((await send(admin, '/readyz')).body, 'ready: 2 of 2 workers\n');

    cli.proc.kill('SIGTERM');
    assert.equal(await within(cli.exited, 'no exit after SIGTERM'), 0);
  });

  test('SIGTERM to the primary: every worker drains, a slow in-flight request finishes, then exit 0', { timeout: 90_000 }, async (t) => {
    const { cli, port, admin } = await start(await twoWorkers(), t);
    let release!: (res: ServerResponse) => void;
    const arrived = new Promise<ServerResponse>((resolve) => (release = resolve));
    up.route('/slow-drain', (_req, res) => release(res));
    const slow = send(port, '/slow-drain');
    const appRes = await within(arrived, 'the slow request never reached the app');

    cli.proc.kill('SIGTERM');
    await within(cli.stdout.waitFor((l) => isPrimary(l) && l.event === 'shutdown'), 'the primary did not log its shutdown');
    // The idle worker is done at once; the busy one waits for its request, and the primary for it.
    const idleStopped = await within(cli.stdout.waitFor((l) => l.event === 'stopped' && !isPrimary(l)), 'no worker stopped');
    const shutdowns = await within(
      Promise.all([1, 2].map((n) => cli.stdout.waitFor((l) => l.event === 'shutdown' && l.worker === n))),
      'a worker did not start draining',
    );
    assert.equal(shutdowns.length, 2);
    assert.equal(cli.proc.exitCode, null, 'the primary exited with a request in flight');
    const readyz = await send(admin, '/readyz');
    assert.equal(readyz.status, 503);
    assert.equal(readyz.body, 'draining\n');

    appRes.end('slow but done');
    const reply = await within(slow, 'the in-flight request never finished');
    assert.equal(reply.status, 200);
    assert.equal(reply.body, 'slow but done');
    assert.equal(await within(cli.exited, 'no exit after the drain'), 0);
    const busyStopped = cli.stdout.lines.filter((l) => l.event === 'stopped' && !isPrimary(l) && l.pid !== idleStopped.pid);
    assert.equal(busyStopped.length, 1, 'the busy worker stopped after its request');
    const primaryStopped = cli.stdout.lines.find((l) => isPrimary(l) && l.event === 'stopped');
    assert.equal(primaryStopped?.code, 0);
    assertNoStack(cli.stderr(), 'stderr');
  });

  test('workers: 2 with Redis unreachable at start: exit 1 with a clear message, no restart', { timeout: 90_000 }, async () => {
    const nobody = await freePort();
    const file = await configFile(['workers: 2', `store: { kind: redis, url: "redis://127.0.0.1:${nobody}/0", connectTimeout: 1s }`, 'admin: { listen: "127.0.0.1:0" }']);
    const cli = runCli(['--config', file]);
    const code = await within(cli.exited, `no exit; stdout:\n${cli.stdout.raw.join('\n')}`);
    assert.equal(code, 1, `stdout:\n${cli.stdout.raw.join('\n')}\nstderr:\n${cli.stderr()}`);
    const fatal = cli.stdout.lines.find((l) => isPrimary(l) && l.level === 'fatal');
    assert.ok(fatal, `no fatal line from the primary:\n${cli.stdout.raw.join('\n')}`);
    assert.equal(fatal.event, 'start.failed');
    assert.match(String(fatal.msg), new RegExp(`^could not start: worker [12] \\(pid \\d+\\): redis at 127\\.0\\.0\\.1:${nobody} is not reachable`));
    const starts = cli.stdout.events('worker.started');
    assert.equal(starts.length, 2, 'each worker started once');
    assert.ok(starts.every((l) => l.restart === false), 'and never again');
    assert.ok(!cli.stdout.lines.some((l) => l.msg === 'listening'), 'it said "listening" anyway');
    assert.ok(!cli.stdout.lines.some((l) => l.event === 'worker.stop_failed'), 'a worker that could not start is not also reported as not stopping cleanly');
    assertNoStack(cli.stdout.raw.join('\n'), 'stdout');
    assertNoStack(cli.stderr(), 'stderr');
  });

  test('Redis gone and every worker dead: restarted with growing delays, then the primary gives up with exit 1', { timeout: 90_000 }, async (t) => {
    const ownRedis = await startRedis();
    t.after(() => ownRedis.stop());
    const file = await configFile(['workers: 2', `store: { kind: redis, url: "${ownRedis.url}", connectTimeout: 300ms }`]);
    const cli = runCli(['--config', file]);
    t.after(() => killIfRunning(cli));
    await within(cli.stdout.waitFor((l) => l.msg === 'listening'), `no "listening" line:\n${cli.stdout.raw.join('\n')}`);
    await ownRedis.kill();
    for (const l of cli.stdout.events('worker.started')) process.kill(l.pid as number, 'SIGKILL');

    const code = await within(cli.exited, `the primary never gave up:\n${cli.stdout.raw.join('\n')}`, 60_000);
    assert.equal(code, 1);
    const fatal = cli.stdout.lines.find((l) => isPrimary(l) && l.level === 'fatal');
    assert.equal(fatal?.event, 'workers.failing', cli.stdout.raw.join('\n'));
    assert.match(String(fatal?.msg), /^giving up: no worker is listening and every worker failed to start 3 times in a row \(the last: redis at 127\.0\.0\.1:\d+ is not reachable/);
    const deaths = cli.stdout.events('worker.died');
    for (const n of [1, 2]) {
      const mine = deaths.filter((l) => l.worker === n);
      assert.equal(mine[0]?.failedStart, false, `worker ${n} was killed while serving`);
      assert.ok(mine.length >= 4, `worker ${n}: killed, then at least 3 failed starts`);
      assert.ok(mine.slice(1).every((l) => l.failedStart === true), `worker ${n}: then only failed starts`);
      const delays = mine.map((l) => l.restartInMs).filter((d) => d !== undefined);
      assert.deepEqual(delays, delays.map((_, i) => 100 * 2 ** i), `worker ${n}: each delay twice the one before`);
    }
    assert.ok(cli.stdout.events('worker.started').filter((l) => l.restart === true).length >= 6, 'each worker was started again at least 3 times');
  });

  test('workers: 1 is one process, as without the key: no primary, no worker lines', { timeout: 60_000 }, async (t) => {
    const file = await configFile(['workers: 1', `store: { kind: redis, url: "${redis.url}", prefix: "w1only:" }`]);
    const cli = runCli(['--config', file]);
    t.after(() => killIfRunning(cli));
    const listening = await within(cli.stdout.waitFor((l) => l.msg === 'listening'), `no "listening" line:\n${cli.stdout.raw.join('\n')}`);
    assert.equal(listening.workers, undefined);
    assert.equal((await send(listening.port as number, '/one')).status, 200);
    const access = await within(cli.stdout.waitFor((l) => l.event === 'access' && l.path === '/one'), 'no access line');
    assert.equal(access.pid, undefined, 'the lines of one process are as before');
    assert.ok(!cli.stdout.lines.some((l) => isPrimary(l) || l.event === 'worker.started'));
    cli.proc.kill('SIGTERM');
    assert.equal(await within(cli.exited, 'no exit after SIGTERM'), 0);
  });
});
