// coatcheck as a library (src/index.ts, src/testing.ts): startCoatcheck validates an object with
// the configuration file's schema and messages (as one ConfigError, without line:col), starts
// the proxy on a real socket and closes it; coatcheck/testing's client keeps cookies like a
// browser and its recorder picks out security events. The package's "exports" are exercised by
// examples/integration-test (it imports by package name) and by the npm pack test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfigText } from '../../src/config/load.js';
import { ConfigError, startCoatcheck } from '../../src/index.js';
import { CookieClient, LogRecorder } from '../../src/testing.js';
import { accepts, TEST_SECRET } from '../helpers/coatcheck.js';
import { setsCookies, startUpstream } from '../helpers/upstream.js';


test('an invalid object is refused with the problems a file gives, every one at once, secrets never echoed', async () => {
  const bad = {
    listen: 'nope',
    upstream: 'ftp://example.com',
    secrets: ['tooShortSecretXYZ'],
    session: { idleTimeout: '30 minutes', bogusKey: 1 },
  };
  const err = await startCoatcheck(bad as never).then(
    () => assert.fail('started'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof ConfigError, String(err));
  // The same problems, key paths and messages as the same keys in a YAML file (there without line:col).
  const yaml = ['listen: "nope"', 'upstream: "ftp://example.com"', 'secrets: ["tooShortSecretXYZ"]', 'session:', '  idleTimeout: 30 minutes', '  bogusKey: 1', ''].join('\n');
  let fromFile: ConfigError | undefined;
  try {
    loadConfigText(yaml, 'f.yaml', {});
  } catch (e) {
    fromFile = e as ConfigError;
  }
  assert.ok(fromFile);
  assert.deepEqual(
    err.problems.map((p) => [p.path, p.message]),
    fromFile.problems.map((p) => [p.path, p.message]),
  );
  assert.equal(err.problems.length, 5);
  assert.ok(err.problems.every((p) => p.line === undefined));
  assert.match(err.message, /^invalid configuration \(5 problems\):\n {2}startCoatcheck\(config\): listen: expected "host:port"/);
  assert.ok(!err.message.includes('tooShortSecretXYZ'));
  assert.equal(err.code, 'COATCHECK_ERR_CONFIG_INVALID');
});

test('a value that is not a mapping, and several workers, are ConfigErrors too', async () => {
  for (const [value, path] of [
    [null, ''],
    [['a'], ''],
    [{ upstream: 'http://127.0.0.1:1', secrets: [TEST_SECRET], store: { kind: 'redis', url: 'redis://127.0.0.1:1' }, workers: 2 }, 'workers'],
  ] as const) {
    await assert.rejects(startCoatcheck(value as never), (e: unknown) => e instanceof ConfigError && e.problems[0]?.path === path);
  }
});

test('starts on a real socket: url, port, adminUrl; sessions work through the testing client; close() frees the port', async (t) => {
  const upstream = await startUpstream();
  t.after(() => upstream.close());
  upstream.route('/login', setsCookies('app=1; Path=/'));
  const logs = new LogRecorder();
  const cc = await startCoatcheck(
    {
      listen: '127.0.0.1:0',
      upstream: upstream.origin,
      secrets: [TEST_SECRET],
      logout: [{ path: '/logout' }],
      admin: { listen: '127.0.0.1:0' },
      log: { level: 'info' },
    },
    { logDestination: logs },
  );
  let closed = false;
  t.after(() => (closed ? undefined : cc.close()));
  assert.equal(cc.url, `http://127.0.0.1:${cc.port}`);
  assert.match(cc.adminUrl ?? '', /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.equal((await fetch(`${cc.adminUrl}/healthz`)).status, 200);
  assert.equal(cc.config.cookie.name, '__Host-coatcheck', 'defaults filled in');
  // The defaults warn (a memory store, ...): warnings go to the log, not to an exception.
  assert.ok(logs.events('config.warning').length > 0);

  const browser = new CookieClient(cc.url);
  await browser.get('/login');
  assert.ok(await browser.cookie('__Host-coatcheck'), 'the client keeps the ticket (a __Host- cookie on loopback)');
  assert.equal(await browser.cookie('app'), undefined, 'the app cookie stays in the jar');
  const seen = upstream.nextRequest('/echo');
  await browser.get('/echo');
  assert.equal((await seen).headers.cookie, 'app=1');

  const copy = await browser.fork();
  await browser.get('/logout');
  assert.equal(await browser.cookie('__Host-coatcheck'), undefined, 'logout cleared the ticket in the client');
  assert.equal((await copy.get('/echo')).status, 401);
  const replay = await logs.waitForSecurityEvent('revoked');
  assert.equal(replay.event, 'session.replay');
  assert.equal(logs.securityEvents('forged').length, 0);
  assert.ok(!logs.lines.some((l) => JSON.stringify(l).includes((copy.jar.toJSON()?.cookies[0]?.value as string) ?? '\u0000')), 'no ticket in the log');

  await cc.close();
  closed = true;
  assert.equal(await accepts(cc.port), false);
});

test('a start failure (port taken) rejects and releases what was opened', async (t) => {
  const upstream = await startUpstream();
  t.after(() => upstream.close());
  const config = { listen: '127.0.0.1:0', upstream: upstream.origin, secrets: [TEST_SECRET], log: { level: 'silent' as const } };
  const first = await startCoatcheck(config);
  t.after(() => first.close());
  await assert.rejects(startCoatcheck({ ...config, listen: `127.0.0.1:${first.port}` }), /EADDRINUSE/);
});
