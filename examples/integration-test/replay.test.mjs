// An integration test of an app behind coatcheck, as you would write it in your own project:
// coatcheck (memory store) in front of a dummy app, a browser-like client, and the assertion
// that matters: after logout, a copy of the old ticket is refused and logged as a replay.
//
// Run it with `node --test`. It imports coatcheck by its package name, as your tests would
// (inside this repository that resolves to the package itself, built into dist/).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { startCoatcheck } from 'coatcheck';
import { CookieClient, LogRecorder, startDummyUpstream } from 'coatcheck/testing';

test('a ticket copied before logout is rejected after it, and logged as a replay', async (t) => {
  // The app: /login sets its session cookie, /whoami tells whether it came back, /logout ends it.
  const app = await startDummyUpstream((req, res) => {
    if (req.url === '/login') res.setHeader('set-cookie', 'app_session=alice; Path=/; HttpOnly');
    const loggedIn = /(?:^|;\s*)app_session=alice(?:;|$)/.test(req.headers.cookie ?? '');
    res.end(loggedIn ? 'hello alice' : 'hello stranger');
  });
  t.after(() => app.close());

  const logs = new LogRecorder();
  const proxy = await startCoatcheck(
    {
      listen: '127.0.0.1:0',
      upstream: app.url,
      store: { kind: 'memory' },
      // A fresh secret per run; in production it comes from your secret store.
      secrets: [randomBytes(32).toString('base64url')],
      logout: [{ path: '/logout' }],
      log: { level: 'info' },
    },
    { logDestination: logs },
  );
  t.after(() => proxy.close());

  const browser = new CookieClient(proxy.url);
  await browser.post('/login');
  assert.equal((await browser.get('/whoami')).body, 'hello alice');
  // The app's cookie stayed at the counter: the browser holds only the ticket.
  assert.equal(await browser.cookie('app_session'), undefined);

  const thief = await browser.fork();
  await browser.get('/logout');
  assert.equal((await browser.get('/whoami')).body, 'hello stranger');

  const replay = await thief.get('/whoami');
  assert.equal(replay.status, 401);
  const event = await logs.waitForSecurityEvent('revoked');
  assert.equal(event.event, 'session.replay');
});
