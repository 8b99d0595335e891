import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createStore } from '../../src/store/index.js';
import { MemoryStore } from '../../src/store/memory.js';
import { runStoreContract } from './store.contract.js';
import { FakeClock } from '../helpers/clock.js';
import { captureLogger } from '../helpers/logs.js';


runStoreContract('memory', async (clock) => {
  const { logger } = captureLogger();
  const store = new MemoryStore({ clock: clock.now, maxSessions: 10_000, logger });
  await store.start();
  return { store, advance: (ms) => clock.advance(ms), cleanup: () => store.close() };
});

const HOUR = 3_600_000;

function data(text = 'sealed'): Buffer {
  return Buffer.from(text, 'utf8');
}

function alias(clock: FakeClock, family = 'f') {
  return { successor: 'succ', graceUntil: clock.now() + 5000, family, familyDeadline: clock.now() + 12 * HOUR };
}

function setup(maxSessions: number) {
  const clock = new FakeClock(1_000_000);
  const log = captureLogger();
  const store = new MemoryStore({ clock: clock.now, maxSessions, logger: log.logger });
  return { clock, store, ...log };
}

describe('MemoryStore specifics', () => {
  test('createStore builds a MemoryStore with the configured bound and the injected clock', async () => {
    const clock = new FakeClock(5000);
    const { logger, logs } = captureLogger();
    const store = createStore({ kind: 'memory', prefix: 'x:', timeout: 250, connectTimeout: 5000, maxSessions: 2, replicas: 0, replicaTimeout: 200 }, { clock: clock.now, logger });
    assert.ok(store instanceof MemoryStore);
    assert.equal(store.kind, 'memory');
    await store.create('a', data(), 1000);
    await store.create('b', data(), 1000);
    await store.create('c', data(), 1000);
    assert.equal(store.size, 2);
    assert.equal(logs.warnings().length, 1);
    clock.advance(1000);
    assert.deepEqual(await store.load('c'), { state: 'none' });
  });

  test('the size bound must be a positive integer', () => {
    const { logger } = captureLogger();
    for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => new MemoryStore({ clock: Date.now, maxSessions: bad, logger }), RangeError, String(bad));
    }
  });

  test('start() warns that the store is neither shared nor durable', async () => {
    const { store, logs } = setup(10);
    await store.start();
    const w = logs.warnings();
    assert.equal(w.length, 1);
    assert.match(w[0]?.msg ?? '', /neither shared between processes nor durable/);
  });

  test('when full, the least recently used record is evicted with a warning, never an error', async () => {
    const { clock, store, logs } = setup(3);
    for (const k of ['a', 'b', 'c']) assert.equal(await store.create(k, data(k), HOUR), true);
    assert.equal(logs.warnings().length, 0);
    assert.equal((await store.load('a')).state, 'live'); // a is now the most recently used
    assert.equal(await store.create('d', data(), HOUR), true);
    assert.equal(store.size, 3);
    assert.deepEqual(await store.load('b'), { state: 'none' });
    for (const k of ['a', 'c', 'd']) assert.equal((await store.load(k)).state, 'live', k);
    const w = logs.warnings();
    assert.equal(w.length, 1);
    assert.match(w[0]?.msg ?? '', /full/);
    assert.equal(w[0]?.evicted, 1);
    assert.equal(w[0]?.maxSessions, 3);

    // An update also counts as a use: after updating a, c is the least recently used.
    assert.equal(await store.update('a', 1, data('a2'), HOUR), 'ok');
    assert.equal(await store.create('e', data(), HOUR), true);
    assert.deepEqual(await store.load('c'), { state: 'none' });
    // A conflicting update is no use: d stays the least recently used...
    assert.equal(await store.update('d', 7, data('x'), HOUR), 'conflict');
    // Rate-limited: the second eviction within 10s does not warn again...
    assert.equal(logs.warnings().length, 1);
    clock.advance(10_000);
    assert.equal(await store.create('f', data(), HOUR), true);
    assert.deepEqual(await store.load('d'), { state: 'none' });
    // ...the next one after 10s does, counting the evictions it skipped.
    assert.equal(logs.warnings().length, 2);
    assert.equal(logs.warnings()[1]?.evicted, 2);
    assert.equal(store.size, 3);
  });

  test('tombstones and aliases are evicted before live records', async () => {
    const { clock, store, logs } = setup(4);
    await store.create('a', data(), HOUR);
    await store.create('b', data(), HOUR);
    assert.equal(await store.revoke('x', HOUR), false);
    assert.equal(await store.rotate('b', 1, HOUR, 'b2', data(), HOUR, alias(clock)), 'ok'); // b: an alias
    assert.equal(store.size, 4);
    assert.equal(await store.create('c', data(), HOUR), true);
    assert.deepEqual(await store.load('x'), { state: 'none' });
    assert.equal(await store.create('d', data(), HOUR), true);
    assert.deepEqual(await store.load('b'), { state: 'none' });
    for (const k of ['a', 'b2', 'c', 'd']) assert.equal((await store.load(k)).state, 'live', k);
    assert.equal(logs.warnings().length, 1);
  });

  test('expired entries make room silently before anything live is evicted', async () => {
    const { clock, store, logs } = setup(2);
    await store.create('short', data(), 1000);
    await store.create('long', data(), HOUR);
    clock.advance(1000);
    assert.equal(await store.create('new', data(), HOUR), true);
    assert.equal((await store.load('long')).state, 'live');
    assert.equal((await store.load('new')).state, 'live');
    assert.equal(logs.warnings().length, 0);
  });

  test('the size bound holds under any mix of writes, rotate with and without an alias and revokeFamily included', async () => {
    const { clock, store } = setup(5);
    for (let i = 0; i < 300; i++) {
      const k = `k${i}`;
      assert.equal(await store.create(k, data(String(i)), HOUR), true);
      if (i % 3 === 0) await store.revoke(k, HOUR);
      else if (i % 5 === 1) assert.equal(await store.rotate(k, 1, HOUR, `r${i}`, data(), HOUR), 'ok');
      else if (i % 5 === 2) assert.equal(await store.rotate(k, 1, HOUR, `r${i}`, data(), HOUR, alias(clock, `fam${i % 4}`)), 'ok');
      else if (i % 7 === 0) await store.revokeFamily(`fam${i % 4}`, `gone${i}`, HOUR);
      else assert.equal(await store.update(k, 1, data('u'), HOUR), 'ok');
      assert.ok(store.size <= 5, `size ${store.size} after step ${i}`);
    }
    // rotate with maxSessions 1: the bound still holds, the new record wins.
    for (const withAlias of [false, true]) {
      const one = setup(1);
      await one.store.create('a', data(), HOUR);
      assert.equal(await one.store.rotate('a', 1, HOUR, 'b', data('y'), HOUR, withAlias ? alias(one.clock) : undefined), 'ok');
      assert.equal(one.store.size, 1);
      assert.equal((await one.store.load('b')).state, 'live');
    }
  });

  test('TTL expiry follows the injected clock; loads do not extend it, updates set it', async () => {
    const { clock, store } = setup(100);
    await store.create('a', data(), 1000);
    await store.create('b', data(), 1000);
    await store.create('c', data(), 1000);
    await store.revoke('t', 1000);
    await store.create('o', data(), 5000);
    await store.rotate('o', 1, 1000, 'o2', data(), 5000, alias(clock)); // o: an alias until +1000
    clock.advance(500);
    assert.equal((await store.load('a')).state, 'live');
    assert.equal(await store.update('b', 1, data('b2'), 1000), 'ok'); // b now expires at +1500
    clock.advance(499);
    assert.equal((await store.load('a')).state, 'live');
    assert.equal((await store.load('t')).state, 'revoked');
    assert.equal((await store.load('o')).state, 'renewed');
    clock.advance(1);
    // Writes see expiry too, before any load removed the entry: no resurrection.
    assert.equal(await store.update('c', 1, data('late'), 1000), 'gone');
    assert.equal(await store.rotate('c', 1, 1000, 'c2', data(), 1000), 'gone');
    assert.equal(await store.create('t', data(), 1000), true); // the tombstone is gone
    assert.equal(await store.create('o', data('again'), 1000), true); // so is the alias
    assert.deepEqual(await store.load('c'), { state: 'none' });
    assert.deepEqual(await store.load('c2'), { state: 'none' });
    assert.deepEqual(await store.load('a'), { state: 'none' });
    assert.equal((await store.load('t')).state, 'live');
    assert.equal(await store.update('a', 1, data('late'), 1000), 'gone'); // expired: no resurrection
    assert.deepEqual(await store.load('a'), { state: 'none' });
    assert.equal((await store.load('b')).state, 'live');
    clock.advance(500);
    assert.deepEqual(await store.load('b'), { state: 'none' });
  });

  test('the incremental sweep removes expired entries nobody reads again, aliases included', async () => {
    const { clock, store, logs } = setup(100_000);
    for (let i = 0; i < 100; i++) await store.create(`old${i}`, data('y'.repeat(100)), 1000);
    for (let i = 0; i < 50; i++) await store.revoke(`tomb${i}`, 1000);
    for (let i = 0; i < 50; i++) {
      await store.create(`pre${i}`, data(), 1000);
      await store.rotate(`pre${i}`, 1, 1000, `post${i}`, data(), 1000, alias(clock, `fam${i}`));
    }
    assert.equal(store.size, 250);
    clock.advance(1000);
    // Only writes to other keys: the expired ones are never loaded again.
    for (let i = 0; i < 100; i++) await store.create(`new${i}`, data(), HOUR);
    assert.equal(store.size, 100);
    assert.equal(logs.warnings().length, 0);
  });

  test('a closed store drops everything it held', async () => {
    const { store } = setup(10);
    await store.create('a', data(), HOUR);
    await store.close();
    assert.equal(store.size, 0);
  });
});
