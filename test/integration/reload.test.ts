// SIGHUP reloads the configuration file (the built CLI, a real process): secrets and rules change
// under load with no failed request; a request in flight finishes under the configuration it
// started with; the new secrets and rules apply to new requests; an invalid file is refused with
// file:line:col and the running configuration stays; keys that cannot change live are named and
// kept; with two workers (on a real redis-server) the primary reads the file and every worker
// runs the new configuration. Waits are on log lines and replies, never on sleeps.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cookieValue, send, type Reply } from '../helpers/client.js';
import { killIfRunning, REPO_ROOT, runCli, startCoatcheck, testConfig, within, type CliProcess } from '../helpers/coatcheck.js';
import type { LogLine } from '../helpers/logs.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { setsCookies, startUpstream, type Upstream } from '../helpers/upstream.js';

const OLD_SECRET = 'Reload-Old-Secret-0123456789abcdefghijklmnop';
const NEW_SECRET = 'Reload-New-Secret-9876543210zyxwvutsrqponmlk';
/** Each load loop must complete this many requests after the reload before the load stops. */
const AFTER_RELOAD = 20;
const LOOPS = 4;



const ticketOf = (r: Reply) => cookieValue(r.setCookies, 'coatcheck');
const withTicket = (ticket: string) => ({ headers: { cookie: `coatcheck=${ticket}` } });

