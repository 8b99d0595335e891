import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createStore } from '../../src/store/index.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { SessionMeta } from '../../src/store/types.js';
import { fakeClock, runStoreContract, type FakeClock } from './store.contract.js';
import { captureLogger } from '../helpers/logs.js';


runStoreContract('memory', async (clock) => {
  const { logger } = captureLogger();
  const store = new MemoryStore({ clock: clock.now, maxSessions: 10_000, logger });
  await store.start();
  return { store, advance: (ms) => clock.advance(ms), cleanup: () => store.close() };
});

const HOUR = 3_600_000;

function meta(clock: FakeClock): SessionMeta {
  const now = clock.now();
  return { created: now, deadline: now + 12 * HOUR, touched: now, family: 'f', issued: now };
}

function setup(maxSessions: number) {
  const clock = fakeClock(1_000_000);
  const log = captureLogger();
  const store = new MemoryStore({ clock: clock.now, maxSessions, logger: log.logger });
  return { clock, store, ...log };
}

describe('MemoryStore specifics', () => {
  test('createStore builds a MemoryStore with the configured bound and the injected clock', async () => {
    const clock = fakeClock(5000);
    const { logger, warnings } = captureLogger();
    const store = createStore({ kind: 'memory', prefix: 'x:', timeout: 250, connectTimeout: 5000, maxSessions: 2 }, { clock: clock.now, logger });
    assert.ok(store instanceof MemoryStore);
    assert.equal(store.kind, 'memory');
    await store.create('a', meta(clock), new Map(), 1000);
    await store.create('b', meta(clock), new Map(), 1000);
    await store.create('c', meta(clock), new Map(), 1000);
    assert.equal(store.size, 2);
    assert.equal(warnings().length, 1);
    clock.advance(1000);
    assert.deepEqual(await store.load('c'), { state: 'none' });
  });

  test('start() warns that the store is neither shared nor durable', async () => {
    const { store, warnings } = setup(10);
    await store.start();
    const w = warnings();
    assert.equal(w.length, 1);
    assert.match(w[0]?.msg ?? '', /neither shared between processes nor durable/);
  });

  test('when full, the least recently used record is evicted with a warning, never an error', async () => {
    const { clock, store, warnings } = setup(3);
    for (const k of ['a', 'b', 'c']) assert.equal(await store.create(k, meta(clock), new Map([['x', k]]), HOUR), true);
    assert.equal(warnings().length, 0);
    assert.equal((await store.load('a')).state, 'live'); // a is now the most recently used
    assert.equal(await store.create('d', meta(clock), new Map(), HOUR), true);
    assert.equal(store.size, 3);
    assert.deepEqual(await store.load('b'), { state: 'none' });
    for (const k of ['a', 'c', 'd']) assert.equal((await store.load(k)).state, 'live', k);
    const w = warnings();
    assert.equal(w.length, 1);
    assert.match(w[0]?.msg ?? '', /full/);
    assert.equal(w[0]?.evicted, 1);
    assert.equal(w[0]?.maxSessions, 3);

    // An update also counts as a use: after touching a, c is the least recently used.
    assert.equal(await store.update('a', { touched: clock.now() }), true);
    assert.equal(await store.create('e', meta(clock), new Map(), HOUR), true);
    assert.deepEqual(await store.load('c'), { state: 'none' });
    // Rate-limited: the second eviction within 10s does not warn again...
    assert.equal(warnings().length, 1);
    clock.advance(10_000);
    assert.equal(await store.create('f', meta(clock), new Map(), HOUR), true);
    // ...the next one after 10s does, counting the evictions it skipped.
    assert.equal(warnings().length, 2);
    assert.equal(warnings()[1]?.evicted, 2);
    assert.equal(store.size, 3);
  });

  test('tombstones are evicted before live records', async () => {
    const { clock, store, warnings } = setup(3);
    await store.create('a', meta(clock), new Map(), HOUR);
    await store.create('b', meta(clock), new Map(), HOUR);
    assert.equal(await store.revoke('x', HOUR), false);
    assert.equal(await store.create('c', meta(clock), new Map(), HOUR), true);
    assert.deepEqual(await store.load('x'), { state: 'none' });
    for (const k of ['a', 'b', 'c']) assert.equal((await store.load(k)).state, 'live', k);
    assert.equal(warnings().length, 1);
  });

  test('expired entries make room silently before anything live is evicted', async () => {
    const { clock, store, warnings } = setup(2);
    await store.create('short', meta(clock), new Map(), 1000);
    await store.create('long', meta(clock), new Map(), HOUR);
    clock.advance(1000);
    assert.equal(await store.create('new', meta(clock), new Map(), HOUR), true);
    assert.equal((await store.load('long')).state, 'live');
    assert.equal((await store.load('new')).state, 'live');
    assert.equal(warnings().length, 0);
  });

  test('the size bound holds under any mix of writes, rotate included', async () => {
    const { clock, store } = setup(5);
    for (let i = 0; i < 300; i++) {
      const k = `k${i}`;
      assert.equal(await store.create(k, meta(clock), new Map([['v', String(i)]]), HOUR), true);
      if (i % 3 === 0) await store.revoke(k, HOUR);
      else if (i % 5 === 1) assert.equal(await store.rotate(k, HOUR, `r${i}`, meta(clock), new Map(), HOUR), true);
      assert.ok(store.size <= 5, `size ${store.size} after step ${i}`);
    }
    // rotate with maxSessions 1: the bound still holds.
    const one = setup(1);
    await one.store.create('a', meta(one.clock), new Map(), HOUR);
    assert.equal(await one.store.rotate('a', HOUR, 'b', meta(one.clock), new Map([['x', 'y']]), HOUR), true);
    assert.equal(one.store.size, 1);
    assert.equal((await one.store.load('b')).state, 'live');
  });

  test('TTL expiry follows the injected clock; loads do not extend it, updates with ttlMs do', async () => {
    const { clock, store } = setup(100);
    await store.create('a', meta(clock), new Map(), 1000);
    await store.create('b', meta(clock), new Map(), 1000);
    await store.create('c', meta(clock), new Map(), 1000);
    await store.revoke('t', 1000);
    clock.advance(500);
    assert.equal((await store.load('a')).state, 'live');
    assert.equal(await store.update('b', { ttlMs: 1000 }), true); // b now expires at +1500
    clock.advance(499);
    assert.equal((await store.load('a')).state, 'live');
    assert.equal((await store.load('t')).state, 'revoked');
    clock.advance(1);
    // Writes see expiry too, before any load removed the entry: no resurrection.
    assert.equal(await store.update('c', { set: new Map([['x', 'y']]), ttlMs: 1000 }), false);
    assert.equal(await store.rotate('c', 1000, 'c2', meta(clock), new Map(), 1000), false);
    assert.equal(await store.create('t', meta(clock), new Map(), 1000), true); // the tombstone is gone
    assert.deepEqual(await store.load('c'), { state: 'none' });
    assert.deepEqual(await store.load('a'), { state: 'none' });
    assert.equal((await store.load('t')).state, 'live');
    assert.equal(await store.update('a', { ttlMs: 1000 }), false); // expired: no resurrection
    assert.deepEqual(await store.load('a'), { state: 'none' });
    assert.equal((await store.load('b')).state, 'live');
    clock.advance(500);
    assert.deepEqual(await store.load('b'), { state: 'none' });
  });

  test('the incremental sweep removes expired entries nobody reads again', async () => {
    const { clock, store, warnings } = setup(100_000);
    for (let i = 0; i < 100; i++) await store.create(`old${i}`, meta(clock), new Map([['x', 'y'.repeat(100)]]), 1000);
    for (let i = 0; i < 100; i++) await store.revoke(`tomb${i}`, 1000);
    assert.equal(store.size, 200);
    clock.advance(1000);
    // Only writes to other keys: the expired ones are never loaded again.
    for (let i = 0; i < 100; i++) await store.create(`new${i}`, meta(clock), new Map(), HOUR);
    assert.equal(store.size, 100);
    assert.equal(warnings().length, 0);
  });
});
