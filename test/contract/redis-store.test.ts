// The store contract against a real redis-server (one per suite), plus checks of the data
// layout in Redis itself through a raw client.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { StoreUnavailableError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import { createStore } from '../../src/store/index.js';
import { RedisStore } from '../../src/store/redis.js';
import type { LoadResult, RenewalAlias } from '../../src/store/types.js';
import { freePort, redisForSuite } from '../helpers/redis-server.js';
import { runStoreContract } from './store.contract.js';
import { captureLogger } from '../helpers/logs.js';
import { pino } from 'pino';


const redis = redisForSuite();

let prefixes = 0;
function nextPrefix(): string {
  prefixes += 1;
  return `t${prefixes}:`;
}

/** Generous timeouts: these are correctness tests on a possibly loaded machine. */
function makeStore(prefix: string, logger: Logger): RedisStore {
  return new RedisStore({ target: { mode: 'single', url: redis().url }, prefix, timeout: 5000, connectTimeout: 10_000, logger });
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
    fingerprintPttl: (fp) => redis().client().pttl(`${prefix}p:${fp}`),
    familyPttl: (family) => redis().client().pttl(`${prefix}f:${family}`),
    // A non-positive PEXPIRE removes the key at once, as its TTL running out would.
    expireNow: async (key) => {
      await redis().client().pexpire(`${prefix}s:${key}`, 0);
    },
    expireFamilyNow: async (family) => {
      await redis().client().pexpire(`${prefix}f:${family}`, 0);
    },
    cleanup: async () => {
      await Promise.all([store.close(), peer.close()]);
    },
  };
});

const HOUR = 3_600_000;
/** How far a server-side deadline or TTL may drift from the ideal on a loaded machine. */
const SLACK_MS = 10_000;

function b(text: string): Buffer {
  return Buffer.from(text, 'utf8');
}

