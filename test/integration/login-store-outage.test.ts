// A login while the session store is known to be unreachable is answered 503 before it reaches
// the app: the session it would create could not be stored, and the app's login side effects
// (audit, lockout counters, one-time codes) must not run for a login that cannot succeed.
// A real redis-server that the test stops; "known unreachable" is the store's own view
// (SessionStore.available(): the Redis connection is not ready).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { cookieValue, send } from '../helpers/client.js';
import { DEFAULT_RULES, startCoatcheck, storeOverrides, type Harness } from '../helpers/coatcheck.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

/** Resolves once `cond()` holds, checked on every turn of the event loop; fails after `ms`. */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting: ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

describe('a login while the store is unreachable (real redis-server, stopped by the test)', () => {
  let redis: RedisServer;
  let upstream: Upstream;
  let h: Harness;
  let logins = 0;

  before(async () => {
    redis = await startRedis();
    upstream = await startUpstream();
    upstream.route('/login', (_req, res) => {
      logins += 1;
      res.setHeader('set-cookie', 'app_session=user-alice; Path=/');
      res.end('logged in');
    });
    h = await startCoatcheck(upstream.origin, { ...DEFAULT_RULES, ...storeOverrides({ kind: 'redis', url: redis.url }, 'login:') });
  });
  after(async () => {
    await h?.close();
    await upstream?.close();
    await redis?.stop();
  });

  test('store up: the login reaches the app and gets a ticket', async () => {
    assert.equal(h.app.store.available(), true);
    const r = await send(h.port, '/login', { method: 'POST' });
    assert.equal(r.status, 200);
    assert.equal(logins, 1);
    assert.ok(cookieValue(r.setCookies, 'coatcheck'));
  });

  test('store down: 503 before the app, which is never contacted; other anonymous traffic still flows; back once Redis is', async () => {
    await redis.kill();
    await until(() => !h.app.store.available(), 10_000, 'coatcheck to notice that Redis went away');

    const seen = upstream.received.length;
    const r = await send(h.port, '/login', { method: 'POST', body: 'user=alice&password=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    assert.equal(r.status, 503);
    assert.match(r.body, /COATCHECK_ERR_STORE_UNAVAILABLE/);
    assert.deepEqual(r.setCookies, []);
    assert.equal(logins, 1, "the app's login ran although its session could not be stored");
    assert.equal(upstream.received.length, seen, 'the app was contacted');
    const failed = h.logs.events('request.failed').at(-1);
    assert.equal(failed?.code, 'COATCHECK_ERR_STORE_UNAVAILABLE');

    // A request that needs no session (anonymous, not a login) is not refused.
    assert.equal((await send(h.port, '/echo')).status, 200);

    await redis.restart();
    await until(() => h.app.store.available(), 15_000, 'coatcheck to reconnect to Redis');
    const again = await send(h.port, '/login', { method: 'POST' });
    assert.equal(again.status, 200);
    assert.equal(logins, 2);
    assert.ok(cookieValue(again.setCookies, 'coatcheck'));
  });
});
