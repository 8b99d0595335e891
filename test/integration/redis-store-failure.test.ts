// RedisStore when Redis is away, frozen or crashes: failures are fast, typed, quiet, and the
// store recovers by itself. Bounds are generous correctness bounds, not speed benchmarks.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { performance } from 'node:perf_hooks';
import { StoreUnavailableError } from '../../src/errors.js';
import { RedisStore } from '../../src/store/redis.js';
import { freePort, redisForSuite } from '../helpers/redis-server.js';
import { captureLogger } from '../helpers/logs.js';


const HOUR = 3_600_000;
const MARGIN_MS = 1500;
const data = Buffer.from('sealed record');

/** Retries `fn` until it resolves, polling; fails with the last error after `timeoutMs`. */
async function eventually<T>(fn: () => Promise<T>, timeoutMs: number): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (performance.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

/** Runs `fn`, expecting a rejection; returns the error and how long it took. */
async function timedFailure(fn: () => Promise<unknown>): Promise<{ err: unknown; ms: number }> {
  const t0 = performance.now();
  try {
    await fn();
  } catch (err) {
    return { err, ms: performance.now() - t0 };
  }
  assert.fail('expected a rejection');
}

/** Sockets and timers alive in this process (ioredis' reconnect loop always holds one of them). */
function ioResources(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'Timeout').length;
}

/** Waits (polling on setImmediate, which is not counted) until sockets + timers are back to `baseline`. */
async function expectResourcesBackTo(baseline: number, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (ioResources() > baseline) {
    if (performance.now() > deadline) {
      assert.fail(`still ${ioResources()} sockets/timers alive (baseline ${baseline}): ${process.getActiveResourcesInfo().join(', ')}`);
    }
    await new Promise((r) => setImmediate(r));
  }
}

/**
 * Listens on `port` and resets every connection; resolves once `count` were reset and the
 * listener is closed, rejects if they do not come within `timeoutMs`.
 */
function resetConnections(port: number, count: number, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let seen = 0;
    const timer = setTimeout(() => {
      srv.close();
      reject(new Error(`only ${seen} of ${count} reconnect attempts within ${timeoutMs}ms`));
    }, timeoutMs);
    const srv = createServer((socket) => {
      seen += 1;
      socket.on('error', () => {});
      socket.resetAndDestroy();
      if (seen === count) {
        clearTimeout(timer);
        srv.close(() => resolve(seen));
      }
    });
    srv.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    srv.listen(port, '127.0.0.1');
  });
}