describe('RedisStore specifics', () => {
  async function setup(t: TestContext) {
    const prefix = nextPrefix();
    const log = captureLogger();
    const store = makeStore(prefix, log.logger);
    t.after(() => store.close());
    await store.start();
    const raw = redis().client();
    const rawKey = (k: string) => `${prefix}s:${k}`;
    const familyKey = (f: string) => `${prefix}f:${f}`;
    /** The raw string at a session key (null when there is none). */
    const get = (k: string) => raw.getBuffer(rawKey(k));
    /** Asserts a key's PTTL is about `ms` (at most `ms`, and not much less). */
    const assertPttl = async (key: string, ms: number) => {
      const left = await raw.pttl(key);
      assert.ok(left <= ms && left > ms - SLACK_MS, `PTTL of ${key} is ${left}, expected about ${ms}`);
    };
    /** Asserts a raw value is a tombstone `R<deadline>` with the deadline about now + ttl. */
    const assertTombstone = async (k: string, ttl: number) => {
      const v = (await get(k))?.toString('latin1') ?? '(none)';
      assert.match(v, /^R\d+$/, `${k}: ${v}`);
      const deadline = Number(v.slice(1));
      assert.ok(Math.abs(deadline - (Date.now() + ttl)) < SLACK_MS, `${k}: deadline ${deadline} is not about now + ${ttl}`);
      await assertPttl(rawKey(k), ttl);
    };
    return { prefix, store, raw, ...log, rawKey, familyKey, get, assertPttl, assertTombstone };
  }

  function aliasOf(family: string, over: Partial<RenewalAlias> = {}): RenewalAlias {
    return { successor: 'c2VhbGVk-succ_1', graceUntil: Date.now() + 30_000, family, familyDeadline: Date.now() + 12 * HOUR, ...over };
  }

  test('one string per session: a live record is "L<version>:" and the data as given, with the TTL; nothing else is written', async (t) => {
    const { prefix, store, raw, rawKey, get, assertPttl } = await setup(t);
    const data = Buffer.from([0x00, 0xff, 0x7c, 0x3a, 0x4c, 0x31, 0x3a, 0x0a]);
    assert.equal(await store.create('k1', data, HOUR), true);
    assert.ok((await get('k1'))?.equals(Buffer.concat([b('L1:'), data])));
    assert.equal(await raw.type(rawKey('k1')), 'string');
    await assertPttl(rawKey('k1'), HOUR);
    assert.deepEqual(await raw.keys(`${prefix}*`), [rawKey('k1')]);

    assert.equal(await store.update('k1', 1, b('second'), 2 * HOUR), 'ok');
    assert.equal((await get('k1'))?.toString('latin1'), 'L2:second');
    await assertPttl(rawKey('k1'), 2 * HOUR);
    // Multi-digit versions are written and read back as decimal.
    for (let v = 2; v < 12; v++) assert.equal(await store.update('k1', v, b(`v${v + 1}`), HOUR), 'ok');
    assert.equal((await get('k1'))?.toString('latin1'), 'L12:v12');
    assert.deepEqual(await store.load('k1'), { state: 'live', version: 12, data: b('v12') });
    assert.equal(await store.update('k1', 1, b('stale'), HOUR), 'conflict');
    assert.equal(await store.update('k1', 120, b('stale'), HOUR), 'conflict');
    assert.equal(await store.update('k1', 12, b('v13'), HOUR), 'ok');
    assert.equal((await get('k1'))?.toString('latin1'), 'L13:v13');
    assert.deepEqual(await raw.keys(`${prefix}*`), [rawKey('k1')]);
  });

  /** Calls of one command since the last CONFIG RESETSTAT (0 when it was never called). */
  async function calls(raw: ReturnType<ReturnType<typeof redis>['client']>, command: string): Promise<number> {
    const m = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(await raw.info('commandstats'));
    return m ? Number(m[1]) : 0;
  }

  test('loads asked for in the same turn go out as one MGET, 256 keys at most each; every load gets its own answer; a load alone is a GET', async (t) => {
    const { store, raw, rawKey } = await setup(t);
    await store.create('live1', b('one'), HOUR);
    await store.create('live2', b('two'), HOUR);
    await store.update('live2', 1, b('two, second'), HOUR);
    await store.create('dead', b('x'), HOUR);
    await store.revoke('dead', HOUR);
    await store.create('old', b('x'), HOUR);
    await store.rotate('old', 1, HOUR, 'new', b('renewed'), HOUR, aliasOf('F'));
    await raw.set(rawKey('bad'), 'Lx:damaged');
    await raw.hset(rawKey('hash'), 'f', 'v');
    const names = ['live1', 'live2', 'dead', 'old', 'new', 'missing', 'bad', 'hash'];
    // What each key loads as when asked alone (each one GET).
    const alone = new Map<string, LoadResult>();
    for (const k of names) alone.set(k, await store.load(k));
    assert.equal(alone.get('live2')?.state, 'live');
    assert.equal(alone.get('old')?.state, 'renewed');

    await raw.config('RESETSTAT');
    const keys = Array.from({ length: 300 }, (_, i) => names[(i * 7) % names.length] as string);
    const results = await Promise.all(keys.map((k) => store.load(k)));
    keys.forEach((k, i) => assert.deepEqual(results[i], alone.get(k), `load ${i} of ${k}`));
    assert.equal(await calls(raw, 'mget'), 2, '300 loads in one turn: one MGET of 256 keys, one of 44');
    assert.equal(await calls(raw, 'get'), 0);

    await raw.config('RESETSTAT');
    assert.deepEqual(await store.load('live1'), alone.get('live1'));
    assert.deepEqual(await Promise.all([store.load('live1'), store.load('dead')]), [alone.get('live1'), alone.get('dead')]);
    assert.equal(await calls(raw, 'get'), 1);
    assert.equal(await calls(raw, 'mget'), 1);
  });

  test('a load whose answer cannot be read (here: its warning cannot be logged) fails alone; the rest of its MGET is answered', async (t) => {
    const { prefix, raw, rawKey } = await setup(t);
    const sink = { write(): void { throw new Error('log sink failed'); } };
    const store = new RedisStore({ target: { mode: 'single', url: redis().url }, prefix, timeout: 5000, connectTimeout: 10_000, logger: pino({ level: 'warn' }, sink) });
    t.after(() => store.close());
    await store.start();
    await store.create('good', b('g'), HOUR);
    await raw.set(rawKey('bad'), 'garbage');
    const [good, bad, alone] = await Promise.allSettled([store.load('good'), store.load('bad'), store.load('good')]);
    assert.deepEqual(good, { status: 'fulfilled', value: { state: 'live', version: 1, data: b('g') } });
    assert.equal(bad.status, 'rejected');
    assert.ok((bad as PromiseRejectedResult).reason instanceof StoreUnavailableError);
    assert.deepEqual(alone, good);
    await assert.rejects(store.load('bad'), StoreUnavailableError);
  });

  test("the writes asked for in one turn leave in one system call (the socket is corked until the turn ends), and all land", async (t) => {
    const { store, get } = await setup(t);
    type Sink = (...args: unknown[]) => void;
    const socket = (store as unknown as { client: { ioredis: { stream: { _write: Sink; _writev: Sink } } } }).client.ioredis.stream;
    const writev = t.mock.method(socket, '_writev');
    const write = t.mock.method(socket, '_write');
    const results = await Promise.all([1, 2, 3, 4, 5].map((i) => store.create(`c${i}`, b(`v${i}`), HOUR)));
    assert.deepEqual(results, [true, true, true, true, true]);
    assert.equal(writev.mock.callCount(), 1, 'one writev for the five SETs');
    assert.equal((writev.mock.calls[0]?.arguments[0] as unknown[]).length, 5);
    assert.equal(write.mock.callCount(), 0);
    for (const i of [1, 2, 3, 4, 5]) assert.equal((await get(`c${i}`))?.toString('latin1'), `L1:v${i}`);
    // A write alone still goes out (at the end of its turn).
    assert.equal(await store.update('c1', 1, b('again'), HOUR), 'ok');
    assert.equal((await get('c1'))?.toString('latin1'), 'L2:again');
  });

  test('loads still waiting for their turn when the store closes reject with StoreUnavailableError', async (t) => {
    const { store } = await setup(t);
    await store.create('k', b('x'), HOUR);
    const pending = [store.load('k'), store.load('other')].map((p) => assert.rejects(p, StoreUnavailableError));
    await store.close();
    await Promise.all(pending);
  });

  test('one server keeps the keys written before lineages: a `<tag>.<hash>` store key is `s:<hash>` in Redis, so sessions and family sets of the old layout load, renew and are revoked', async (t) => {
    const { prefix, store, raw, rawKey, familyKey, get } = await setup(t);
    // As the code before lineages wrote them: keyed by the hash alone.
    await raw.set(rawKey('oldHash1'), 'L3:before the upgrade', 'PX', HOUR);
    await raw.set(rawKey('oldHash2'), `N${Date.now() + 30_000}|${Date.now() + HOUR}|famOld|succ`, 'PX', HOUR);
    await raw.set(rawKey('oldHash3'), 'L1:live member', 'PX', HOUR);
    await raw.sadd(familyKey('famOld'), rawKey('oldHash2'), rawKey('oldHash3'));
    // Today's store keys of the same ids carry their lineage tag.
    assert.deepEqual(await store.load('AbCd.oldHash1'), { state: 'live', version: 3, data: b('before the upgrade') });
    assert.equal(await store.update('AbCd.oldHash1', 3, b('after'), HOUR), 'ok');
    assert.equal((await get('oldHash1'))?.toString('latin1'), 'L4:after');
    assert.equal(await store.rotate('AbCd.oldHash1', 4, HOUR, 'AbCd.newHash', b('renewed'), HOUR, aliasOf('famNew')), 'ok');
    assert.deepEqual((await raw.smembers(familyKey('famNew'))).sort(), [rawKey('newHash'), rawKey('oldHash1')]);
    assert.equal((await raw.keys(`${prefix}*{*`)).length, 0, 'no hash tags on one server');
    // Logout of an old family: every member of the old set, whatever lineage its id has.
    assert.equal(await store.revokeFamily('famOld', 'XyZw.oldHash3', HOUR), 1);
    for (const k of ['oldHash2', 'oldHash3']) assert.match((await get(k))?.toString('latin1') ?? '', /^R\d+$/, k);
    assert.equal(await raw.exists(familyKey('famOld')), 0);
  });

  test('a tombstone is "R<deadline>" by the server clock, with its TTL; revoke of a live record writes nothing else', async (t) => {
    const { prefix, store, raw, rawKey, assertTombstone } = await setup(t);
    await store.create('k1', b('x'), HOUR);
    assert.equal(await store.revoke('k1', 60_000), true);
    await assertTombstone('k1', 60_000);
    assert.equal(await store.revoke('unknown', 30_000), false);
    await assertTombstone('unknown', 30_000);
    assert.deepEqual((await raw.keys(`${prefix}*`)).sort(), [rawKey('k1'), rawKey('unknown')]);
  });

  test('rotate without an alias: a tombstone at the old key, "L1:" at the new one, no family key', async (t) => {
    const { prefix, store, raw, rawKey, get, assertPttl, assertTombstone } = await setup(t);
    await store.create('old', b('a'), HOUR);
    assert.equal(await store.update('old', 1, b('b'), HOUR), 'ok');
    assert.equal(await store.rotate('old', 2, 15_000, 'new', b('moved'), 2 * HOUR), 'ok');
    await assertTombstone('old', 15_000);
    assert.equal((await get('new'))?.toString('latin1'), 'L1:moved');
    await assertPttl(rawKey('new'), 2 * HOUR);
    assert.deepEqual((await raw.keys(`${prefix}*`)).sort(), [rawKey('new'), rawKey('old')]);
  });

  test('renewal in Redis: the alias string "N<grace>|<end>|<family>|<successor>", a family set made only on renewal, with both ids and its expiry; revokeFamily removes it', async (t) => {
    const { prefix, store, raw, rawKey, familyKey, get, assertPttl, assertTombstone } = await setup(t);
    const familyDeadline = Date.now() + 12 * HOUR;
    await store.create('k1', b('one'), HOUR);
    // A never-renewed session has no family key.
    assert.deepEqual(await raw.keys(`${prefix}f:*`), []);

    const graceUntil = Date.now() + 30_000;
    const before = Date.now();
    assert.equal(await store.rotate('k1', 1, 60_000, 'k2', b('two'), HOUR, aliasOf('famR', { successor: 'sealed-succ', graceUntil, familyDeadline })), 'ok');
    const after = Date.now();
    const alias = (await get('k1'))?.toString('latin1') ?? '';
    const m = /^N(\d+)\|(\d+)\|famR\|sealed-succ$/.exec(alias);
    assert.ok(m, `alias ${alias}`);
    assert.equal(Number(m[1]), graceUntil);
    const aliasEnd = Number(m[2]);
    assert.ok(aliasEnd >= before + 60_000 - 1000 && aliasEnd <= after + 60_000 + 1000, `alias end ${aliasEnd}`);
    await assertPttl(rawKey('k1'), 60_000);
    assert.equal((await get('k2'))?.toString('latin1'), 'L1:two');
    assert.deepEqual((await raw.smembers(familyKey('famR'))).sort(), [rawKey('k1'), rawKey('k2')]);
    await assertPttl(familyKey('famR'), familyDeadline - Date.now());

    // A second renewal adds its new id; an earlier familyDeadline does not shorten the set...
    assert.equal(await store.rotate('k2', 1, 60_000, 'k3', b('three'), HOUR, aliasOf('famR', { familyDeadline: Date.now() + HOUR })), 'ok');
    assert.deepEqual((await raw.smembers(familyKey('famR'))).sort(), [rawKey('k1'), rawKey('k2'), rawKey('k3')]);
    await assertPttl(familyKey('famR'), familyDeadline - Date.now());
    // ...a later one extends it.
    const later = familyDeadline + HOUR;
    assert.equal(await store.rotate('k3', 1, 60_000, 'k4', b('four'), HOUR, aliasOf('famR', { familyDeadline: later })), 'ok');
    await assertPttl(familyKey('famR'), later - Date.now());
    assert.equal((await raw.smembers(familyKey('famR'))).length, 4);

    assert.equal(await store.revokeFamily('famR', 'k4', 90_000), 1);
    assert.deepEqual(await raw.keys(`${prefix}f:*`), []);
    for (const k of ['k1', 'k2', 'k3', 'k4']) await assertTombstone(k, 90_000);
    assert.deepEqual((await raw.keys(`${prefix}*`)).sort(), ['k1', 'k2', 'k3', 'k4'].map(rawKey));
  });

  test('revokeFamily of a never-renewed session: a tombstone at the key, and no family key appears', async (t) => {
    const { prefix, store, raw, rawKey, assertTombstone } = await setup(t);
    await store.create('k1', b('x'), HOUR);
    assert.equal(await store.revokeFamily('lonely', 'k1', 45_000), 1);
    await assertTombstone('k1', 45_000);
    assert.deepEqual(await raw.keys(`${prefix}*`), [rawKey('k1')]);
  });

  test('a family set past its deadline is gone at once (PEXPIREAT in the past); the renewal still happens', async (t) => {
    const { prefix, store, raw, get } = await setup(t);
    await store.create('k1', b('x'), HOUR);
    assert.equal(await store.rotate('k1', 1, HOUR, 'k2', b('y'), HOUR, aliasOf('old', { familyDeadline: Date.now() - 1000 })), 'ok');
    assert.deepEqual(await raw.keys(`${prefix}f:*`), []);
    assert.match((await get('k1'))?.toString('latin1') ?? '', /^N\d+\|\d+\|old\|/);
    assert.equal((await get('k2'))?.toString('latin1'), 'L1:y');
  });

  test('failed writes leave Redis exactly as it was (no family key, no new key, same values and TTLs)', async (t) => {
    const { prefix, store, raw, assertPttl } = await setup(t);
    await store.create('old', b('a'), HOUR);
    assert.equal(await store.update('old', 1, b('b'), HOUR), 'ok');
    await store.create('taken', b('t'), HOUR);
    await store.revoke('dead', HOUR);
    const dump = async () => {
      const keys = (await raw.keys(`${prefix}*`)).sort();
      return Promise.all(keys.map(async (k) => [k, (await raw.getBuffer(k))?.toString('hex')]));
    };
    const before = await dump();
    assert.equal(await store.rotate('old', 1, 10, 'new', b('x'), 10 * HOUR, aliasOf('G')), 'conflict');
    assert.equal(await store.rotate('old', 2, 10, 'taken', b('x'), 10 * HOUR, aliasOf('G')), 'gone');
    assert.equal(await store.rotate('old', 2, 10, 'dead', b('x'), 10 * HOUR, aliasOf('G')), 'gone');
    assert.equal(await store.rotate('dead', 1, 10, 'new', b('x'), 10 * HOUR, aliasOf('G')), 'gone');
    assert.equal(await store.update('old', 1, b('x'), 10), 'conflict');
    assert.equal(await store.update('dead', 1, b('x'), 10), 'gone');
    assert.equal(await store.update('missing', 1, b('x'), 10), 'gone');
    assert.equal(await store.create('taken', b('x'), 10), false);
    assert.deepEqual(await dump(), before);
    for (const k of ['old', 'taken', 'dead']) await assertPttl(`${prefix}s:${k}`, HOUR);
  });

  test('a racing update never leaves anything but the tombstone (checked in Redis itself)', async (t) => {
    const { prefix, store, get, rawKey, assertPttl } = await setup(t);
    const peer = makeStore(prefix, captureLogger().logger);
    t.after(() => peer.close());
    await peer.start();
    for (let i = 0; i < 50; i++) {
      const k = `r${i}`;
      await store.create(k, b('a'), HOUR);
      const upd = () => peer.update(k, 1, b('late'), 10 * HOUR);
      const rev = () => store.revoke(k, 30_000);
      if (i % 2) await Promise.all([upd(), rev()]);
      else await Promise.all([rev(), upd()]);
      assert.match((await get(k))?.toString('latin1') ?? '', /^R\d+$/, k);
      await assertPttl(rawKey(k), 30_000);
    }
  });

  test('corrupt values load as documented: a damaged live record is none (with a warning), a damaged tombstone or alias is revoked', async (t) => {
    const { store, raw, rawKey, logs } = await setup(t);
    const cases: Array<[string, string | Buffer, LoadResult, boolean]> = [
      // [name, raw value, expected load, warns]
      ['garbage', 'garbage', { state: 'none' }, true],
      ['empty string', '', { state: 'none' }, true],
      ['binary', Buffer.from([0x00, 0xff]), { state: 'none' }, true],
      ['lower-case l', 'l1:data', { state: 'none' }, true],
      ['L alone', 'L', { state: 'none' }, true],
      ['L:', 'L:', { state: 'none' }, true],
      ['L:data', 'L:data', { state: 'none' }, true],
      ['Lx:', 'Lx:', { state: 'none' }, true],
      ['Lx:data', 'Lx:data', { state: 'none' }, true],
      ['L1x:data', 'L1x:data', { state: 'none' }, true],
      ['L-1:data', 'L-1:data', { state: 'none' }, true],
      ['L0:data', 'L0:data', { state: 'none' }, true],
      ['L1: no data', 'L1:', { state: 'none' }, true],
      ['L1 no colon', 'L1', { state: 'none' }, true],
      ['L1data no colon', 'L1data', { state: 'none' }, true],
      ['17-digit version', 'L12345678901234567:data', { state: 'none' }, true],
      ['R alone', 'R', { state: 'revoked', deadline: 0 }, true],
      ['R garbage', 'Rgarbage', { state: 'revoked', deadline: 0 }, true],
      ['R half a number', 'R12x', { state: 'revoked', deadline: 0 }, true],
      ['N alone', 'N', { state: 'revoked', deadline: 0 }, true],
      ['N missing successor', 'N1|2|fam', { state: 'revoked', deadline: 2 }, true],
      ['N empty successor', 'N1|2|fam|', { state: 'revoked', deadline: 2 }, true],
      ['N empty family', 'N1|2||succ', { state: 'revoked', deadline: 2 }, true],
      ['N empty grace', 'N|2|fam|succ', { state: 'revoked', deadline: 2 }, true],
      ['N garbage grace', 'Nx|2|fam|succ', { state: 'revoked', deadline: 2 }, true],
      ['N empty end', 'N1||fam|succ', { state: 'revoked', deadline: 0 }, true],
      ['N garbage end', 'N1|x|fam|succ', { state: 'revoked', deadline: 0 }, true],
      ['N extra part', 'N1|2|fam|succ|more', { state: 'revoked', deadline: 2 }, true],
      // Well-formed values of every kind, for contrast: no warning.
      ['well-formed live', 'L7:L1:|x', { state: 'live', version: 7, data: b('L1:|x') }, false],
      ['16-digit version', 'L1234567890123456:d', { state: 'live', version: 1234567890123456, data: b('d') }, false],
      ['well-formed tombstone', 'R1700000000000', { state: 'revoked', deadline: 1_700_000_000_000 }, false],
      ['well-formed alias', 'N5|6|fam|succ', { state: 'renewed', graceUntil: 5, deadline: 6, family: 'fam', successor: 'succ' }, false],
    ];
    for (const [i, [name, value, expected, warns]] of cases.entries()) {
      const key = `corrupt-key-${i}-0123456789abcdef`;
      await raw.set(rawKey(key), value);
      const before = logs.warnings().length;
      assert.deepEqual(await store.load(key), expected, name);
      const w = logs.warnings().slice(before);
      assert.equal(w.length, warns ? 1 : 0, `${name}: ${w.length} warnings`);
      if (warns) {
        const expectedMsg = expected.state === 'none' ? /corrupt entry/ : name.startsWith('R') ? /malformed tombstone/ : /malformed renewal alias/;
        assert.match(w[0]?.msg ?? '', expectedMsg, name);
        // The warning names the key only by a prefix: a log line never spells a session key.
        assert.doesNotMatch(JSON.stringify(w[0]), new RegExp(key), name);
      }
    }
  });

  test('writes on corrupt values: none of them turns into a live session; revoke voids them', async (t) => {
    const { store, raw, rawKey, get } = await setup(t);
    for (const [i, value] of ['garbage', 'Lx:data', 'L:data', 'R', 'N1|2|fam'].entries()) {
      const k = `bad${i}`;
      await raw.set(rawKey(k), value);
      assert.equal(await store.update(k, 1, b('late'), HOUR), 'gone', value);
      assert.equal(await store.create(k, b('late'), HOUR), false, value);
      assert.equal(await store.rotate(k, 1, HOUR, `${k}-new`, b('late'), HOUR), 'gone', value);
      assert.deepEqual(await store.load(`${k}-new`), { state: 'none' });
      assert.equal((await get(k))?.toString('latin1'), value, `${value} is left as it was`);
      await store.revoke(k, HOUR);
      assert.match((await get(k))?.toString('latin1') ?? '', /^R\d+$/, value);
    }
  });

  test('a key of another type loads as no session (with a warning when it is loaded alone: an MGET reads it as nil); writes to it fail as StoreUnavailableError; create, rotate onto it and revoke still behave', async (t) => {
    const { store, raw, rawKey, get, familyKey, logs } = await setup(t);
    for (const k of ['h1', 'h2', 'h3']) await raw.hset(rawKey(k), '@c', '1', 'sid;example.com;/', 'v');
    assert.deepEqual(await store.load('h1'), { state: 'none' });
    assert.equal(logs.warnings().filter((l) => /another type/.test(l.msg ?? '')).length, 1);
    for (const call of [
      () => store.update('h1', 1, b('x'), HOUR),
      () => store.rotate('h1', 1, HOUR, 'n1', b('x'), HOUR),
      () => store.rotate('h1', 1, HOUR, 'n1', b('x'), HOUR, aliasOf('G')),
    ]) {
      await assert.rejects(call(), (err: unknown) => err instanceof StoreUnavailableError && /WRONGTYPE/.test(err.message));
    }
    assert.equal(await raw.type(rawKey('h1')), 'hash');
    assert.deepEqual(await store.load('n1'), { state: 'none' });
    assert.deepEqual(await raw.keys(familyKey('*')), []);
    // create never overwrites it; a rotate onto it is gone.
    assert.equal(await store.create('h1', b('x'), HOUR), false);
    await store.create('live', b('l'), HOUR);
    assert.equal(await store.rotate('live', 1, HOUR, 'h1', b('x'), HOUR), 'gone');
    assert.deepEqual(await store.load('live'), { state: 'live', version: 1, data: b('l') });
    // Revocation never fails on what it revokes: the key ends as a tombstone.
    assert.equal(await store.revoke('h1', 60_000), false);
    assert.equal((await store.load('h1')).state, 'revoked');
    assert.equal(await store.revokeFamily('F', 'h2', 60_000), 0);
    assert.equal((await store.load('h2')).state, 'revoked');
    // ...also when the family has members.
    await store.create('m1', b('m'), HOUR);
    await store.rotate('m1', 1, HOUR, 'm2', b('m'), HOUR, aliasOf('F'));
    assert.equal(await store.revokeFamily('F', 'h3', 60_000), 1);
    for (const k of ['h3', 'm1', 'm2']) assert.match((await get(k))?.toString('latin1') ?? '', /^R\d+$/, k);
    // A family key of another type fails revokeFamily before anything is written.
    await raw.set(familyKey('S'), 'not a set');
    await store.create('s1', b('s'), HOUR);
    await assert.rejects(store.revokeFamily('S', 's1', 60_000), StoreUnavailableError);
    assert.deepEqual(await store.load('s1'), { state: 'live', version: 1, data: b('s') });
  });

  test('scripts still run after the server forgets them (SCRIPT FLUSH, as after a restart)', async (t) => {
    const { store, raw } = await setup(t);
    assert.equal(await store.create('k1', b('a'), HOUR), true);
    assert.equal(await store.update('k1', 1, b('b'), HOUR), 'ok');
    await raw.script('FLUSH');
    assert.equal(await store.update('k1', 2, b('c'), HOUR), 'ok');
    await raw.script('FLUSH');
    assert.equal(await store.rotate('k1', 3, 1000, 'k2', b('d'), HOUR, aliasOf('F')), 'ok');
    await raw.script('FLUSH');
    assert.equal(await store.revoke('k2', 1000), true);
    await raw.script('FLUSH');
    assert.equal(await store.revokeFamily('F', 'k3', 1000), 0);
    assert.equal(await store.create('k4', b('e'), HOUR), true);
  });

  test('createStore builds a working RedisStore from the store config', async (t) => {
    const prefix = nextPrefix();
    const store = createStore(
      { kind: 'redis', url: redis().url, prefix, timeout: 5000, connectTimeout: 10_000, maxSessions: 10, replicas: 0, replicaTimeout: 200 },
      { clock: Date.now, logger: captureLogger().logger },
    );
    t.after(() => store.close());
    assert.ok(store instanceof RedisStore);
    assert.equal(store.kind, 'redis');
    await store.start();
    assert.equal(await store.create('k', b('abc'), HOUR), true);
    assert.equal((await redis().client().getBuffer(`${prefix}s:k`))?.toString('latin1'), 'L1:abc');
  });

  test('prefixes keep stores apart, family keys included', async (t) => {
    const a = await setup(t);
    const c = await setup(t);
    await a.store.create('same', b('a'), HOUR);
    assert.deepEqual(await c.store.load('same'), { state: 'none' });
    assert.equal(await c.store.create('same', b('c'), HOUR), true);
    assert.deepEqual(await a.store.load('same'), { state: 'live', version: 1, data: b('a') });
    await a.store.rotate('same', 1, HOUR, 'next', b('a2'), HOUR, aliasOf('F'));
    await c.store.create('other', b('c2'), HOUR);
    assert.equal(await c.store.revokeFamily('F', 'other', HOUR), 1); // only c's own key
    assert.deepEqual(await a.store.load('next'), { state: 'live', version: 1, data: b('a2') });
    assert.deepEqual(await c.store.load('same'), { state: 'live', version: 1, data: b('c') });
  });

  test('a store that was never started, or is closed, rejects with StoreUnavailableError and touches nothing', async (t) => {
    const prefix = nextPrefix();
    const { logger } = captureLogger();
    const idle = makeStore(prefix, logger);
    t.after(() => idle.close());
    assert.equal(idle.available(), false, 'never started: not available');
    await assert.rejects(idle.ping(), StoreUnavailableError);
    await assert.rejects(idle.load('k'), /not started/);
    await assert.rejects(idle.create('k', b('x'), HOUR), StoreUnavailableError);
    await assert.rejects(idle.revokeFamily('F', 'k', HOUR), StoreUnavailableError);
    // Starting later works.
    await idle.start();
    assert.equal(idle.available(), true);
    assert.equal(await idle.create('k', b('x'), HOUR), true);
    await idle.close();
    assert.equal(idle.available(), false);
    await assert.rejects(idle.start(), /closed/);
    await assert.rejects(idle.load('k'), /closed/);
    // What was written stays for other clients.
    assert.equal((await redis().client().getBuffer(`${prefix}s:k`))?.toString('latin1'), 'L1:x');
  });

  test('start() with nothing listening fails fast with StoreUnavailableError naming host:port, never the password', async (t) => {
    const port = await freePort();
    const store = new RedisStore({ target: { mode: 'single', url: `redis://user:hunter2@127.0.0.1:${port}` }, prefix: 'x:', timeout: 200, connectTimeout: 300, logger: captureLogger().logger });
    t.after(() => store.close());
    await assert.rejects(store.start(), (err: unknown) => {
      assert.ok(err instanceof StoreUnavailableError);
      assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
      assert.doesNotMatch(err.message, /hunter2/);
      return true;
    });
    await assert.rejects(store.load('k'), StoreUnavailableError);
  });
});
