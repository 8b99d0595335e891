// The command line, run as a real process (dist/cli.js, so `npm run build` first): flags,
// exit codes (0 clean, 2 usage/config, 1 runtime), configuration errors with file:line:col and
// key path, check-config with secrets redacted, COATCHECK_CONFIG, the "listening" log line,
// graceful SIGTERM that lets an in-flight request finish, and a Redis that is not there.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { send } from '../helpers/client.js';
import { killIfRunning, REPO_ROOT, runCli, runCliToEnd, within as withinDeadline } from '../helpers/coatcheck.js';
import { freePort } from '../helpers/redis-server.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const CLI = join(REPO_ROOT, 'dist', 'cli.js');
const SECRET = 'Unique-Secret-Value-9f8e7d6c5b4a39281706-cli';
const ENV_SECRET = 'Env-Secret-Value-0a1b2c3d4e5f6a7b8c9d-from-env';
const REDIS_PASSWORD = 'Redis-Pass-7a6b5c4d3e';
/** A process that has not exited by then has hung. */
const EXIT_DEADLINE_MS = 20_000;


/** `p`, or a rejection with `message` after `ms` (this file's argument order). */
const within = <T>(p: Promise<T>, ms: number, message: string): Promise<T> => withinDeadline(p, message, ms);

const runToEnd = (args: string[], env: NodeJS.ProcessEnv = {}) => runCliToEnd(args, env, EXIT_DEADLINE_MS);

/** No stack trace, in plain text or inside a JSON log line. */
function assertNoStack(text: string, what: string): void {
  assert.ok(!/\s{2,}at \S/.test(text.replace(/\\n/g, '\n')), `${what} holds a stack trace:\n${text}`);
  assert.ok(!/"stack":"[^"]/.test(text), `${what} holds a stack trace:\n${text}`);
}

/** Ends a still-running CLI process (ours, by its own handle). */

