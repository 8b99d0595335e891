// One contract every SessionStore implementation passes (run by memory-store.test.ts and
// redis-store.test.ts). Time: the memory store keeps time by the injected fake clock, which the
// suite moves; a store on real time (Redis) exposes `pttl` instead, and TTLs are checked by
// reading the remaining TTL, never by waiting for expiry (expiry itself is forced with
// `expireNow` / `expireFamilyNow`).
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { StoreUnavailableError } from '../../src/errors.js';
import type { Revocation } from '../../src/store/revocations.js';
import type { LoadResult, RenewalAlias, SessionStore, WriteResult } from '../../src/store/types.js';
import { FakeClock } from '../helpers/clock.js';
import { runFingerprintContract } from './fingerprints.contract.js';

export interface StoreHarness {
  store: SessionStore;
  /** A second client of the same backend (another connection), for races; defaults to `store`. */
  peer?: SessionStore;
  /** Moves the fake clock the store was built with. */
  advance(ms: number): void;
  /**
   * Remaining TTL of a key in ms as the backend reports it. Present when the backend keeps
   * real time: TTLs are then checked by reading it, and deadlines are compared to Date.now().
   */
  pttl?(key: string): Promise<number>;
  /** Remaining TTL of a family's index in ms, as the backend reports it. Present with `pttl`. */
  familyPttl?(family: string): Promise<number>;
  /**
   * Makes the backend drop a key now, as its TTL running out would. Present with `pttl` (a
   * fake-clock backend lets the suite advance the clock past the key's TTL instead).
   */
  expireNow?(key: string): Promise<void>;
  /** Makes the backend drop a family's index now, as its TTL running out would. Present with `pttl`. */
  expireFamilyNow?(family: string): Promise<void>;
  /** Remaining TTL of a report-only fingerprint in ms, as the backend reports it. Present with `pttl`. */
  fingerprintPttl?(fingerprint: string): Promise<number>;
  cleanup(): Promise<void>;
}

export type MakeStore = (clock: FakeClock) => Promise<StoreHarness>;

const HOUR = 3_600_000;
const MINUTE = 60_000;
/** How far a real-time backend's TTL / deadline may drift from the ideal (loaded CI machine). */
const REAL_TIME_SLACK_MS = 10_000;

type Live = Extract<LoadResult, { state: 'live' }>;
type Revoked = Extract<LoadResult, { state: 'revoked' }>;
type Renewed = Extract<LoadResult, { state: 'renewed' }>;

/** A Buffer of the given text (utf8). */
function b(text: string): Buffer {
  return Buffer.from(text, 'utf8');
}

/** Bytes that look like the Redis layout's own markers and separators, and every byte value. */
function awkwardPayloads(): Buffer[] {
  const all = Buffer.alloc(256);
  for (let i = 0; i < 256; i++) all[i] = i;
  const pseudoRandom = Buffer.alloc(64 * 1024);
  let x = 0x2545f491;
  for (let i = 0; i < pseudoRandom.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    pseudoRandom[i] = x & 0xff;
  }
  return [
    Buffer.from([0x00]),
    Buffer.from([0xff]),
    Buffer.from([0x00, 0x00, 0x00]),
    b('|'),
    b(':'),
    b('L'),
    b('R'),
    b('N'),
    b('L1:'),
    b('L1:L1:x'),
    b('L99:'),
    b('R123'),
    b('N1|2|fam|succ'),
    b('||::'),
    b('\r\n'),
    b('ünïcödé 日本語 🍪'),
    Buffer.from([0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0xf0, 0x90, 0x28, 0xbc]), // invalid UTF-8
    Buffer.from([0x4c, 0x31, 0x3a, 0x00, 0xff, 0x7c, 0x3a, 0x4c]), // "L1:" NUL 0xff "|" ":" "L"
    all,
    pseudoRandom,
  ];
}