describe('RedisStore failure handling', () => {
  const redis = redisForSuite();

  function newStore(t: TestContext, over: { url?: string; timeout?: number; connectTimeout?: number } = {}) {
    const log = captureLogger();
    const store = new RedisStore({
      target: { mode: 'single', url: over.url ?? redis().url },
      prefix: `fail${Math.random().toString(36).slice(2, 8)}:`,
      timeout: over.timeout ?? 300,
      connectTimeout: over.connectTimeout ?? 5000,
      logger: log.logger,
    });
    t.after(() => store.close());
    // ioredis prints "[ioredis] Unhandled error event" here when nobody listens for 'error'.
    const consoleError = t.mock.method(console, 'error', () => {});
    return { store, consoleError, ...log };
  }

  test('start() with nothing listening fails with StoreUnavailableError within connectTimeout, names host:port, never the password, and leaves nothing running', async (t) => {
    const port = await freePort();
    const connectTimeout = 600;
    const { store, logs, consoleError } = newStore(t, { url: `redis://:hunter2-secret@127.0.0.1:${port}`, connectTimeout });
    const baseline = ioResources();
    const { err, ms } = await timedFailure(() => store.start());
    assert.ok(err instanceof StoreUnavailableError, String(err));
    assert.equal(err.code, 'COATCHECK_ERR_STORE_UNAVAILABLE');
    assert.equal(err.status, 503);
    assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
    assert.doesNotMatch(err.message, /hunter2/);
    assert.ok(ms < connectTimeout + MARGIN_MS, `start() took ${ms}ms`);
    for (const line of logs.lines) assert.doesNotMatch(JSON.stringify(line), /hunter2/);
    // No reconnect loop and no socket survive the failed start.
    await expectResourcesBackTo(baseline, 1500);
    // Commands after a failed start fail the same way; close() resolves, twice.
    await assert.rejects(store.load('k'), StoreUnavailableError);
    await store.close();
    await store.close();
    assert.equal(consoleError.mock.callCount(), 0);
  });

  test('start() against a frozen Redis fails within connectTimeout and leaves nothing running', async (t) => {
    const connectTimeout = 800;
    const { store } = newStore(t, { connectTimeout, timeout: 200 });
    await redis().pause();
    t.after(() => redis().resume());
    const baseline = ioResources();
    const { err, ms } = await timedFailure(() => store.start());
    assert.ok(err instanceof StoreUnavailableError, String(err));
    assert.ok(ms < connectTimeout + MARGIN_MS, `start() took ${ms}ms`);
    await expectResourcesBackTo(baseline, 1500);
    await redis().resume();
    // A later start() succeeds once Redis answers again.
    await eventually(() => store.start(), 15_000);
    await store.ping();
  });

  test('while Redis is frozen every command rejects with StoreUnavailableError within the timeout; it recovers after', async (t) => {
    const timeout = 300;
    const { store, consoleError } = newStore(t, { timeout });
    await store.start();
    assert.equal(await store.create('k', data, HOUR), true);
    await redis().pause();
    t.after(() => redis().resume());
    const ops: Record<string, () => Promise<unknown>> = {
      ping: () => store.ping(),
      // A load alone is a GET; it goes out a turn after the others, so it is not in their MGET.
      load: () => new Promise<void>((resolve) => setImmediate(resolve)).then(() => store.load('k')),
      // Loads asked for together are one MGET: every one of them fails.
      loadTogether: () => Promise.allSettled([store.load('k'), store.load('k2')]).then((r) => {
        if (r.every((x) => x.status === 'rejected')) throw (r[0] as PromiseRejectedResult).reason;
        throw new Error('a load of the batch did not fail');
      }),
      create: () => store.create('k-new', data, HOUR),
      update: () => store.update('k', 1, data, HOUR),
      revoke: () => store.revoke('k-other', HOUR),
      revokeFamily: () => store.revokeFamily('fam', 'k-other', HOUR),
      rotate: () => store.rotate('k-none', 1, 1000, 'k-rot', data, HOUR),
    };
    const results = await Promise.all(Object.entries(ops).map(async ([name, op]) => ({ name, ...(await timedFailure(op)) })));
    for (const { name, err, ms } of results) {
      assert.ok(err instanceof StoreUnavailableError, `${name}: ${String(err)}`);
      assert.match(err.message, /timed out/i, name);
      assert.ok(ms < timeout + MARGIN_MS, `${name} took ${ms}ms`);
    }
    await redis().resume();
    await eventually(() => store.ping(), 15_000);
    assert.equal((await store.load('k')).state, 'live');
    assert.equal(consoleError.mock.callCount(), 0);
  });

  test('close() is bounded while Redis is frozen', async (t) => {
    const timeout = 300;
    const { store } = newStore(t, { timeout });
    await store.start();
    await redis().pause();
    t.after(() => redis().resume());
    const t0 = performance.now();
    await store.close();
    const ms = performance.now() - t0;
    assert.ok(ms < timeout + MARGIN_MS, `close() took ${ms}ms`);
    await assert.rejects(store.ping(), StoreUnavailableError);
  });

  test('after Redis crashes and restarts, the store recovers by itself, logging quietly', async (t) => {
    const timeout = 300;
    const { store, logs, consoleError } = newStore(t, { timeout });
    await store.start();
    assert.equal(await store.create('k1', data, HOUR), true);
    const t0 = performance.now();
    await redis().kill();
    // While it is down, commands fail fast and typed.
    for (let i = 0; i < 5; i++) {
      const { err, ms } = await timedFailure(() => store.load('k1'));
      assert.ok(err instanceof StoreUnavailableError, String(err));
      assert.ok(ms < timeout + MARGIN_MS, `load took ${ms}ms`);
    }
    // Let the store fail to reconnect several times (each attempt is an event: a connection
    // reset by a stand-in listener on Redis' port), so unthrottled logging would show.
    const resets = await resetConnections(redis().port, 3, 15_000);
    assert.ok(resets >= 3);
    await redis().restart();
    await eventually(() => store.ping(), 15_000);
    const downMs = performance.now() - t0;
    // The restarted server is empty (no persistence); scripts load again on their own.
    assert.deepEqual(await store.load('k1'), { state: 'none' });
    assert.equal(await store.create('k2', data, HOUR), true);
    assert.equal(await store.update('k2', 1, data, HOUR), 'ok');
    assert.equal(await store.revoke('k2', HOUR), true);

    const trouble = logs.lines.filter((l) => l.level === 'warn' || l.level === 'error');
    assert.ok(trouble.length >= 1, 'the outage was logged');
    // Rate-limited: at most one line per 10s of outage, although ioredis retried many times.
    assert.ok(trouble.length <= 1 + Math.ceil(downMs / 10_000), `${trouble.length} warn lines in ${downMs}ms`);
    assert.ok(logs.lines.some((l) => /restored/.test(l.msg ?? '')), 'the recovery was logged');
    assert.equal(consoleError.mock.callCount(), 0);
  });
});