describe('cli', () => {
  let dir: string;
  before(async () => {
    assert.ok(existsSync(CLI), `${CLI} is missing: run "npm run build" first`);
    dir = await mkdtemp(join(tmpdir(), 'coatcheck-cli-'));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function configFile(name: string, text: string): Promise<string> {
    const file = join(dir, name);
    await writeFile(file, text);
    return file;
  }

  const validConfig = (upstream: string, extra = ''): string =>
    [
      'listen: "127.0.0.1:0"',
      `upstream: "${upstream}"`,
      'secrets:',
      `  - "${SECRET}"`,
      'cookie:',
      '  name: coatcheck',
      '  secure: false',
      'logout:',
      '  - path: /logout',
      extra,
    ].join('\n');

  describe('flags and usage', () => {
    test('--version and -v print package.json version and exit 0', async () => {
      const version = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
      for (const flag of ['--version', '-v']) {
        const r = await runToEnd([flag]);
        assert.equal(r.code, 0);
        assert.equal(r.stdout.trim(), version);
      }
    });

    test('--help and -h print usage and exit 0', async () => {
      for (const flag of ['--help', '-h']) {
        const r = await runToEnd([flag]);
        assert.equal(r.code, 0);
        assert.match(r.stdout, /Usage:/);
        assert.match(r.stdout, /--config/);
        assert.match(r.stdout, /check-config/);
      }
    });

    test('an unknown flag → exit 2, a message naming it, no stack trace', async () => {
      const r = await runToEnd(['--bogus-flag']);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /--bogus-flag/);
      assert.match(r.stderr, /--help/);
      assert.equal(r.stdout, '');
      assertNoStack(r.stderr, 'stderr');
    });

    test('an unknown command → exit 2, no stack trace', async () => {
      const r = await runToEnd(['frobnicate']);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /frobnicate/);
      assertNoStack(r.stderr, 'stderr');
    });

    test('--config without a value → exit 2', async () => {
      const r = await runToEnd(['--config']);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /config/);
      assertNoStack(r.stderr, 'stderr');
    });

    test('no configuration (no --config, no COATCHECK_CONFIG) → exit 2 saying how to give one', async () => {
      const r = await runToEnd([]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /--config/);
      assert.match(r.stderr, /COATCHECK_CONFIG/);
      assertNoStack(r.stderr, 'stderr');
    });

    test('a configuration file that does not exist → exit 2 naming the file', async () => {
      const missing = join(dir, 'nope.yaml');
      const r = await runToEnd(['--config', missing]);
      assert.equal(r.code, 2);
      assert.ok(r.stderr.includes(missing), r.stderr);
      assert.match(r.stderr, /not found/);
      assertNoStack(r.stderr, 'stderr');
    });
  });

  describe('configuration errors', () => {
    test('every problem is reported at once: file:line:col, key path, message; exit 2; secrets never echoed', async () => {
      const shortSecret = 'tooShortSecretXYZ';
      const file = await configFile(
        'bad.yaml',
        [
          'listen: "nope"', //                           1
          'upstream: "ftp://example.com"', //            2
          'secrets:', //                                 3
          `  - "${shortSecret}"`, //                     4
          'session:', //                                 5
          '  idleTimeout: 30 minutes', //                6
          '  bogusKey: 1', //                            7
          'cookie:', //                                  8
          '  sameSite: sideways', //                     9
          'store:', //                                   10
          '  kind: redis', //                            11
          'limits:', //                                  12
          '  maxHeaderSize: 12', //                      13
          '',
        ].join('\n'),
      );
      for (const args of [['--config', file], ['check-config', '--config', file]]) {
        const r = await runToEnd(args);
        assert.equal(r.code, 2, `exit code of ${args.join(' ')}`);
        const expected = [
          `${file}:1:9: listen: expected "host:port", ":port" or "[::1]:port", got "nope"`,
          `${file}:2:11: upstream: expected an http:// or https:// URL, got "ftp://example.com"`,
          `${file}:4:5: secrets[0]: a secret needs at least 32 characters, got ${shortSecret.length}`,
          `${file}:6:16: session.idleTimeout: expected a duration: a whole number and one unit (ms, s, m, h or d, e.g. "30m"), or whole seconds; got "30 minutes" (did you mean "30m"?)`,
          `${file}:7:3: session.bogusKey: unknown key "bogusKey"`,
          `${file}:9:13: cookie.sameSite: expected one of "strict", "lax", "none", got "sideways"`,
          `${file}:10:1: store.url: required when kind is "redis"`,
          `${file}:13:18: limits.maxHeaderSize: must be at least 1024, got 12`,
        ];
        for (const line of expected) assert.ok(r.stderr.includes(line), `missing:\n  ${line}\nin:\n${r.stderr}`);
        assert.match(r.stderr, /8 problems/);
        assert.ok(!r.stderr.includes(shortSecret) && !r.stdout.includes(shortSecret), 'a secret was echoed');
        assertNoStack(r.stderr, 'stderr');
      }
    });

    test('YAML syntax errors are reported with their position; exit 2', async () => {
      const file = await configFile('syntax.yaml', ['upstream: "http://127.0.0.1:1"', 'secrets: [unclosed', ''].join('\n'));
      const r = await runToEnd(['--config', file]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: `));
      // yaml's message, with a one-line hint at what usually causes it.
      assert.match(r.stderr, /\(usually an unclosed "\[" or "\{", or a " #" inside one that starts a comment: quote such values\)/);
      assertNoStack(r.stderr, 'stderr');
    });
  });

  describe('check-config', () => {
    test('prints the effective configuration with every secret and password redacted, exit 0', async () => {
      const file = await configFile(
        'check.yaml',
        validConfig(
          'http://127.0.0.1:45678',
          ['store:', '  kind: redis', `  url: "redis://user:${REDIS_PASSWORD}@127.0.0.1:1/0"`, 'session:', '  idleTimeout: 45m'].join('\n'),
        ).replace(`  - "${SECRET}"`, `  - "${SECRET}"\n  - "\${SECOND_SECRET}"`),
      );
      const r = await runToEnd(['check-config', '--config', file], { SECOND_SECRET: ENV_SECRET });
      assert.equal(r.code, 0, r.stderr);
      for (const secret of [SECRET, ENV_SECRET, REDIS_PASSWORD]) {
        assert.ok(!r.stdout.includes(secret), `stdout holds a secret: ${secret}`);
        assert.ok(!r.stderr.includes(secret), `stderr holds a secret: ${secret}`);
      }
      const printed = parseYaml(r.stdout) as {
        upstream: string;
        secrets: string[];
        store: { kind: string; url: string };
        session: { idleTimeout: string; absoluteTimeout: string };
        logout: { rules: Array<{ path: string }> };
        cookie: { name: string };
      };
      assert.equal(printed.upstream, 'http://127.0.0.1:45678');
      assert.deepEqual(printed.secrets, ['[redacted]', '[redacted]']);
      assert.equal(printed.store.kind, 'redis');
      assert.equal(printed.store.url, 'redis://user:[redacted]@127.0.0.1:1/0');
      assert.equal(printed.session.idleTimeout, '45m');
      assert.equal(printed.session.absoluteTimeout, '12h'); // a default, filled in
      assert.deepEqual(printed.logout.rules, [{ path: '/logout' }]); // the mapping form
      assert.equal(printed.cookie.name, 'coatcheck');
      assert.match(r.stderr, /^warning: .*cookie\.name: is "coatcheck", without the "__Host-" prefix.*use "__Host-coatcheck"/m, 'the warning is shown');
    });

    test('warns, naming the fix, about Secure cookies behind an untrusted proxy and about nothing that ends a session early', async () => {
      // Listens beyond loopback with a Secure ticket and trustProxy off; no logout rule, no onCookieCleared.
      const lines = ['listen: ":8080"', 'upstream: "http://127.0.0.1:45679"', 'secrets:', `  - "${SECRET}"`, 'store: { kind: redis, url: "redis://127.0.0.1:1/0" }'];
      const file = await configFile('warn.yaml', lines.join('\n'));
      const r = await runToEnd(['check-config', '--config', file]);
      assert.equal(r.code, 0, r.stderr);
      const warnings = r.stderr.split('\n').filter((l) => l.startsWith('warning: '));
      assert.equal(warnings.length, 2, r.stderr);
      assert.match(warnings.join('\n'), new RegExp(`^warning: ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: trustProxy: is false, yet listen is 0\\.0\\.0\\.0:8080 \\(not loopback\\) .* Fix: set trustProxy: true`, 'm'));
      assert.match(warnings.join('\n'), /: logout: has no rule and no onCookieCleared: .*unless the app answers its logout with the header "Coatcheck-Session: revoke"/);

      // The fix the warnings name silences them.
      const fixed = await configFile('fixed.yaml', [...lines, 'trustProxy: true', 'logout: [{ path: /logout }]'].join('\n'));
      const ok = await runToEnd(['check-config', '--config', fixed]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.ok(!ok.stderr.includes('warning: '), ok.stderr);
    });

    test('COATCHECK_CONFIG is used when --config is missing, and --config wins over it', async () => {
      const fromEnv = await configFile('env.yaml', validConfig('http://127.0.0.1:40001'));
      const r = await runToEnd(['check-config'], { COATCHECK_CONFIG: fromEnv });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /upstream: http:\/\/127\.0\.0\.1:40001/);

      const flag = await configFile('flag.yaml', validConfig('http://127.0.0.1:40002'));
      const both = await runToEnd(['check-config', '--config', flag], { COATCHECK_CONFIG: fromEnv });
      assert.equal(both.code, 0, both.stderr);
      assert.match(both.stdout, /upstream: http:\/\/127\.0\.0\.1:40002/);
    });
  });

  describe('running', () => {
    let up: Upstream;
    before(async () => {
      up = await startUpstream();
    });
    after(async () => {
      await up?.close();
    });

    test('start logs the configuration warnings (config.warning), e.g. that nothing ends a session early', { timeout: 60_000 }, async (t) => {
      const file = await configFile('norules.yaml', validConfig(up.origin).replace('logout:\n  - path: /logout\n', ''));
      const cli = runCli(['--config', file]);
      t.after(() => killIfRunning(cli));
      await within(cli.stdout.waitFor((l) => l.msg === 'listening'), EXIT_DEADLINE_MS, `no "listening" line; stderr:\n${cli.stderr()}`);
      const warned = cli.stdout.events('config.warning');
      assert.ok(
        warned.some((l) => l.level === 'warn' && /: logout: has no rule and no onCookieCleared: .*"Coatcheck-Session: revoke"/.test(l.msg ?? '')),
        cli.stdout.raw.join('\n'),
      );
      cli.proc.kill('SIGTERM');
      assert.equal(await within(cli.exited, EXIT_DEADLINE_MS, 'no exit after SIGTERM'), 0);
    });

    test('port 0: logs a JSON "listening" line with the port, proxies, and SIGTERM exits 0 after the in-flight request finished', { timeout: 60_000 }, async (t) => {
      const file = await configFile('run.yaml', validConfig(up.origin, 'log:\n  level: info'));
      const cli = runCli(['--config', file]);
      t.after(() => killIfRunning(cli));
      const listening = await within(
        cli.stdout.waitFor((l) => l.msg === 'listening'),
        EXIT_DEADLINE_MS,
        `no "listening" line; stdout:\n${cli.stdout.raw.join('\n')}\nstderr:\n${cli.stderr()}`,
      );
      const port = listening.port;
      assert.equal(typeof port, 'number');
      assert.ok((port as number) > 0);
      assert.equal(listening.heapGrowingPercent, 30, 'coatcheck caps the heap growth itself (src/heap.ts)');
      assert.ok(
        cli.stdout.lines.some((l) => l.event === 'config.warning' && /cookie\.name: is "coatcheck", without the "__Host-" prefix/.test(String(l.msg))),
        'the ticket-name warning is logged at start',
      );

      const seen = up.nextRequest('/echo');
      const r = await send(port as number, '/echo?via=cli');
      assert.equal(r.status, 200);
      assert.equal((await seen).url, '/echo?via=cli');

      // A slow request is in flight when SIGTERM arrives.
      let release!: (res: ServerResponse) => void;
      const arrived = new Promise<ServerResponse>((resolve) => (release = resolve));
      up.route('/slow', (_req, res) => release(res));
      const slow = send(port as number, '/slow');
      const appRes = await within(arrived, 10_000, 'the slow request never reached the app');
      cli.proc.kill('SIGTERM');
      await within(cli.stdout.waitFor((l) => l.event === 'shutdown'), 10_000, 'no "shutdown" log line after SIGTERM');
      assert.equal(cli.proc.exitCode, null, 'exited with a request in flight');
      // No new connections once shutting down.
      const refused = await new Promise<boolean>((resolve) => {
        const s = connect(port as number, '127.0.0.1');
        s.on('connect', () => {
          s.destroy();
          resolve(false);
        });
        s.on('error', () => resolve(true));
      });
      assert.ok(refused, 'still accepting connections after SIGTERM');

      appRes.end('slow but done');
      const reply = await within(slow, 10_000, 'the in-flight request never finished');
      assert.equal(reply.status, 200);
      assert.equal(reply.body, 'slow but done');
      assert.equal(await within(cli.exited, EXIT_DEADLINE_MS, 'no exit after SIGTERM'), 0);
      assertNoStack(cli.stderr(), 'stderr');
    });

    test('COATCHECK_HEAP_GROWING_PERCENT sets the heap growth (0: V8 chooses); a bad value exits 2 naming it', { timeout: 60_000 }, async (t) => {
      const file = await configFile('heap.yaml', validConfig(up.origin, 'log:\n  level: info'));
      const bad = runCli(['--config', file], { COATCHECK_HEAP_GROWING_PERCENT: 'lots' });
      assert.equal(await within(bad.exited, EXIT_DEADLINE_MS, 'no exit on a bad COATCHECK_HEAP_GROWING_PERCENT'), 2);
      assert.match(bad.stderr(), /COATCHECK_HEAP_GROWING_PERCENT must be a whole number from 0 to 1000 .*"lots"/);
      const cli = runCli(['--config', file], { COATCHECK_HEAP_GROWING_PERCENT: '0' });
      t.after(() => killIfRunning(cli));
      const listening = await within(
        cli.stdout.waitFor((l) => l.msg === 'listening'),
        EXIT_DEADLINE_MS,
        `no "listening" line; stdout:\n${cli.stdout.raw.join('\n')}\nstderr:\n${cli.stderr()}`,
      );
      assert.equal(listening.heapGrowingPercent, 0);
      cli.proc.kill('SIGTERM');
      assert.equal(await within(cli.exited, EXIT_DEADLINE_MS, 'no exit after SIGTERM'), 0);
    });

    test('a Redis store that cannot be reached at start → exit 1 with a clear fatal log line, no stack trace anywhere', { timeout: 60_000 }, async () => {
      const port = await freePort(); // nothing listens there
      const file = await configFile(
        'redis-down.yaml',
        validConfig(up.origin, ['store:', '  kind: redis', `  url: "redis://127.0.0.1:${port}/0"`, '  connectTimeout: 1s'].join('\n')),
      );
      const r = await runToEnd(['--config', file]);
      assert.equal(r.code, 1, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
      const lines = r.stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const fatal = lines.find((l) => l.level === 'fatal');
      assert.ok(fatal, `no fatal line in:\n${r.stdout}`);
      assert.equal(fatal.event, 'start.failed');
      assert.match(String(fatal.msg), /could not start/);
      assert.match(String(fatal.msg), /redis/i);
      assert.match(String(fatal.msg), new RegExp(`127\\.0\\.0\\.1:${port}`));
      assert.ok(!lines.some((l) => l.msg === 'listening'), 'it said "listening" anyway');
      // No line at all (the store's connection warnings included) carries a stack trace.
      assertNoStack(r.stdout, 'stdout');
      assertNoStack(r.stderr, 'stderr');
    });
  });
});
