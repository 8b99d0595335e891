// The store contract against a real redis-server (one per suite), plus checks of the data
// layout in Redis itself through a raw client.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { StoreUnavailableError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import { createStore } from '../../src/store/index.js';
import { RedisStore } from '../../src/store/redis.js';
import type { SessionMeta } from '../../src/store/types.js';
import { redisForSuite } from '../helpers/redis-server.js';
import { runStoreContract } from './store.contract.js';
import { captureLogger } from '../helpers/logs.js';


const redis = redisForSuite();

let prefixes = 0;
function nextPrefix(): string {
  prefixes += 1;
  return `t${prefixes}:`;
}

/** Generous timeouts: these are correctness tests on a possibly loaded machine. */
function makeStore(prefix: string, logger: Logger): RedisStore {
  return new RedisStore({ url: redis().url, prefix, timeout: 5000, connectTimeout: 10_000, logger });
}

runStoreContract('redis', async (clock) => {
  const prefix = nextPrefix();
  const { logger } = captureLogger();
  const store = makeStore(prefix, logger);
  const peer = makeStore(prefix, logger);
  try {
    await store.start();
    await peer.start();
  } catch (err) {
    await Promise.all([store.close(), peer.close()]);
    throw err;
  }
  return {
    store,
    peer,
    advance: (ms) => clock.advance(ms),
    pttl: (key) => redis().client().pttl(`${prefix}s:${key}`),
    familyPttl: (family) => redis().client().pttl(`${prefix}f:${family}`),
    expireNow: async (key) => {
      // A non-positive PEXPIRE removes the key at once, as its TTL running out would.
      await redis().client().pexpire(`${prefix}s:${key}`, 0);
    },
    cleanup: async () => {
      await Promise.all([store.close(), peer.close()]);
    },
  };
});

const HOUR = 3_600_000;