describe('reload (SIGHUP)', () => {
  let dir: string;
  let up: Upstream;
  let files = 0;

  before(async () => {
    assert.ok(existsSync(join(REPO_ROOT, 'dist', 'cli.js')), 'dist/cli.js is missing: run npm run build first');
    dir = await mkdtemp(join(tmpdir(), 'coatcheck-reload-'));
    up = await startUpstream();
    up.route('/set', setsCookies('a=1; Path=/'));
  });
  after(async () => {
    await up?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const configText = (lines: string[]) =>
    ['listen: "127.0.0.1:0"', `upstream: "${up.origin}"`, 'cookie: { name: coatcheck, secure: false }', 'log: { level: info, access: false }', ...lines, ''].join('\n');

  async function start(text: string, t: { after(fn: () => void): void }): Promise<{ cli: CliProcess; file: string; port: number; listening: LogLine }> {
    const file = join(dir, `reload-${++files}.yaml`);
    await writeFile(file, text);
    const cli = runCli(['--config', file]);
    t.after(() => killIfRunning(cli));
    const listening = await within(cli.stdout.waitFor((l) => l.msg === 'listening'), `not listening; stderr:\n${cli.stderr()}`);
    return { cli, file, port: listening.port as number, listening };
  }

  /** Rewrites the file, sends SIGHUP, and waits for the outcome line after `since` lines. */
  async function reload(cli: CliProcess, file: string, text: string, outcome: (l: LogLine) => boolean): Promise<LogLine> {
    const since = cli.stdout.lines.length;
    await writeFile(file, text);
    cli.proc.kill('SIGHUP');
    return within(
      cli.stdout.waitFor((l) => cli.stdout.lines.indexOf(l) >= since && outcome(l)),
      `no reload outcome; stdout:\n${cli.stdout.raw.slice(since).join('\n')}`,
    );
  }

  test('secrets and rules change under load: no failed request; in-flight requests finish under the old configuration; new ones get the new', { timeout: 90_000 }, async (t) => {
    const v1 = configText([`secrets: ["${OLD_SECRET}"]`, 'logout: [{ path: /logout }]']);
    const { cli, file, port } = await start(v1, t);

    // Sessions under the old secret.
    const tickets: string[] = [];
    for (let i = 0; i < LOOPS + 2; i++) {
      const t1 = ticketOf(await send(port, '/set'));
      assert.ok(t1);
      tickets.push(t1);
    }

    // The load: each loop sends its session's requests one after another until told to stop. A
    // request fails when its status is not 200 or the app did not get the session's cookie.
    let reloaded = false;
    let stop = false;
    const failures: string[] = [];
    let total = 0;
    const afterReload = Array.from({ length: LOOPS }, () => 0);
    let enoughAfter!: () => void;
    const enough = new Promise<void>((resolve) => (enoughAfter = resolve));
    const loops = Array.from({ length: LOOPS }, async (_, i) => {
      while (!stop) {
        const r = await send(port, '/echo', withTicket(tickets[i] as string));
        total++;
        const got = r.status === 200 ? ((JSON.parse(r.body) as { headers: { cookie?: string } }).headers.cookie ?? '') : '';
        if (r.status !== 200 || got !== 'a=1') failures.push(`loop ${i}: ${r.status} ${got}`);
        if (reloaded && ++afterReload[i]! >= AFTER_RELOAD && afterReload.every((n) => n >= AFTER_RELOAD)) enoughAfter();
      }
    });

    // A request in flight across the reload: the app holds it until the reload is done. Its
    // answer sets a cookie; under the new login rule for /held that would rotate the ticket.
    let hold!: (res: ServerResponse) => void;
    const held = new Promise<ServerResponse>((resolve) => (hold = resolve));
    up.route('/held', (_req, res) => hold(res));
    const inFlight = send(port, '/held', withTicket(tickets[LOOPS] as string));
    const heldRes = await within(held, 'the held request never reached the app');

    const v2 = configText([
      // Rotation: the new secret signs, the old one still verifies.
      `secrets: ["${NEW_SECRET}", "${OLD_SECRET}"]`,
      'logout: [{ path: /logout }, { path: /bye }]',
      'login: [{ path: /held }]',
    ]);
    const done = await reload(cli, file, v2, (l) => l.event === 'config.reloaded' || l.event === 'config.reload_failed');
    assert.equal(done.event, 'config.reloaded', JSON.stringify(done));
    reloaded = true;
    assert.deepEqual(done.changed, ['login', 'logout.rules', 'secrets']);
    assert.deepEqual(done.kept, []);
    assert.ok((done.inFlight as number) >= 1, 'the held request was in flight');

    heldRes.setHeader('set-cookie', 'b=2; Path=/');
    heldRes.end('held');
    const heldReply = await inFlight;
    assert.equal(heldReply.status, 200);
    assert.equal(ticketOf(heldReply), undefined, 'the in-flight request ran under the old configuration: no login rule, no rotation');

    // New requests run the new configuration: /held is now a login (rotates), /bye a logout.
    up.route('/held', setsCookies('b=3; Path=/'));
    const rotated = ticketOf(await send(port, '/held', withTicket(tickets[LOOPS] as string)));
    assert.ok(rotated && rotated !== tickets[LOOPS], 'the new login rule rotates the ticket');
    await within(enough, 'the load did not go on after the reload');
    stop = true;
    await Promise.all(loops);
    assert.deepEqual(failures, [], `${failures.length} of ${total} requests failed`);
    assert.ok(total >= LOOPS * AFTER_RELOAD);

    assert.equal((await send(port, '/bye', withTicket(tickets[LOOPS + 1] as string))).status, 200);
    assert.equal((await send(port, '/echo', withTicket(tickets[LOOPS + 1] as string))).status, 401, 'the new logout rule revoked it');

    // The old secret dropped: its tickets no longer verify; the new one's still do.
    const v3 = configText([`secrets: ["${NEW_SECRET}"]`, 'logout: [{ path: /logout }, { path: /bye }]', 'login: [{ path: /held }]']);
    assert.deepEqual((await reload(cli, file, v3, (l) => l.event === 'config.reloaded')).changed, ['secrets']);
    const old = await send(port, '/echo', withTicket(tickets[0] as string));
    assert.equal((JSON.parse(old.body) as { headers: { cookie?: string } }).headers.cookie, undefined, 'an old-secret ticket is anonymous now');
    await within(cli.stdout.waitFor((l) => l.event === 'session.forged'), 'no forged-ticket event');
    const fresh = await send(port, '/echo', withTicket(rotated));
    assert.equal((JSON.parse(fresh.body) as { headers: { cookie?: string } }).headers.cookie, 'a=1; b=3', 'a new-secret ticket still works');

    // No secret, ticket or cookie value in any log line.
    const all = cli.stdout.raw.join('\n') + cli.stderr();
    for (const s of [OLD_SECRET, NEW_SECRET, ...tickets, rotated]) assert.ok(!all.includes(s), 'a secret or ticket was logged');
  });

  test('an invalid file is refused with file:line:col and the running configuration stays; keys that cannot change live are named and kept', { timeout: 90_000 }, async (t) => {
    const v1 = configText([`secrets: ["${OLD_SECRET}"]`, 'logout: [{ path: /logout }]']);
    const { cli, file, port } = await start(v1, t);
    const bad = v1.replace('logout: [{ path: /logout }]', 'logout: [{ path: logout }]\nsession: { idleTimeout: 30 minutes }');
    const failed = await reload(cli, file, bad, (l) => l.event === 'config.reload_failed');
    assert.equal(failed.level, 'error');
    assert.deepEqual(failed.problems, [
      `${file}:6:18: logout[0].path: must start with "/"`,
      `${file}:7:25: session.idleTimeout: expected a duration: a whole number and one unit (ms, s, m, h or d, e.g. "30m"), or whole seconds; got "30 minutes" (did you mean "30m"?)`,
    ]);
    assert.equal(cli.proc.exitCode, null, 'still running');
    const ticket = ticketOf(await send(port, '/set'));
    assert.ok(ticket);
    assert.equal((await send(port, '/logout', withTicket(ticket))).status, 200);
    assert.equal((await send(port, '/echo', withTicket(ticket))).status, 401, 'the running logout rule still applies');

    // listen and the store cannot change live: named in a warning, kept.
    const moved = v1.replace('listen: "127.0.0.1:0"', 'listen: "127.0.0.1:1"').replace('log: { level: info, access: false }', 'log: { level: debug, access: false }\nstore: { maxSessions: 10 }');
    const kept = await reload(cli, file, moved, (l) => l.event === 'config.reload_kept');
    assert.equal(kept.level, 'warn');
    assert.deepEqual(kept.keys, ['listen', 'store']);
    const done = await within(cli.stdout.waitFor((l) => l.event === 'config.reloaded' && Array.isArray(l.kept) && (l.kept as string[]).length === 2), 'no reloaded line');
    assert.deepEqual(done.changed, ['log.level'], 'the log level changes; listen and store do not');
    assert.equal((await send(port, '/echo')).status, 200, 'still on the old port');
    // The new log level is live: a stripped client cookie is logged at debug, now.
    await send(port, '/echo', { headers: { cookie: 'stray=1' } });
    const line = await within(cli.stdout.waitFor((l) => l.event === 'cookie.client_stripped'), 'no debug line after the level changed');
    assert.equal(line.level, 'debug');
  });

  test('in process: a new upstream takes the next request; a request in flight to the old one finishes there, then its pool closes', async (t) => {
    const other = await startUpstream();
    t.after(() => other.close());
    const cc = await startCoatcheck(up.origin);
    t.after(() => cc.close());
    let hold!: (res: ServerResponse) => void;
    const held = new Promise<ServerResponse>((resolve) => (hold = resolve));
    up.route('/slow', (_req, res) => hold(res));
    // The old pool's connection to the old app: it closes when the pool does.
    const connected = once(up.server, 'connection') as Promise<[Socket]>;
    const inFlight = send(cc.port, '/slow');
    const [oldConnection] = await within(connected, 'no connection to the old upstream');
    const oldClosed = once(oldConnection, 'close');
    const heldRes = await within(held, 'the request never reached the old upstream');

    const { changed } = await cc.app.reload(testConfig(other.origin));
    assert.deepEqual(changed, ['upstream']);
    const seen = other.nextRequest('/echo');
    assert.equal((await send(cc.port, '/echo')).status, 200);
    assert.equal((await seen).url, '/echo', 'the new upstream got it');

    heldRes.end('from the old upstream');
    const answered = performance.now();
    const r = await inFlight;
    assert.equal(r.status, 200);
    assert.equal(r.body, 'from the old upstream');
    // The old pool was closed once its last request finished: its connection to the old app goes
    // at once. Left idle, it would go only after undici's keep-alive timeout (4 s): the bound
    // below tells the two apart with seconds to spare.
    await within(oldClosed, 'the old upstream pool kept its connection');
    assert.ok(performance.now() - answered < 2_500, 'closed by the reload, not by the idle timeout');
  });

  test('in process: the sessions API follows the secrets a reload brings (its directory is keyed by them)', async (t) => {
    const token = 'reload-admin-token-0123456789-abcdefghijklmnop';
    up.route('/named', (_req, res) => {
      res.setHeader('coatcheck-user', 'alice');
      res.setHeader('set-cookie', 'app_session=alice; Path=/');
      res.end('hello alice');
    });
    const overrides = { login: [{ path: '/named' }], admin: { listen: '127.0.0.1:0', token } };
    const cc = await startCoatcheck(up.origin, { ...overrides, secrets: [OLD_SECRET] });
    t.after(() => cc.close());
    const listed = async () => {
      const r = await send(cc.adminPort as number, '/sessions?user=alice', { headers: { authorization: `Bearer ${token}` } });
      assert.equal(r.status, 200, r.body);
      return (JSON.parse(r.body) as { sessions: unknown[] }).sessions.length;
    };
    assert.ok(ticketOf(await send(cc.port, '/named')));
    assert.equal(await listed(), 1);
    // Rotation: the new secret first. The session written after it is indexed under it.
    await cc.app.reload(testConfig(up.origin, { ...overrides, secrets: [NEW_SECRET, OLD_SECRET] }));
    assert.ok(ticketOf(await send(cc.port, '/named')));
    assert.equal(await listed(), 2, 'the API reads under the new secret too');
    const r = await send(cc.adminPort as number, '/sessions/revoke', {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ user: 'alice' }),
    });
    assert.equal(r.status, 200, r.body);
    assert.equal(await listed(), 0);
  });

  describe('with two workers', () => {
    let redis: RedisServer;
    before(async () => {
      redis = await startRedis();
    });
    after(() => redis?.stop());

    test('the primary reads the file and sends it to every worker: each logs config.reloaded and serves the new rules', { timeout: 90_000 }, async (t) => {
      const lines = (rules: string) => [
        `secrets: ["${OLD_SECRET}"]`,
        'workers: 2',
        `store: { kind: redis, url: "${redis.url}", connectTimeout: 2s }`,
        'admin: { listen: "127.0.0.1:0" }',
        rules,
      ];
      const v1 = configText(lines('logout: [{ path: /logout }]')).replace('access: false', 'access: true');
      const { cli, file, port } = await start(v1, t);
      const workerPids = cli.stdout.events('worker.started').map((l) => l.pid as number);
      assert.equal(workerPids.length, 2);

      const v2 = configText(lines('logout: [{ path: /logout }, { prefix: /bye/ }]')).replace('access: false', 'access: true');
      const since = cli.stdout.lines.length;
      const primaryLine = await reload(cli, file, v2, (l) => l.event === 'config.reloaded' && l.worker === undefined);
      assert.equal(primaryLine.workers, 2);
      const workerLines = await within(
        Promise.all(workerPids.map((pid) => cli.stdout.waitFor((l) => cli.stdout.lines.indexOf(l) >= since && l.event === 'config.reloaded' && l.pid === pid))),
        'a worker did not reload',
      );
      for (const l of workerLines) assert.deepEqual(l.changed, ['logout.rules']);

      // Logouts on new connections land on both workers (by the access log); every one revokes.
      const servedBy = new Set<number>();
      for (let i = 0; i < 20 && servedBy.size < 2; i++) {
        const ticket = ticketOf(await send(port, '/set'));
        assert.ok(ticket);
        assert.equal((await send(port, `/bye/${i}`, withTicket(ticket))).status, 200);
        const access = await within(cli.stdout.waitFor((l) => l.event === 'access' && l.path === `/bye/${i}`), 'no access line');
        servedBy.add(access.pid as number);
        assert.equal((await send(port, '/echo', withTicket(ticket))).status, 401, `logout ${i} revoked the session`);
      }
      assert.deepEqual(servedBy, new Set(workerPids), 'both workers ran the new rule');
      cli.proc.kill('SIGTERM');
      assert.equal(await within(cli.exited, 'no exit after SIGTERM'), 0);
    });
  });
});