export function runStoreContract(name: string, makeStore: MakeStore): void {
  describe(`SessionStore contract: ${name}`, () => {
    async function setup(t: TestContext): Promise<{ h: StoreHarness; store: SessionStore; peer: SessionStore; clock: FakeClock }> {
      // From the real time: a backend on real time (Redis) checks deadlines against Date.now().
      const clock = new FakeClock(Date.now());
      const h = await makeStore(clock);
      t.after(() => h.cleanup());
      return { h, store: h.store, peer: h.peer ?? h.store, clock };
    }

    function live(r: LoadResult): Live {
      assert.equal(r.state, 'live', `expected a live record, got ${show(r)}`);
      return r as Live;
    }

    function revoked(r: LoadResult): Revoked {
      assert.equal(r.state, 'revoked', `expected a tombstone, got ${show(r)}`);
      return r as Revoked;
    }

    function renewed(r: LoadResult): Renewed {
      assert.equal(r.state, 'renewed', `expected a renewal alias, got ${show(r)}`);
      return r as Renewed;
    }

    function show(r: LoadResult): string {
      return JSON.stringify(r.state === 'live' ? { ...r, data: `<${r.data.length} bytes>` } : r);
    }

    function assertData(actual: Buffer, expected: Buffer, what = 'data'): void {
      assert.ok(Buffer.isBuffer(actual), `${what} is a Buffer`);
      assert.equal(actual.length, expected.length, `${what}: length`);
      assert.ok(actual.equals(expected), `${what}: bytes differ (${actual.subarray(0, 32).toString('hex')}… vs ${expected.subarray(0, 32).toString('hex')}…)`);
    }

    /** A live record with exactly this version and these bytes. */
    function assertLive(r: LoadResult, version: number, data: Buffer, what = 'record'): void {
      const l = live(r);
      assert.equal(l.version, version, `${what}: version`);
      assertData(l.data, data, `${what}: data`);
    }

    /**
     * Each key's entry (whatever state it holds) disappears exactly `ttl` after now (memory:
     * moves the clock to the largest ttl) / reports about that PTTL (Redis).
     */
    async function assertTtls(h: StoreHarness, expected: Record<string, number>): Promise<void> {
      if (h.pttl) {
        for (const [key, ttlMs] of Object.entries(expected)) {
          const left = await h.pttl(key);
          assert.ok(left <= ttlMs && left > ttlMs - REAL_TIME_SLACK_MS, `PTTL of ${key} is ${left}, expected about ${ttlMs}`);
        }
        return;
      }
      const states = new Map<string, LoadResult['state']>();
      for (const key of Object.keys(expected)) {
        const state = (await h.store.load(key)).state;
        assert.notEqual(state, 'none', `${key} should exist before its TTL runs out`);
        states.set(key, state);
      }
      const ttls = [...new Set(Object.values(expected))].sort((x, y) => x - y);
      let elapsed = 0;
      for (const ttl of ttls) {
        const keys = Object.keys(expected).filter((k) => expected[k] === ttl);
        h.advance(ttl - 1 - elapsed);
        for (const key of keys) assert.equal((await h.store.load(key)).state, states.get(key), `${key} should still be ${states.get(key)} 1ms before its TTL`);
        h.advance(1);
        elapsed = ttl;
        for (const key of keys) assert.deepEqual(await h.store.load(key), { state: 'none' }, `${key} should be gone once its TTL (${ttl}) ran out`);
      }
    }

    function assertDeadline(h: StoreHarness, clock: FakeClock, actual: number, ttlMs: number): void {
      if (h.pttl) {
        const ideal = Date.now() + ttlMs;
        assert.ok(Math.abs(actual - ideal) < REAL_TIME_SLACK_MS, `deadline ${actual} is not about now + ${ttlMs} (${ideal})`);
      } else {
        assert.equal(actual, clock.now() + ttlMs);
      }
    }

    /** Makes `key` (created with `ttlMs`, before any other key) expire: advances the fake clock, or drops it in a real-time backend. */
    async function expire(h: StoreHarness, key: string, ttlMs: number): Promise<void> {
      if (h.expireNow) await h.expireNow(key);
      else h.advance(ttlMs);
      assert.deepEqual(await h.store.load(key), { state: 'none' }, `${key} should have expired`);
    }

    function aliasAt(clock: FakeClock, over: Partial<RenewalAlias> = {}): RenewalAlias {
      const now = clock.now();
      return { successor: 'sealed-successor_01', graceUntil: now + 30_000, family: 'F', familyDeadline: now + 12 * HOUR, ...over };
    }

    async function snapshot(store: SessionStore, keys: string[]): Promise<Map<string, LoadResult>> {
      const out = new Map<string, LoadResult>();
      for (const k of keys) out.set(k, await store.load(k));
      return out;
    }

    async function assertUnchanged(store: SessionStore, before: Map<string, LoadResult>, why: string): Promise<void> {
      for (const [k, r] of before) assert.deepEqual(await store.load(k), r, `${why}: ${k} changed`);
    }

    // ---- load, create ----

    test('load of an unknown key is none', async (t) => {
      const { store } = await setup(t);
      assert.deepEqual(await store.load('nobody'), { state: 'none' });
    });

    test('create then load returns version 1 and the data; the record has its TTL', async (t) => {
      const { h, store, peer } = await setup(t);
      const data = b('sealed jar bytes');
      assert.equal(await store.create('k1', data, 30 * MINUTE), true);
      assertLive(await store.load('k1'), 1, data);
      assertLive(await peer.load('k1'), 1, data, 'through the peer');
      // Loading does not change anything.
      assertLive(await store.load('k1'), 1, data);
      await assertTtls(h, { k1: 30 * MINUTE });
    });

    test('create fails on an existing record and writes nothing (data, version and TTL stay)', async (t) => {
      const { h, store, peer } = await setup(t);
      assert.equal(await store.create('k1', b('first'), MINUTE), true);
      assert.equal(await store.update('k1', 1, b('second'), MINUTE), 'ok');
      assert.equal(await peer.create('k1', b('intruder'), 10 * HOUR), false);
      assertLive(await store.load('k1'), 2, b('second'));
      await assertTtls(h, { k1: MINUTE });
    });

    test('create fails on a tombstone and the key stays revoked with its TTL', async (t) => {
      const { h, store } = await setup(t);
      assert.equal(await store.revoke('k1', 90_000), false);
      const before = revoked(await store.load('k1'));
      assert.equal(await store.create('k1', b('late'), 10 * HOUR), false);
      assert.deepEqual(await store.load('k1'), before);
      await assertTtls(h, { k1: 90_000 });
    });

    test('create succeeds again once the previous record has expired, at version 1', async (t) => {
      const { h, store } = await setup(t);
      assert.equal(await store.create('k1', b('old'), 1000), true);
      assert.equal(await store.update('k1', 1, b('old2'), 1000), 'ok');
      await expire(h, 'k1', 1000);
      assert.equal(await store.create('k1', b('new'), HOUR), true);
      assertLive(await store.load('k1'), 1, b('new'));
    });

    test('the data round-trips byte-exact: NUL, 0xff, the layout markers "L" ":" "|" "R" "N", invalid UTF-8, every byte, 64 KiB', async (t) => {
      const { store, peer, clock } = await setup(t);
      const payloads = awkwardPayloads();
      for (const [i, data] of payloads.entries()) {
        assert.equal(await store.create(`c${i}`, data, HOUR), true, `create ${i}`);
        assertLive(await peer.load(`c${i}`), 1, data, `create ${i}`);
        // Through update: a different payload first, then this one.
        assert.equal(await store.create(`u${i}`, b('x'), HOUR), true);
        assert.equal(await store.update(`u${i}`, 1, data, HOUR), 'ok', `update ${i}`);
        assertLive(await peer.load(`u${i}`), 2, data, `update ${i}`);
        // Through rotate, with and without an alias.
        assert.equal(await store.rotate(`c${i}`, 1, HOUR, `r${i}`, data, HOUR), 'ok', `rotate ${i}`);
        assertLive(await peer.load(`r${i}`), 1, data, `rotate ${i}`);
        assert.equal(await store.rotate(`u${i}`, 2, HOUR, `a${i}`, data, HOUR, aliasAt(clock, { family: `F${i}` })), 'ok');
        assertLive(await peer.load(`a${i}`), 1, data, `rotate with alias ${i}`);
      }
    });

    test('only the bytes of a Buffer view are stored, not the rest of its backing memory', async (t) => {
      const { store } = await setup(t);
      const backing = b('HEAD|the record|TAIL');
      const view = backing.subarray(5, 15);
      assert.equal(await store.create('k1', view, HOUR), true);
      assertLive(await store.load('k1'), 1, b('the record'));
      assert.equal(await store.update('k1', 1, backing.subarray(0, 4), HOUR), 'ok');
      assertLive(await store.load('k1'), 2, b('HEAD'));
    });

    test('callers cannot change stored state through the Buffers they pass or get', async (t) => {
      const { store } = await setup(t);
      const passed = b('abc');
      await store.create('k1', passed, HOUR);
      passed.fill(0x78);
      const got = live(await store.load('k1')).data;
      assertData(got, b('abc'));
      got.fill(0x79);
      assertLive(await store.load('k1'), 1, b('abc'));
      const upd = b('def');
      assert.equal(await store.update('k1', 1, upd, HOUR), 'ok');
      upd.fill(0x7a);
      assertLive(await store.load('k1'), 2, b('def'));
      const rot = b('ghi');
      assert.equal(await store.rotate('k1', 2, HOUR, 'k2', rot, HOUR), 'ok');
      rot.fill(0x7a);
      assertLive(await store.load('k2'), 1, b('ghi'));
    });

    test('keys are opaque strings: similar keys are distinct records', async (t) => {
      const { store } = await setup(t);
      const keys = ['k', 'K', 'k ', ' k', 'k:', 'k|', 'k/x', 'ключ', '🍪', 'x'.repeat(512)];
      for (const [i, k] of keys.entries()) assert.equal(await store.create(k, b(`v${i}`), HOUR), true, JSON.stringify(k));
      for (const [i, k] of keys.entries()) assertLive(await store.load(k), 1, b(`v${i}`), JSON.stringify(k));
    });

    // ---- lineages (store/lineage.ts) ----

    /** A store key as the session layer makes them: `<lineage tag>.<hash>`. */
    function keyOf(tag: string, name: string): string {
      return `${tag}.${name}`;
    }
    const TAGS = Array.from({ length: 40 }, (_, i) => Buffer.from([i, 255 - i, (i * 37) & 0xff]).toString('base64url'));

    test('keys of many lineages, several ids each, and untagged keys are all distinct records; the loads of one turn each get their own answer', async (t) => {
      const { store } = await setup(t);
      const keys: string[] = ['untagged', 'k.x', 'abc.d'];
      for (const [i, tag] of TAGS.entries()) for (let j = 0; j < 3; j++) keys.push(keyOf(tag, `h${i}-${j}`));
      for (const [i, k] of keys.entries()) assert.equal(await store.create(k, b(`v${i}`), HOUR), true, k);
      await store.revoke(keyOf(TAGS[0] as string, 'h0-1'), HOUR);
      const asked = [...keys, keyOf(TAGS[1] as string, 'missing'), 'missing'];
      const results = await Promise.all(asked.map((k) => store.load(k)));
      for (const [i, k] of keys.entries()) {
        if (k === keyOf(TAGS[0] as string, 'h0-1')) revoked(results[i] as LoadResult);
        else assertLive(results[i] as LoadResult, 1, b(`v${i}`), k);
      }
      assert.deepEqual(results.slice(keys.length), [{ state: 'none' }, { state: 'none' }]);
    });

    test('rotate refuses keys of two lineages (a tagged and an untagged key included) with a RangeError, and writes nothing; within a lineage it works', async (t) => {
      const { store, clock } = await setup(t);
      const [a, c] = [TAGS[2] as string, TAGS[3] as string];
      await store.create(keyOf(a, 'x'), b('x'), HOUR);
      await store.create('plain', b('p'), HOUR);
      for (const alias of [undefined, aliasAt(clock, { family: 'L' })]) {
        for (const [from, to] of [
          [keyOf(a, 'x'), keyOf(c, 'y')],
          [keyOf(a, 'x'), 'y'],
          ['plain', keyOf(a, 'y')],
        ] as const) {
          await assert.rejects(store.rotate(from, 1, HOUR, to, b('y'), HOUR, alias), { name: 'RangeError', message: /lineage/ }, `${from} -> ${to}`);
        }
      }
      assertLive(await store.load(keyOf(a, 'x')), 1, b('x'));
      assertLive(await store.load('plain'), 1, b('p'));
      for (const k of [keyOf(c, 'y'), keyOf(a, 'y'), 'y']) assert.deepEqual(await store.load(k), { state: 'none' }, k);
      assert.equal(await store.revokeFamily('L', keyOf(a, 'z'), HOUR), 0, 'no refused renewal made family L');
      // One lineage: a renewal and its family revocation.
      assert.equal(await store.rotate(keyOf(a, 'x'), 1, HOUR, keyOf(a, 'y'), b('y'), HOUR, aliasAt(clock, { family: 'L' })), 'ok');
      assert.equal(await store.revokeFamily('L', keyOf(a, 'y'), HOUR), 1);
      revoked(await store.load(keyOf(a, 'x')));
      revoked(await store.load(keyOf(a, 'y')));
    });

    // ---- update ----

    test('update: the version starts at 1 and goes up by one per update; each sets the data and the TTL', async (t) => {
      const { h, store, peer } = await setup(t);
      assert.equal(await store.create('k1', b('v1'), MINUTE), true);
      for (let v = 1; v <= 12; v++) {
        const writer = v % 2 ? store : peer;
        assert.equal(await writer.update('k1', v, b(`v${v + 1}`), (v + 1) * MINUTE), 'ok', `update at version ${v}`);
        assertLive(await store.load('k1'), v + 1, b(`v${v + 1}`));
      }
      // The last update's TTL, not the sum or the first.
      await assertTtls(h, { k1: 13 * MINUTE });
    });

    test('update may shorten the TTL as well as extend it', async (t) => {
      const { h, store } = await setup(t);
      await store.create('k1', b('a'), 10 * HOUR);
      assert.equal(await store.update('k1', 1, b('b'), 5000), 'ok');
      await assertTtls(h, { k1: 5000 });
    });

    test('update with a stale or a future version is a conflict and writes nothing', async (t) => {
      const { h, store, peer } = await setup(t);
      await store.create('k1', b('one'), MINUTE);
      assert.equal(await store.update('k1', 1, b('two'), MINUTE), 'ok');
      assert.equal(await store.update('k1', 2, b('three'), 2 * MINUTE), 'ok');
      for (const stale of [1, 2, 4, 10, 123_456_789]) {
        assert.equal(await peer.update('k1', stale, b(`stale ${stale}`), 10 * HOUR), 'conflict', `version ${stale}`);
      }
      assertLive(await store.load('k1'), 3, b('three'));
      await assertTtls(h, { k1: 2 * MINUTE }); // no conflicting update moved the TTL
    });

    test('update of a missing key is gone and creates nothing', async (t) => {
      const { store } = await setup(t);
      assert.equal(await store.update('ghost', 1, b('x'), HOUR), 'gone');
      assert.deepEqual(await store.load('ghost'), { state: 'none' });
      // Any version: still gone, never a conflict (there is nothing to conflict with).
      assert.equal(await store.update('ghost', 7, b('x'), HOUR), 'gone');
      assert.deepEqual(await store.load('ghost'), { state: 'none' });
    });

    test('update of a revoked key is gone and never resurrects it (the tombstone keeps its deadline and TTL)', async (t) => {
      const { h, store, peer } = await setup(t);
      await store.create('k1', b('a'), MINUTE);
      assert.equal(await peer.revoke('k1', 45_000), true);
      const before = revoked(await store.load('k1'));
      for (const v of [1, 2]) assert.equal(await store.update('k1', v, b('late'), 10 * HOUR), 'gone', `version ${v}`);
      assert.deepEqual(await store.load('k1'), before);
      await assertTtls(h, { k1: 45_000 });
    });

    test('update of an expired record is gone and does not bring it back', async (t) => {
      const { h, store } = await setup(t);
      await store.create('k1', b('a'), 1000);
      await expire(h, 'k1', 1000);
      assert.equal(await store.update('k1', 1, b('late'), HOUR), 'gone');
      assert.deepEqual(await store.load('k1'), { state: 'none' });
    });

    // ---- revoke ----

    test('revoke of a live record returns true and leaves a tombstone with its deadline and TTL; nothing writes over it', async (t) => {
      const { h, store, peer, clock } = await setup(t);
      await store.create('k1', b('a'), HOUR);
      assert.equal(await store.update('k1', 1, b('b'), HOUR), 'ok');
      assert.equal(await store.revoke('k1', 6 * HOUR), true);
      const r = revoked(await peer.load('k1'));
      assertDeadline(h, clock, r.deadline, 6 * HOUR);
      assert.equal(await store.update('k1', 2, b('c'), 10 * HOUR), 'gone');
      assert.equal(await store.create('k1', b('d'), 10 * HOUR), false);
      assert.equal(await store.rotate('k1', 2, HOUR, 'k2', b('e'), HOUR), 'gone');
      assert.deepEqual(await store.load('k1'), r);
      assert.deepEqual(await store.load('k2'), { state: 'none' });
      await assertTtls(h, { k1: 6 * HOUR });
    });

    test('revoke of an unknown key returns false but still writes a tombstone', async (t) => {
      const { h, store, clock } = await setup(t);
      assert.equal(await store.revoke('k1', 30_000), false);
      const r = revoked(await store.load('k1'));
      assertDeadline(h, clock, r.deadline, 30_000);
      assert.equal(await store.create('k1', b('late'), HOUR), false);
      await assertTtls(h, { k1: 30_000 });
    });

    test('revoke of a tombstone returns false and replaces it (deadline and TTL of the last revoke)', async (t) => {
      const { h, store, clock } = await setup(t);
      await store.revoke('k1', 30_000);
      assert.equal(await store.revoke('k1', 20_000), false);
      assertDeadline(h, clock, revoked(await store.load('k1')).deadline, 20_000);
      await assertTtls(h, { k1: 20_000 });
    });

    test('revoke of an expired record returns false', async (t) => {
      const { h, store } = await setup(t);
      await store.create('k1', b('a'), 1000);
      await expire(h, 'k1', 1000);
      assert.equal(await store.revoke('k1', 5000), false);
      revoked(await store.load('k1'));
    });

    // ---- rotate ----

    test('rotate moves the session: the old id becomes a tombstone, the new one is live at version 1 with the data', async (t) => {
      const { h, store, peer, clock } = await setup(t);
      await store.create('old', b('v1'), HOUR);
      assert.equal(await store.update('old', 1, b('v2'), HOUR), 'ok');
      assert.equal(await store.update('old', 2, b('v3'), HOUR), 'ok');
      assert.equal(await store.rotate('old', 3, 15_000, 'new', b('moved'), 2 * HOUR), 'ok');
      assertDeadline(h, clock, revoked(await peer.load('old')).deadline, 15_000);
      assertLive(await peer.load('new'), 1, b('moved'));
      assert.equal(await store.update('old', 3, b('late'), HOUR), 'gone');
      assert.equal(await store.update('new', 1, b('next'), 2 * HOUR), 'ok');
      assertLive(await store.load('new'), 2, b('next'));
      await assertTtls(h, { old: 15_000, new: 2 * HOUR });
    });

    test('rotate is gone and changes nothing when the old id is not live or the new id holds anything', async (t) => {
      const { h, store, clock } = await setup(t);
      await store.create('old', b('old'), MINUTE);
      await store.create('taken', b('taken'), 70_000);
      await store.revoke('dead', 80_000);
      await store.revoke('gone', 50_000);
      await store.create('src', b('src'), 90_000);
      // src: an alias (of succ)
      assert.equal(await store.rotate('src', 1, 100_000, 'succ', b('x'), HOUR, aliasAt(clock, { family: 'Q' })), 'ok');
      const keys = ['old', 'taken', 'dead', 'gone', 'src', 'succ', 'missing', 'n1', 'n2', 'n3'];
      const before = await snapshot(store, keys);
      const cases: Array<[string, string, string]> = [
        ['old missing', 'missing', 'n1'],
        ['old revoked', 'gone', 'n2'],
        ['old an alias', 'src', 'n3'],
        ['new live', 'old', 'taken'],
        ['new a tombstone', 'old', 'dead'],
        ['new an alias', 'old', 'src'],
        ['old and new the same key', 'old', 'old'],
      ];
      for (const [why, from, to] of cases) {
        assert.equal(await store.rotate(from, 1, 10 * HOUR, to, b('new data'), 10 * HOUR), 'gone', why);
        await assertUnchanged(store, before, why);
        assert.equal(await store.rotate(from, 1, 10 * HOUR, to, b('new data'), 10 * HOUR, aliasAt(clock, { family: 'G' })), 'gone', `${why} (with an alias)`);
        await assertUnchanged(store, before, `${why} (with an alias)`);
      }
      // The failed renewals made no family G.
      assert.equal(await store.revokeFamily('G', 'bystander', HOUR), 0);
      await assertUnchanged(store, before, 'revokeFamily of G');
      // Nothing's TTL moved.
      await assertTtls(h, { old: MINUTE, gone: 50_000, taken: 70_000, dead: 80_000, src: 100_000, succ: HOUR });
    });

    test('rotate from a record whose version moved is a conflict and changes nothing', async (t) => {
      const { h, store, peer, clock } = await setup(t);
      await store.create('old', b('v1'), MINUTE);
      assert.equal(await store.update('old', 1, b('v2'), 2 * MINUTE), 'ok');
      for (const v of [1, 3, 99]) {
        assert.equal(await peer.rotate('old', v, 10 * HOUR, 'new', b('x'), 10 * HOUR), 'conflict', `version ${v}`);
        assert.equal(await peer.rotate('old', v, 10 * HOUR, 'new', b('x'), 10 * HOUR, aliasAt(clock, { family: 'G' })), 'conflict', `version ${v} with an alias`);
      }
      assertLive(await store.load('old'), 2, b('v2'));
      assert.deepEqual(await store.load('new'), { state: 'none' });
      // The failed renewals made no family G: revoking it touches only the key named.
      assert.equal(await store.revokeFamily('G', 'bystander', HOUR), 0);
      assertLive(await store.load('old'), 2, b('v2'));
      await assertTtls(h, { old: 2 * MINUTE });
    });

    test('rotate from an expired record is gone and creates nothing', async (t) => {
      const { h, store } = await setup(t);
      await store.create('old', b('a'), 1000);
      await expire(h, 'old', 1000);
      assert.equal(await store.rotate('old', 1, HOUR, 'new', b('b'), HOUR), 'gone');
      assert.deepEqual(await store.load('old'), { state: 'none' });
      assert.deepEqual(await store.load('new'), { state: 'none' });
    });

    test('rotate onto an id whose record expired succeeds', async (t) => {
      const { h, store } = await setup(t);
      await store.create('new', b('stale'), 1000);
      await expire(h, 'new', 1000);
      await store.create('old', b('a'), HOUR);
      assert.equal(await store.rotate('old', 1, HOUR, 'new', b('b'), HOUR), 'ok');
      assertLive(await store.load('new'), 1, b('b'));
    });

    // ---- races ----

    test('two concurrent updates at the same version: exactly one ok, the other a conflict; the winner\'s data is stored', async (t) => {
      const { store, peer } = await setup(t);
      const n = 30;
      for (let i = 0; i < n; i++) {
        const k = `k${i}`;
        await store.create(k, b('base'), HOUR);
        const [first, second] = i % 2 ? [store, peer] : [peer, store];
        const results = await Promise.all([first.update(k, 1, b(`first ${i}`), HOUR), second.update(k, 1, b(`second ${i}`), HOUR)]);
        assert.deepEqual([...results].sort(), ['conflict', 'ok'], `${k}: ${results.join(', ')}`);
        assertLive(await store.load(k), 2, b(results[0] === 'ok' ? `first ${i}` : `second ${i}`), k);
      }
    });

    test('many concurrent updates at one version: exactly one wins', async (t) => {
      const { store, peer } = await setup(t);
      await store.create('k1', b('base'), HOUR);
      const results = await Promise.all(Array.from({ length: 16 }, (_, i) => (i % 2 ? peer : store).update('k1', 1, b(`w${i}`), HOUR)));
      assert.equal(results.filter((r) => r === 'ok').length, 1, results.join(', '));
      assert.equal(results.filter((r) => r === 'conflict').length, 15);
      assertLive(await store.load('k1'), 2, b(`w${results.indexOf('ok')}`));
    });

    test('writers that reload and retry on conflict lose no write', async (t) => {
      const { store, peer } = await setup(t);
      await store.create('k1', b('>'), HOUR);
      const writer = async (s: SessionStore, mark: string, times: number): Promise<number> => {
        let conflicts = 0;
        for (let done = 0; done < times; ) {
          const cur = live(await s.load('k1'));
          const result = await s.update('k1', cur.version, Buffer.concat([cur.data, b(mark)]), HOUR);
          if (result === 'ok') done += 1;
          else {
            assert.equal(result, 'conflict');
            conflicts += 1;
          }
        }
        return conflicts;
      };
      await Promise.all([writer(store, 'a', 15), writer(peer, 'b', 15), writer(store, 'c', 15)]);
      const r = live(await store.load('k1'));
      assert.equal(r.version, 46);
      const text = r.data.toString('latin1');
      for (const mark of ['a', 'b', 'c']) assert.equal(text.split(mark).length - 1, 15, `${mark} in ${text}`);
      assert.equal(text.length, 46);
    });

    test('concurrent update and revoke never resurrect the session', async (t) => {
      const { h, store, peer } = await setup(t);
      const n = 60;
      const keys = Array.from({ length: n }, (_, i) => `race${i}`);
      await Promise.all(keys.map((k) => store.create(k, b('a'), HOUR)));
      const outcomes = new Set<WriteResult>();
      for (let i = 0; i < n; i++) {
        const k = keys[i] as string;
        const upd = () => (i % 4 < 2 ? peer : store).update(k, 1, b('late'), 10 * HOUR);
        const rev = () => (i % 4 < 2 ? store : peer).revoke(k, MINUTE);
        // Alternate which one is issued first (and on which connection), so both orders happen.
        let u: WriteResult;
        let r: boolean;
        if (i % 2 === 0) [u, r] = await Promise.all([upd(), rev()]);
        else [r, u] = await Promise.all([rev(), upd()]);
        outcomes.add(u);
        assert.equal(r, true, `${k}: the record was live when revoked`);
        assert.ok(u === 'ok' || u === 'gone', `${k}: update said ${u}`);
        revoked(await store.load(k));
        assert.equal(await store.update(k, u === 'ok' ? 2 : 1, b('after'), 10 * HOUR), 'gone', k);
      }
      if (store === peer) assert.deepEqual([...outcomes].sort(), ['gone', 'ok']);
      // No racing update stretched a tombstone's TTL.
      if (h.pttl) {
        for (const k of keys) {
          const left = await h.pttl(k);
          assert.ok(left > 0 && left <= MINUTE, `${k}: PTTL ${left}`);
        }
      } else {
        h.advance(MINUTE);
        for (const k of keys) assert.deepEqual(await store.load(k), { state: 'none' }, k);
      }
    });

    test('concurrent creates of one key: exactly one wins', async (t) => {
      const { store, peer } = await setup(t);
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? peer : store).create('k1', b(`creator ${i}`), HOUR)));
      assert.equal(results.filter(Boolean).length, 1);
      assertLive(await store.load('k1'), 1, b(`creator ${results.indexOf(true)}`));
    });

    test('concurrent rotates of one id: exactly one wins, the losers create nothing', async (t) => {
      const { store, peer, clock } = await setup(t);
      const n = 20;
      for (let i = 0; i < n; i++) {
        const o = `o${i}`;
        await store.create(o, b('base'), HOUR);
        const withAlias = i % 3 === 0 ? aliasAt(clock, { family: `fam${i}` }) : undefined;
        const results = await Promise.all(
          Array.from({ length: 4 }, (_, j) => ((i + j) % 2 ? peer : store).rotate(o, 1, HOUR, `${o}-n${j}`, b(`to ${j}`), HOUR, withAlias)),
        );
        assert.equal(results.filter((r) => r === 'ok').length, 1, results.join(', '));
        for (const [j, r] of results.entries()) {
          if (r === 'ok') assertLive(await store.load(`${o}-n${j}`), 1, b(`to ${j}`));
          else {
            assert.equal(r, 'gone', `${o}-n${j}`);
            assert.deepEqual(await store.load(`${o}-n${j}`), { state: 'none' });
          }
        }
        assert.equal((await store.load(o)).state, withAlias ? 'renewed' : 'revoked');
      }
    });

    test('concurrent rotate and update at one version: exactly one of them writes', async (t) => {
      const { store, peer } = await setup(t);
      const n = 30;
      const seen = new Set<string>();
      for (let i = 0; i < n; i++) {
        const o = `o${i}`;
        const nk = `n${i}`;
        await store.create(o, b('base'), HOUR);
        const [a, c] = i % 4 < 2 ? [store, peer] : [peer, store];
        const rot = () => a.rotate(o, 1, HOUR, nk, b('rotated'), HOUR);
        const upd = () => c.update(o, 1, b('updated'), HOUR);
        let rr: WriteResult;
        let ur: WriteResult;
        if (i % 2) [rr, ur] = await Promise.all([rot(), upd()]);
        else [ur, rr] = await Promise.all([upd(), rot()]);
        seen.add(`${rr}/${ur}`);
        if (rr === 'ok') {
          assert.equal(ur, 'gone', `${o}: the update came after the rotate`);
          revoked(await store.load(o));
          assertLive(await store.load(nk), 1, b('rotated'));
        } else {
          assert.equal(rr, 'conflict', `${o}: rotate said ${rr}`);
          assert.equal(ur, 'ok');
          assertLive(await store.load(o), 2, b('updated'));
          assert.deepEqual(await store.load(nk), { state: 'none' });
        }
      }
      if (store === peer) assert.deepEqual([...seen].sort(), ['conflict/ok', 'ok/gone']);
    });

    // ---- arguments, lifecycle ----

    test('an empty or non-Buffer data, a bad TTL, a bad version or bad alias fields are refused with a clear error before anything is written', async (t) => {
      const { h, store, clock } = await setup(t);
      await store.create('k1', b('keep'), HOUR);
      const good = aliasAt(clock);
      const badData = [Buffer.alloc(0), 'text' as unknown as Buffer, new Uint8Array([1, 2]) as unknown as Buffer, null as unknown as Buffer];
      for (const data of badData) {
        const err = { name: 'TypeError', message: /data must be a non-empty Buffer/ };
        await assert.rejects(store.create('k2', data, HOUR), err);
        await assert.rejects(store.update('k1', 1, data, HOUR), err);
        await assert.rejects(store.rotate('k1', 1, HOUR, 'k2', data, HOUR), err);
        await assert.rejects(store.rotate('k1', 1, HOUR, 'k2', data, HOUR, good), err);
      }
      const badTtls = [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 2 ** 53, '1000' as unknown as number];
      for (const ttl of badTtls) {
        const err = (name: string) => ({ name: 'RangeError', message: new RegExp(`^${name} must be a positive integer number of ms`) });
        await assert.rejects(store.create('k2', b('x'), ttl), err('ttlMs'), `create ttl ${ttl}`);
        await assert.rejects(store.update('k1', 1, b('x'), ttl), err('ttlMs'), `update ttl ${ttl}`);
        await assert.rejects(store.revoke('k1', ttl), err('tombstoneTtlMs'), `revoke ttl ${ttl}`);
        await assert.rejects(store.revokeFamily('F', 'k1', ttl), err('tombstoneTtlMs'), `revokeFamily ttl ${ttl}`);
        await assert.rejects(store.rotate('k1', 1, ttl, 'k2', b('x'), HOUR), err('oldTombstoneTtlMs'), `rotate old ttl ${ttl}`);
        await assert.rejects(store.rotate('k1', 1, HOUR, 'k2', b('x'), ttl, good), err('ttlMs'), `rotate new ttl ${ttl}`);
      }
      const badVersions = [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, '1' as unknown as number];
      for (const v of badVersions) {
        const err = { name: 'RangeError', message: /^version must be a positive integer/ };
        await assert.rejects(store.update('k1', v, b('x'), HOUR), err, `update version ${v}`);
        await assert.rejects(store.rotate('k1', v, HOUR, 'k2', b('x'), HOUR), err, `rotate version ${v}`);
      }
      for (const bad of [Number.NaN, Number.POSITIVE_INFINITY]) {
        await assert.rejects(store.rotate('k1', 1, HOUR, 'k2', b('x'), HOUR, { ...good, graceUntil: bad }), { name: 'RangeError', message: /alias\.graceUntil/ });
      }
      for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, 1.5, 2 ** 53]) {
        await assert.rejects(store.rotate('k1', 1, HOUR, 'k2', b('x'), HOUR, { ...good, familyDeadline: bad }), { name: 'RangeError', message: /alias\.familyDeadline/ });
      }
      for (const bad of ['', 'a|b', 'a:b', 'a b', 'ünï', 'a\nb', 'a=']) {
        await assert.rejects(store.rotate('k1', 1, HOUR, 'k2', b('x'), HOUR, { ...good, family: bad }), { name: 'TypeError', message: /alias\.family must be a non-empty base64url token/ }, JSON.stringify(bad));
        await assert.rejects(store.rotate('k1', 1, HOUR, 'k2', b('x'), HOUR, { ...good, successor: bad }), { name: 'TypeError', message: /alias\.successor must be a non-empty base64url token/ }, JSON.stringify(bad));
      }
      assertLive(await store.load('k1'), 1, b('keep'));
      assert.deepEqual(await store.load('k2'), { state: 'none' });
      // No refused renewal made family F.
      assert.equal(await store.revokeFamily('F', 'other', HOUR), 0);
      assertLive(await store.load('k1'), 1, b('keep'));
      await assertTtls(h, { k1: HOUR });
    });

    test('ping answers; after close every call rejects with StoreUnavailableError; close is idempotent', async (t) => {
      const { store, clock } = await setup(t);
      await store.create('k1', b('a'), HOUR);
      await store.ping();
      assert.equal(store.available(), true, 'a started store is available');
      await store.close();
      assert.equal(store.available(), false, 'a closed store is not');
      await store.close();
      await assert.rejects(store.ping(), StoreUnavailableError);
      await assert.rejects(store.load('k1'), StoreUnavailableError);
      await assert.rejects(store.create('k2', b('a'), HOUR), StoreUnavailableError);
      await assert.rejects(store.update('k1', 1, b('b'), HOUR), StoreUnavailableError);
      await assert.rejects(store.revoke('k1', HOUR), StoreUnavailableError);
      await assert.rejects(store.rotate('k1', 1, HOUR, 'k2', b('b'), HOUR), StoreUnavailableError);
      await assert.rejects(store.rotate('k1', 1, HOUR, 'k2', b('b'), HOUR, aliasAt(clock)), StoreUnavailableError);
      await assert.rejects(store.revokeFamily('F', 'k1', HOUR), StoreUnavailableError);
      await assert.rejects(store.start(), StoreUnavailableError);
    });

    // ---- renewal aliases and families ----

    describe('renewal aliases, families and revokeFamily', () => {
      /** Real-time backends: the family's index has about `ms` left to live. */
      async function assertFamilyPttl(h: StoreHarness, family: string, ms: number): Promise<void> {
        assert.ok(h.familyPttl, 'a real-time backend reports family PTTLs');
        const left = await h.familyPttl(family);
        assert.ok(left <= ms && left > ms - REAL_TIME_SLACK_MS, `PTTL of family ${family} is ${left}, expected about ${ms}`);
      }

      test('rotate with an alias: the old id reads as renewed with the alias fields as given and its own end of life; the new id is live at version 1', async (t) => {
        const { h, store, peer, clock } = await setup(t);
        await store.create('old', b('v1'), HOUR);
        assert.equal(await store.update('old', 1, b('v2'), HOUR), 'ok');
        const alias = aliasAt(clock, { successor: 'Zm9vLWJhcg_-0123456789', family: 'fam_ily-1' });
        assert.equal(await store.rotate('old', 2, 15_000, 'new', b('moved'), 2 * HOUR, alias), 'ok');
        for (const s of [store, peer]) {
          const { deadline, ...rest } = renewed(await s.load('old'));
          assert.deepEqual(rest, { state: 'renewed', successor: alias.successor, graceUntil: alias.graceUntil, family: alias.family });
          // The alias's deadline is its own end of life (oldTombstoneTtlMs), like a tombstone's.
          assertDeadline(h, clock, deadline, 15_000);
        }
        assertLive(await store.load('new'), 1, b('moved'));
        await assertTtls(h, { old: 15_000, new: 2 * HOUR });
      });

      test('an alias keeps its fields exactly: long tokens, and any grace deadline (past, zero, far future)', async (t) => {
        const { store, clock } = await setup(t);
        const now = clock.now();
        const cases: RenewalAlias[] = [
          { successor: 'A'.repeat(4096), graceUntil: now + 1, family: 'f', familyDeadline: now + HOUR },
          { successor: '-', graceUntil: 0, family: '_', familyDeadline: now + HOUR },
          { successor: 'abc-DEF_123', graceUntil: now - HOUR, family: 'x'.repeat(200), familyDeadline: now + HOUR },
          { successor: 'L1', graceUntil: 8_640_000_000_000_000, family: 'N1', familyDeadline: now + HOUR },
        ];
        for (const [i, alias] of cases.entries()) {
          await store.create(`o${i}`, b('x'), HOUR);
          assert.equal(await store.rotate(`o${i}`, 1, HOUR, `n${i}`, b('y'), HOUR, alias), 'ok', `case ${i}`);
          const r = renewed(await store.load(`o${i}`));
          assert.equal(r.successor, alias.successor, `successor ${i}`);
          assert.equal(r.graceUntil, alias.graceUntil, `graceUntil ${i}`);
          assert.equal(r.family, alias.family, `family ${i}`);
        }
      });

      test('an alias is not live: update, create, rotate from or onto it fail and change nothing; it expires with its TTL', async (t) => {
        const { h, store, peer, clock } = await setup(t);
        await store.create('old', b('a'), HOUR);
        assert.equal(await store.rotate('old', 1, 15_000, 'new', b('b'), HOUR, aliasAt(clock, { family: 'R' })), 'ok');
        await store.create('other', b('o'), HOUR);
        const before = await snapshot(store, ['old', 'new', 'other', 'n2']);
        assert.equal(await peer.update('old', 1, b('late'), 10 * HOUR), 'gone');
        assert.equal(await peer.update('old', 2, b('late'), 10 * HOUR), 'gone');
        assert.equal(await peer.create('old', b('late'), 10 * HOUR), false);
        assert.equal(await peer.rotate('old', 1, 10 * HOUR, 'n2', b('late'), HOUR, aliasAt(clock, { family: 'G' })), 'gone');
        assert.equal(await peer.rotate('old', 1, 10 * HOUR, 'n2', b('late'), HOUR), 'gone');
        assert.equal(await peer.rotate('other', 1, 10 * HOUR, 'old', b('late'), 10 * HOUR, aliasAt(clock, { family: 'G' })), 'gone');
        await assertUnchanged(store, before, 'after the failed writes');
        // None of the failed writes added anything to family G.
        assert.equal(await store.revokeFamily('G', 'bystander', HOUR), 0);
        await assertUnchanged(store, before, 'after revoking family G');
        await assertTtls(h, { old: 15_000 }); // no failed write stretched the alias
      });

      test('revoke of an alias returns false and leaves a tombstone; the successor stays live', async (t) => {
        const { h, store, clock } = await setup(t);
        await store.create('old', b('a'), HOUR);
        await store.rotate('old', 1, 15_000, 'new', b('b'), HOUR, aliasAt(clock));
        assert.equal(await store.revoke('old', 40_000), false);
        assertDeadline(h, clock, revoked(await store.load('old')).deadline, 40_000);
        assertLive(await store.load('new'), 1, b('b'));
        await assertTtls(h, { old: 40_000 });
      });

      test('revokeFamily of a never-renewed session (no family index) revokes the key it names and nothing else', async (t) => {
        const { h, store, peer, clock } = await setup(t);
        await store.create('k1', b('mine'), HOUR);
        assert.equal(await store.update('k1', 1, b('mine2'), HOUR), 'ok');
        await store.create('k2', b('someone else'), HOUR);
        assert.equal(await peer.revokeFamily('F', 'k1', 6 * HOUR), 1);
        assertDeadline(h, clock, revoked(await store.load('k1')).deadline, 6 * HOUR);
        assert.equal(await store.update('k1', 2, b('late'), 10 * HOUR), 'gone');
        assert.equal(await store.create('k1', b('late'), 10 * HOUR), false);
        assertLive(await store.load('k2'), 1, b('someone else'));
        await assertTtls(h, { k1: 6 * HOUR });
      });

      test('revokeFamily always leaves a tombstone at its key: unknown, expired, revoked or an alias of another family (none counted)', async (t) => {
        const { h, store, clock } = await setup(t);
        await store.create('expired', b('x'), 1000);
        await expire(h, 'expired', 1000);
        await store.revoke('tomb', 20 * MINUTE);
        await store.create('a', b('a'), HOUR);
        await store.rotate('a', 1, 30 * MINUTE, 'b', b('b'), HOUR, aliasAt(clock, { family: 'Other' }));
        for (const key of ['unknown', 'expired', 'tomb', 'a']) {
          assert.equal(await store.revokeFamily('F', key, 2 * HOUR), 0, key);
          assertDeadline(h, clock, revoked(await store.load(key)).deadline, 2 * HOUR);
          assert.equal(await store.create(key, b('late'), 10 * HOUR), false, key);
        }
        // 'a' left family Other's index in place: b is still revocable through it.
        assertLive(await store.load('b'), 1, b('b'));
        assert.equal(await store.revokeFamily('Other', 'unrelated', HOUR), 1);
        revoked(await store.load('b'));
        await assertTtls(h, { unknown: 2 * HOUR, expired: 2 * HOUR, tomb: 2 * HOUR, a: 2 * HOUR });
      });

      test('revokeFamily after renewals: every id of the family ends as a tombstone, whichever id is named; it counts the live ones', async (t) => {
        const { h, store, peer, clock } = await setup(t);
        for (const [i, named] of ['i0', 'i1', 'i2', 'elsewhere'].entries()) {
          const fam = `fam${i}`;
          const p = (k: string) => `${k}-${i}`;
          await store.create(p('i0'), b('0'), HOUR);
          assert.equal(await store.rotate(p('i0'), 1, HOUR, p('i1'), b('1'), HOUR, aliasAt(clock, { family: fam })), 'ok');
          assert.equal(await store.update(p('i1'), 1, b('1b'), HOUR), 'ok');
          assert.equal(await store.rotate(p('i1'), 2, HOUR, p('i2'), b('2'), HOUR, aliasAt(clock, { family: fam })), 'ok');
          renewed(await store.load(p('i0')));
          renewed(await store.load(p('i1')));
          assertLive(await store.load(p('i2')), 1, b('2'));
          // A bystander of another family, with its own alias.
          await store.create(p('y'), b('y'), HOUR);
          assert.equal(await store.rotate(p('y'), 1, HOUR, p('z'), b('z'), HOUR, aliasAt(clock, { family: `other${i}` })), 'ok');
          const bystanders = await snapshot(store, [p('y'), p('z')]);

          assert.equal(await peer.revokeFamily(fam, p(named), 5 * HOUR), 1, `naming ${named}`);
          const ids = named === 'elsewhere' ? ['i0', 'i1', 'i2', 'elsewhere'] : ['i0', 'i1', 'i2'];
          for (const k of ids) assertDeadline(h, clock, revoked(await store.load(p(k))).deadline, 5 * HOUR);
          assert.equal(await store.update(p('i2'), 1, b('late'), 10 * HOUR), 'gone');
          assert.equal(await store.rotate(p('i2'), 1, HOUR, p('i3'), b('late'), HOUR, aliasAt(clock, { family: fam })), 'gone');
          assert.deepEqual(await store.load(p('i3')), { state: 'none' });
          await assertUnchanged(store, bystanders, `family ${fam}`);
          // The index went with the family: a second revocation finds nothing live.
          assert.equal(await store.revokeFamily(fam, p('again'), 5 * HOUR), 0);
        }
        await assertTtls(h, { 'i0-0': 5 * HOUR, 'i1-1': 5 * HOUR, 'i2-2': 5 * HOUR, 'elsewhere-3': 5 * HOUR });
      });

      test('revokeFamily counts a live named key that is also in the family once', async (t) => {
        const { store, clock } = await setup(t);
        await store.create('a', b('a'), HOUR);
        await store.rotate('a', 1, HOUR, 'b', b('b'), HOUR, aliasAt(clock, { family: 'F' }));
        await store.create('c', b('c'), HOUR); // not in F, named below
        assert.equal(await store.revokeFamily('F', 'b', HOUR), 1);
        await store.create('d', b('d'), HOUR);
        await store.rotate('d', 1, HOUR, 'e', b('e'), HOUR, aliasAt(clock, { family: 'G' }));
        assert.equal(await store.revokeFamily('G', 'c', HOUR), 2); // e (member) and c (named)
        for (const k of ['a', 'b', 'c', 'd', 'e']) revoked(await store.load(k));
      });

      test('revokeFamily skips members that expired or were revoked on their own (they keep their own TTL)', async (t) => {
        const { h, store, peer, clock } = await setup(t);
        // An alias that expired on its own: it must not come back as a tombstone.
        await store.create('s0', b('s'), HOUR);
        assert.equal(await store.rotate('s0', 1, 1000, 's1', b('s'), HOUR, aliasAt(clock, { family: 'F' })), 'ok');
        await expire(h, 's0', 1000);
        await store.create('a', b('a'), HOUR);
        await store.create('d', b('d'), HOUR);
        assert.equal(await store.rotate('a', 1, 10 * MINUTE, 'b', b('b'), HOUR, aliasAt(clock, { family: 'F' })), 'ok');
        assert.equal(await store.rotate('d', 1, 10 * MINUTE, 'e', b('e'), HOUR, aliasAt(clock, { family: 'F' })), 'ok');
        assert.equal(await store.revoke('e', 20 * MINUTE), true); // e: a plain tombstone in the family
        const eBefore = revoked(await store.load('e'));

        assert.equal(await peer.revokeFamily('F', 's1', 5 * HOUR), 2); // s1 (named), b
        for (const k of ['a', 'b', 'd', 's1']) assertDeadline(h, clock, revoked(await store.load(k)).deadline, 5 * HOUR);
        assert.deepEqual(await store.load('s0'), { state: 'none' });
        assert.deepEqual(await store.load('e'), eBefore);
        await assertTtls(h, { e: 20 * MINUTE, a: 5 * HOUR, b: 5 * HOUR, d: 5 * HOUR });
      });

      test('the family index lives until alias.familyDeadline; once it expired revokeFamily revokes only its key', async (t) => {
        const { h, store, clock } = await setup(t);
        // Records and aliases that outlive the index (the caller never does this) isolate its own lifetime.
        const familyDeadline = clock.now() + 10 * MINUTE;
        for (const f of ['F', 'G']) {
          await store.create(`${f}1`, b(f), 3 * HOUR);
          assert.equal(await store.rotate(`${f}1`, 1, 3 * HOUR, `${f}2`, b(f), 3 * HOUR, aliasAt(clock, { family: f, familyDeadline })), 'ok');
        }
        if (h.pttl) {
          await assertFamilyPttl(h, 'F', 10 * MINUTE);
          await assertFamilyPttl(h, 'G', 10 * MINUTE);
          assert.ok(h.expireFamilyNow);
          await h.expireFamilyNow('G');
        } else {
          h.advance(10 * MINUTE - 1);
          assert.equal(await store.revokeFamily('F', 'x', HOUR), 1); // still indexed 1ms before
          for (const k of ['F1', 'F2']) revoked(await store.load(k));
          h.advance(1);
        }
        assert.equal(await store.revokeFamily('G', 'y', HOUR), 0);
        renewed(await store.load('G1'));
        assertLive(await store.load('G2'), 1, b('G'));
        revoked(await store.load('y'));
      });

      test('a later renewal may extend the family index but never shortens it', async (t) => {
        const { h, store, clock } = await setup(t);
        const now = clock.now();
        // Family S: first renewal +2h, second +1h (stays 2h). Family L: first +1h, second +2h (becomes 2h).
        for (const [f, first, second] of [['S', 2 * HOUR, HOUR], ['L', HOUR, 2 * HOUR]] as const) {
          await store.create(`${f}0`, b(f), 3 * HOUR);
          assert.equal(await store.rotate(`${f}0`, 1, 3 * HOUR, `${f}1`, b(f), 3 * HOUR, aliasAt(clock, { family: f, familyDeadline: now + first })), 'ok');
          assert.equal(await store.rotate(`${f}1`, 1, 3 * HOUR, `${f}2`, b(f), 3 * HOUR, aliasAt(clock, { family: f, familyDeadline: now + second })), 'ok');
        }
        if (h.pttl) {
          await assertFamilyPttl(h, 'S', 2 * HOUR);
          await assertFamilyPttl(h, 'L', 2 * HOUR);
          return;
        }
        h.advance(2 * HOUR - 1);
        for (const f of ['S', 'L']) {
          assert.equal(await store.revokeFamily(f, `${f}-none`, HOUR), 1, f);
          for (const k of [`${f}0`, `${f}1`, `${f}2`]) revoked(await store.load(k));
        }
      });

      test('after revokeFamily the family starts afresh: a later renewal makes a new index', async (t) => {
        const { store, peer, clock } = await setup(t);
        await store.create('m1', b('1'), HOUR);
        assert.equal(await store.rotate('m1', 1, HOUR, 'm2', b('2'), HOUR, aliasAt(clock)), 'ok');
        assert.equal(await store.revokeFamily('F', 'm2', HOUR), 1);
        for (const [from, to] of [['m1', 'm3'], ['m2', 'm4']] as const) {
          assert.equal(await peer.rotate(from, 1, HOUR, to, b('x'), HOUR, aliasAt(clock)), 'gone', from);
          assert.equal(await peer.rotate(from, 1, HOUR, to, b('x'), HOUR), 'gone', from);
          revoked(await store.load(from));
          assert.deepEqual(await store.load(to), { state: 'none' });
        }
        await store.create('m5', b('5'), HOUR);
        assert.equal(await store.rotate('m5', 1, HOUR, 'm6', b('6'), HOUR, aliasAt(clock)), 'ok');
        assert.equal(await store.revokeFamily('F', 'm6', HOUR), 1);
        for (const k of ['m5', 'm6']) revoked(await store.load(k));
      });

      test('concurrent updates and revokeFamily never resurrect a session or its alias', async (t) => {
        const { h, store, peer, clock } = await setup(t);
        const n = 40;
        const tombTtl = MINUTE;
        await Promise.all(
          Array.from({ length: n }, async (_, i) => {
            await store.create(`a${i}`, b('a'), HOUR);
            assert.equal(await store.rotate(`a${i}`, 1, HOUR, `b${i}`, b('b'), HOUR, aliasAt(clock, { family: `rf${i}`, graceUntil: clock.now() + HOUR })), 'ok');
          }),
        );
        for (let i = 0; i < n; i++) {
          const [a, bk] = [`a${i}`, `b${i}`];
          const [mine, other] = i % 4 < 2 ? [peer, store] : [store, peer];
          const upd = (k: string) => mine.update(k, 1, b('late'), 10 * HOUR);
          const rev = () => other.revokeFamily(`rf${i}`, bk, tombTtl);
          let r: number;
          let ub: WriteResult;
          let ua: WriteResult;
          if (i % 2 === 0) [ub, ua, r] = await Promise.all([upd(bk), upd(a), rev()]);
          else [r, ub, ua] = await Promise.all([rev(), upd(bk), upd(a)]);
          assert.equal(r, 1, `rf${i}: exactly one live record was revoked`);
          assert.equal(ua, 'gone', `${a} is an alias`);
          assert.ok(ub === 'ok' || ub === 'gone', `${bk}: ${ub}`);
          for (const k of [a, bk]) {
            revoked(await store.load(k));
            assert.equal(await store.update(k, ub === 'ok' ? 2 : 1, b('after'), 10 * HOUR), 'gone', k);
          }
        }
        // No racing update stretched a tombstone's TTL.
        if (h.pttl) {
          for (let i = 0; i < n; i++) {
            for (const k of [`a${i}`, `b${i}`]) {
              const left = await h.pttl(k);
              assert.ok(left > 0 && left <= tombTtl, `${k}: PTTL ${left}`);
            }
          }
        } else {
          h.advance(tombTtl);
          for (let i = 0; i < n; i++) for (const k of [`a${i}`, `b${i}`]) assert.deepEqual(await store.load(k), { state: 'none' }, k);
        }
      });

      test('concurrent renewal and revokeFamily: whichever runs first, the family ends with no live id', async (t) => {
        const { store, peer, clock } = await setup(t);
        const n = 40;
        await Promise.all(Array.from({ length: n }, (_, i) => store.create(`o${i}`, b('o'), HOUR)));
        const outcomes = new Set<WriteResult>();
        for (let i = 0; i < n; i++) {
          const [o, nk] = [`o${i}`, `n${i}`];
          const [mine, other] = i % 4 < 2 ? [peer, store] : [store, peer];
          const rot = () => mine.rotate(o, 1, HOUR, nk, b('n'), HOUR, aliasAt(clock, { family: `rr${i}`, graceUntil: clock.now() + HOUR }));
          // The revoking request still holds the old id: that is the key it names.
          const rev = () => other.revokeFamily(`rr${i}`, o, HOUR);
          let rotated: WriteResult;
          let r: number;
          if (i % 2 === 0) [rotated, r] = await Promise.all([rot(), rev()]);
          else [r, rotated] = await Promise.all([rev(), rot()]);
          outcomes.add(rotated);
          assert.equal(r, 1, `rr${i}: exactly one live record was revoked`);
          revoked(await store.load(o)); // a tombstone, not an alias
          if (rotated === 'ok') revoked(await store.load(nk));
          else {
            assert.equal(rotated, 'gone');
            assert.deepEqual(await store.load(nk), { state: 'none' });
          }
        }
        // Both orders are expected to have happened; with one store they do by construction.
        if (store === peer) assert.deepEqual([...outcomes].sort(), ['gone', 'ok']);
      });
    });

    describe('directory (users, log ids, revoke-all)', () => {
      test("a user's entry set: written, read by another client, fields replaced and dropped; users apart", async (t) => {
        const { store, peer } = await setup(t);
        const d = store.directory;
        assert.deepEqual(await d.userEntries('u1'), new Map());
        await d.putUserEntry('u1', 'famA', 'sealed-a', HOUR);
        await d.putUserEntry('u1', 'famB', 'sealed b | with : odd {chars} ü', HOUR);
        await d.putUserEntry('u2', 'famA', 'other user', HOUR);
        await d.putUserEntry('u1', 'famA', 'sealed-a2', MINUTE);
        assert.deepEqual(
          await peer.directory.userEntries('u1'),
          new Map([
            ['famA', 'sealed-a2'],
            ['famB', 'sealed b | with : odd {chars} ü'],
          ]),
        );
        await peer.directory.dropUserEntries('u1', ['famA', 'missing']);
        await d.dropUserEntries('u1', []);
        assert.deepEqual(await d.userEntries('u1'), new Map([['famB', 'sealed b | with : odd {chars} ü']]));
        assert.deepEqual(await d.userEntries('u2'), new Map([['famA', 'other user']]));
      });

      test('a log id record: written, read, replaced; unknown ids read as undefined', async (t) => {
        const { store, peer } = await setup(t);
        assert.equal(await store.directory.getLogIndex('nope'), undefined);
        await store.directory.putLogIndex('log1', '{"k":"a.b","f":"fam","d":1}', HOUR);
        assert.equal(await peer.directory.getLogIndex('log1'), '{"k":"a.b","f":"fam","d":1}');
        await peer.directory.putLogIndex('log1', 'again', HOUR);
        assert.equal(await store.directory.getLogIndex('log1'), 'again');
      });

      test('the revoke-all time: 0 until set, then the time on every client', async (t) => {
        const { store, peer } = await setup(t);
        assert.equal(await store.directory.revokedBefore(), 0);
        const time = Date.now();
        await store.directory.setRevokedBefore(time, HOUR);
        assert.deepEqual(await Promise.all([store.directory.revokedBefore(), peer.directory.revokedBefore()]), [time, time]);
        // Asked many times in one turn (with loads), answered alike.
        const many = await Promise.all(Array.from({ length: 5 }, () => peer.directory.revokedBefore()));
        assert.deepEqual(many, [time, time, time, time, time]);
      });

      test('entries expire: a user set lives as long as its longest entry asked; log ids and the revoke-all time with their TTL', async (t) => {
        const { h, store } = await setup(t);
        if (h.pttl) {
          t.skip('a real-time backend: expiry is Redis\' own (PX / PEXPIRE), not waited for here');
          return;
        }
        const d = store.directory;
        await d.putUserEntry('u', 'long', 'x', HOUR);
        await d.putUserEntry('u', 'short', 'y', MINUTE);
        await d.putLogIndex('l', 'z', MINUTE);
        await d.setRevokedBefore(123, MINUTE);
        h.advance(MINUTE + 1);
        assert.equal((await d.userEntries('u')).size, 2, 'the set lives as long as its longest entry asked');
        assert.equal(await d.getLogIndex('l'), undefined);
        assert.equal(await d.revokedBefore(), 0);
        h.advance(HOUR);
        assert.equal((await d.userEntries('u')).size, 0);
      });

      test('a closed store fails every directory call with StoreUnavailableError', async (t) => {
        const { store } = await setup(t);
        await store.close();
        const calls = [
          () => store.directory.putUserEntry('u', 'f', 'v', HOUR),
          () => store.directory.userEntries('u'),
          () => store.directory.dropUserEntries('u', ['f']),
          () => store.directory.putLogIndex('l', 'v', HOUR),
          () => store.directory.getLogIndex('l'),
          () => store.directory.setRevokedBefore(1, HOUR),
          () => store.directory.revokedBefore(),
        ];
        for (const call of calls) await assert.rejects(call(), StoreUnavailableError);
      });
    });
    runFingerprintContract(setup);
    describe('the revocation feed', () => {
      test('every id a write ends is announced, to this process by the time the write resolves, and to another client of the backend; a renewal is not', async (t) => {
        const { store, peer, clock } = await setup(t);
        const feed = store.revocationFeed;
        assert.ok(feed, 'the store has a revocation feed');
        const heard: Revocation[] = [];
        const waiters: Array<{ match: (r: Revocation) => boolean; resolve: () => void }> = [];
        await feed.listen({
          revoked: (r) => {
            heard.push(r);
            for (const w of waiters.splice(0)) {
              if (w.match(r)) w.resolve();
              else waiters.push(w);
            }
          },
          resynced: () => undefined,
        });
        assert.equal(feed.connected(), true);
        const named = (key: string, family?: string) => (r: Revocation) => r.keys.includes(key) && (family === undefined || r.family === family);
        const wasHeard = (key: string, family?: string) => heard.some(named(key, family));

        await store.create('fa', b('a'), HOUR);
        await store.revoke('fa', HOUR);
        assert.ok(wasHeard('fa'), 'revoke');
        await store.create('fb', b('b'), HOUR);
        await store.revokeFamily('fam-b', 'fb', HOUR);
        assert.ok(wasHeard('fb', 'fam-b'), 'revokeFamily');
        await store.create('fc', b('c'), HOUR);
        assert.equal(await store.rotate('fc', 1, HOUR, 'fd', b('d'), HOUR), 'ok');
        assert.ok(wasHeard('fc'), 'a rotation at login ends the old id');
        assert.equal(await store.rotate('fd', 1, HOUR, 'fe', b('e'), HOUR, aliasAt(clock, { family: 'fam-d' })), 'ok');
        // A failed write announces nothing either.
        assert.equal(await store.rotate('none', 1, HOUR, 'ff', b('f'), HOUR), 'gone');

        // From another client of the backend (another process, for a shared store).
        const fromPeer = new Promise<void>((resolve) => {
          if (wasHeard('fg', 'fam-g')) resolve();
          else waiters.push({ match: named('fg', 'fam-g'), resolve });
        });
        await peer.create('fg', b('g'), HOUR);
        await peer.revokeFamily('fam-g', 'fg', HOUR);
        await fromPeer;
        assert.ok(!heard.some((r) => r.keys.includes('fd') || r.keys.includes('none')), `a renewal or a failed write was announced: ${JSON.stringify(heard)}`);
      });
    });
  });
}