describe('RedisStore specifics', () => {
  async function setup(t: TestContext) {
    const prefix = nextPrefix();
    const log = captureLogger();
    const store = makeStore(prefix, log.logger);
    t.after(() => store.close());
    await store.start();
    const raw = redis().client();
    return { prefix, store, raw, ...log, rawKey: (k: string) => `${prefix}s:${k}` };
  }

  const meta: SessionMeta = {
    created: 1_700_000_000_000,
    deadline: 1_700_043_200_000,
    touched: 1_700_000_000_500,
    family: 'fam',
    issued: 1_700_000_000_000,
    user: 'alice',
  };

  test('one hash per session: meta under "@" fields as decimal strings, jar fields under their own names', async (t) => {
    const { prefix, store, raw, rawKey } = await setup(t);
    assert.equal(await store.create('k1', meta, new Map([['sid;example.com;/', 'enc-1']]), HOUR), true);
    assert.deepEqual(await raw.hgetall(rawKey('k1')), {
      '@c': '1700000000000',
      '@d': '1700043200000',
      '@t': '1700000000500',
      '@f': 'fam',
      '@i': '1700000000000',
      '@u': 'alice',
      'sid;example.com;/': 'enc-1',
    });
    assert.deepEqual(await raw.keys(`${prefix}*`), [rawKey('k1')]);

    const before = Date.now();
    assert.equal(await store.revoke('k1', 60_000), true);
    const after = Date.now();
    const tomb = await raw.hgetall(rawKey('k1'));
    assert.deepEqual(Object.keys(tomb), ['@r']);
    const deadline = Number(tomb['@r']);
    assert.ok(deadline >= before + 60_000 - 1000 && deadline <= after + 60_000 + 1000, `@r ${deadline}`);
    const pttl = await raw.pttl(rawKey('k1'));
    assert.ok(pttl > 0 && pttl <= 60_000, `PTTL ${pttl}`);
  });

  test('families and aliases in Redis: a set per family until meta.deadline, an alias hash of @n @g @d @f with its PTTL; revokeFamily leaves no family key', async (t) => {
    const { prefix, store, raw, rawKey } = await setup(t);
    const familyKey = `${prefix}f:famR`;
    const deadline = Date.now() + 12 * HOUR;
    const m: SessionMeta = { created: Date.now(), deadline, touched: Date.now(), family: 'famR', issued: Date.now() };
    const assertFamilyTtl = async () => {
      const most = deadline - Date.now(); // the server reads its clock later than this
      const left = await raw.pttl(familyKey);
      assert.ok(left <= most && left > most - 10_000, `family PTTL ${left}, expected about ${most}`);
    };
    assert.equal(await store.create('k1', m, new Map([['a', '1']]), HOUR), true);
    assert.equal(await store.create('k2', m, new Map(), HOUR), true);
    assert.deepEqual((await raw.smembers(familyKey)).sort(), [rawKey('k1'), rawKey('k2')]);
    await assertFamilyTtl();

    const graceUntil = Date.now() + 30_000;
    const before = Date.now();
    assert.equal(await store.rotate('k1', 60_000, 'k3', { ...m, issued: Date.now() }, new Map([['a', '1']]), HOUR, { successor: 'sealed-succ', graceUntil }), true);
    const after = Date.now();
    const alias = await raw.hgetall(rawKey('k1'));
    assert.deepEqual(Object.keys(alias).sort(), ['@d', '@f', '@g', '@n']);
    assert.equal(alias['@n'], 'sealed-succ');
    assert.equal(alias['@g'], String(graceUntil));
    assert.equal(alias['@f'], 'famR');
    const aliasEnd = Number(alias['@d']);
    assert.ok(aliasEnd >= before + 60_000 - 1000 && aliasEnd <= after + 60_000 + 1000, `@d ${aliasEnd}`);
    const aliasTtl = await raw.pttl(rawKey('k1'));
    assert.ok(aliasTtl > 0 && aliasTtl <= 60_000, `alias PTTL ${aliasTtl}`);
    assert.deepEqual((await raw.smembers(familyKey)).sort(), [rawKey('k1'), rawKey('k2'), rawKey('k3')]);
    await assertFamilyTtl();

    assert.equal(await store.revokeFamily('famR', 90_000), 2); // k2, k3
    assert.deepEqual(await raw.keys(`${prefix}f:*`), []);
    for (const k of ['k1', 'k2', 'k3']) {
      assert.deepEqual(Object.keys(await raw.hgetall(rawKey(k))), ['@r'], k);
      const pttl = await raw.pttl(rawKey(k));
      assert.ok(pttl > 0 && pttl <= 90_000, `${k}: PTTL ${pttl}`);
    }
    assert.deepEqual((await raw.keys(`${prefix}*`)).sort(), [rawKey('k1'), rawKey('k2'), rawKey('k3')]);
  });

  test('a racing update never leaves anything but the tombstone (checked in Redis itself)', async (t) => {
    const { prefix, store, raw, rawKey } = await setup(t);
    const peer = makeStore(prefix, captureLogger().logger);
    t.after(() => peer.close());
    await peer.start();
    for (let i = 0; i < 50; i++) {
      const k = `r${i}`;
      await store.create(k, meta, new Map([['a', '1']]), HOUR);
      const upd = () => peer.update(k, { set: new Map([['late', 'x']]), touched: 1, ttlMs: 10 * HOUR, user: 'late' });
      const rev = () => store.revoke(k, 30_000);
      if (i % 2) await Promise.all([upd(), rev()]);
      else await Promise.all([rev(), upd()]);
      assert.deepEqual(Object.keys(await raw.hgetall(rawKey(k))), ['@r'], k);
      const pttl = await raw.pttl(rawKey(k));
      assert.ok(pttl > 0 && pttl <= 30_000, `${k}: PTTL ${pttl}`);
    }
  });

  test('a hash with jar fields but no record or tombstone is corrupt: none, with a warning that does not spell the key', async (t) => {
    const { store, raw, rawKey, warnings } = await setup(t);
    const key = 'corrupt-key-0123456789abcdef';
    await raw.hset(rawKey(key), 'sid;example.com;/', 'v');
    assert.deepEqual(await store.load(key), { state: 'none' });
    const w = warnings();
    assert.equal(w.length, 1);
    assert.match(w[0]?.msg ?? '', /corrupt/);
    assert.doesNotMatch(JSON.stringify(w[0]), new RegExp(key));

    await raw.hset(rawKey('nodeadline'), '@c', '1', '@t', '1', '@f', 'f');
    assert.deepEqual(await store.load('nodeadline'), { state: 'none' });
    assert.equal(warnings().length, 2);

    // A damaged tombstone still reads as revoked: fail closed.
    await raw.hset(rawKey('badtomb'), '@r', '5', 'cookie', 'x');
    assert.deepEqual(await store.load('badtomb'), { state: 'revoked', deadline: 5 });
    assert.equal(warnings().length, 3);
  });

  test('a key of another type fails loads with StoreUnavailableError; revoke still voids it', async (t) => {
    const { store, raw, rawKey } = await setup(t);
    await raw.set(rawKey('str'), 'x');
    await assert.rejects(store.load('str'), StoreUnavailableError);
    assert.equal(await store.revoke('str', 60_000), false);
    assert.equal((await store.load('str')).state, 'revoked');
  });

  test('scripts still run after the server forgets them (SCRIPT FLUSH, as after a restart)', async (t) => {
    const { store, raw } = await setup(t);
    assert.equal(await store.create('k1', meta, new Map(), HOUR), true);
    assert.equal(await store.update('k1', { set: new Map([['a', '1']]) }), true);
    await raw.script('FLUSH');
    assert.equal(await store.update('k1', { set: new Map([['b', '2']]) }), true);
    assert.equal(await store.rotate('k1', 1000, 'k2', meta, new Map([['c', '3']]), HOUR), true);
    assert.equal(await store.revoke('k2', 1000), true);
    assert.equal(await store.create('k3', meta, new Map(), HOUR), true);
  });

  test('createStore builds a working RedisStore from the store config', async (t) => {
    const prefix = nextPrefix();
    const store = createStore(
      { kind: 'redis', url: redis().url, prefix, timeout: 5000, connectTimeout: 10_000, maxSessions: 10 },
      { clock: Date.now, logger: captureLogger().logger },
    );
    t.after(() => store.close());
    assert.ok(store instanceof RedisStore);
    assert.equal(store.kind, 'redis');
    await store.start();
    assert.equal(await store.create('k', meta, new Map([['a', '1']]), HOUR), true);
    assert.deepEqual(Object.keys(await redis().client().hgetall(`${prefix}s:k`)).sort(), ['@c', '@d', '@f', '@i', '@t', '@u', 'a']);
  });

  test('prefixes keep stores apart', async (t) => {
    const a = await setup(t);
    const b = await setup(t);
    await a.store.create('same', meta, new Map([['who', 'a']]), HOUR);
    assert.deepEqual(await b.store.load('same'), { state: 'none' });
    assert.equal(await b.store.create('same', meta, new Map([['who', 'b']]), HOUR), true);
    const la = await a.store.load('same');
    assert.equal(la.state === 'live' && la.fields.get('who'), 'a');
  });
});
