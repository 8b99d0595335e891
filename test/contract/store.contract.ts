// One contract every SessionStore implementation passes (run by memory-store.test.ts and
// redis-store.test.ts). Time: the memory store keeps time by the injected fake clock, which the
// suite moves; a store on real time (Redis) exposes `pttl` instead, and TTLs are checked by
// reading the remaining TTL, never by waiting for expiry.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { Clock } from '../../src/clock.js';
import { StoreUnavailableError } from '../../src/errors.js';
import type { LoadResult, SessionMeta, SessionStore } from '../../src/store/types.js';

export interface FakeClock {
  now: Clock;
  advance(ms: number): void;
}

export function fakeClock(start = Date.now()): FakeClock {
  let t = start;
  return {
    now: () => t,
    advance(ms: number) {
      t += ms;
    },
  };
}

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
  cleanup(): Promise<void>;
}

export type MakeStore = (clock: FakeClock) => Promise<StoreHarness>;

const HOUR = 3_600_000;
/** How far a real-time backend's TTL / deadline may drift from the ideal (loaded CI machine). */
const REAL_TIME_SLACK_MS = 10_000;

export function runStoreContract(name: string, makeStore: MakeStore): void {
  describe(`SessionStore contract: ${name}`, () => {
    async function setup(t: TestContext): Promise<{ h: StoreHarness; store: SessionStore; peer: SessionStore; clock: FakeClock }> {
      const clock = fakeClock();
      const h = await makeStore(clock);
      t.after(() => h.cleanup());
      return { h, store: h.store, peer: h.peer ?? h.store, clock };
    }

    function metaAt(clock: FakeClock, over: Partial<SessionMeta> = {}): SessionMeta {
      const now = clock.now();
      return { created: now, deadline: now + 12 * HOUR, touched: now, family: 'fam-1', issued: now, user: 'alice', ...over };
    }

    function live(r: LoadResult): Extract<LoadResult, { state: 'live' }> {
      assert.equal(r.state, 'live', `expected a live record, got ${JSON.stringify(r)}`);
      return r as Extract<LoadResult, { state: 'live' }>;
    }

    function revoked(r: LoadResult): Extract<LoadResult, { state: 'revoked' }> {
      assert.equal(r.state, 'revoked', `expected a tombstone, got ${JSON.stringify(r)}`);
      return r as Extract<LoadResult, { state: 'revoked' }>;
    }

    /** The key's entry disappears exactly `ttlMs` after now (memory) / reports that PTTL (Redis). Moves the clock. */
    async function assertTtl(h: StoreHarness, key: string, ttlMs: number): Promise<void> {
      if (h.pttl) {
        const left = await h.pttl(key);
        assert.ok(left <= ttlMs && left > ttlMs - REAL_TIME_SLACK_MS, `PTTL of ${key} is ${left}, expected about ${ttlMs}`);
        return;
      }
      const before = (await h.store.load(key)).state;
      assert.notEqual(before, 'none', `${key} should exist before its TTL runs out`);
      h.advance(ttlMs - 1);
      assert.equal((await h.store.load(key)).state, before, `${key} should still be ${before} 1ms before its TTL`);
      h.advance(1);
      assert.deepEqual(await h.store.load(key), { state: 'none' }, `${key} should be gone once its TTL ran out`);
    }

    function assertDeadline(h: StoreHarness, clock: FakeClock, actual: number, ttlMs: number): void {
      if (h.pttl) {
        const ideal = Date.now() + ttlMs;
        assert.ok(Math.abs(actual - ideal) < REAL_TIME_SLACK_MS, `deadline ${actual} is not about now + ${ttlMs} (${ideal})`);
      } else {
        assert.equal(actual, clock.now() + ttlMs);
      }
    }

    test('load of an unknown key is none', async (t) => {
      const { store } = await setup(t);
      assert.deepEqual(await store.load('nobody'), { state: 'none' });
    });

    test('create then load returns the meta and fields; the record has its TTL', async (t) => {
      const { h, store, clock } = await setup(t);
      const meta = metaAt(clock);
      const fields = new Map([
        ['sid;example.com;/', 'v1'],
        ['theme;example.com;/app', 'dark'],
      ]);
      assert.equal(await store.create('k1', meta, fields, 30 * 60_000), true);
      const r = live(await store.load('k1'));
      assert.deepEqual(r.meta, meta);
      assert.deepEqual(r.fields, fields);
      await assertTtl(h, 'k1', 30 * 60_000);
    });

    test('create without a user and without fields round-trips (no user key appears)', async (t) => {
      const { store, clock } = await setup(t);
      const { user: _unused, ...meta } = metaAt(clock);
      assert.equal(await store.create('k1', meta, new Map(), 60_000), true);
      const r = live(await store.load('k1'));
      assert.deepEqual(r.meta, meta);
      assert.equal('user' in r.meta, false);
      assert.equal(r.fields.size, 0);
    });

    test('create fails on an existing record and writes nothing', async (t) => {
      const { h, store, peer, clock } = await setup(t);
      const meta = metaAt(clock);
      assert.equal(await store.create('k1', meta, new Map([['a', '1']]), 60_000), true);
      assert.equal(await peer.create('k1', metaAt(clock, { family: 'other' }), new Map([['b', '2']]), 10 * HOUR), false);
      const r = live(await store.load('k1'));
      assert.deepEqual(r.meta, meta);
      assert.deepEqual(r.fields, new Map([['a', '1']]));
      await assertTtl(h, 'k1', 60_000);
    });

    test('create fails on a tombstone and the key stays revoked', async (t) => {
      const { h, store, clock } = await setup(t);
      assert.equal(await store.revoke('k1', 90_000), false);
      assert.equal(await store.create('k1', metaAt(clock), new Map([['a', '1']]), 10 * HOUR), false);
      revoked(await store.load('k1'));
      await assertTtl(h, 'k1', 90_000);
    });

    test('create succeeds again once the previous record has expired', async (t) => {
      const { h, store, clock } = await setup(t);
      if (h.pttl) {
        t.skip('real-time backend: expiry is the server TTL, checked by PTTL elsewhere');
        return;
      }
      assert.equal(await store.create('k1', metaAt(clock), new Map(), 1000), true);
      h.advance(1000);
      assert.equal(await store.create('k1', metaAt(clock, { family: 'f2' }), new Map([['x', 'y']]), 1000), true);
      assert.equal(live(await store.load('k1')).meta.family, 'f2');
    });

    test('update sets, deletes, touches, sets the user and the TTL', async (t) => {
      const { h, store, clock } = await setup(t);
      const meta = metaAt(clock, { user: undefined });
      delete meta.user;
      await store.create('k1', meta, new Map([['a', '1'], ['b', '2']]), 60_000);
      clock.advance(5000);
      const touched = clock.now();
      const ok = await store.update('k1', {
        set: new Map([['b', '2b'], ['c', '3']]),
        del: ['a', 'never-existed'],
        touched,
        ttlMs: 2 * HOUR,
        user: 'bob',
      });
      assert.equal(ok, true);
      const r = live(await store.load('k1'));
      assert.deepEqual(r.fields, new Map([['b', '2b'], ['c', '3']]));
      assert.deepEqual(r.meta, { ...meta, touched, user: 'bob' });
      await assertTtl(h, 'k1', 2 * HOUR);
    });

    test('update without ttlMs keeps the TTL; an empty update is a successful no-op', async (t) => {
      const { h, store, clock } = await setup(t);
      const meta = metaAt(clock);
      await store.create('k1', meta, new Map([['a', '1']]), 60_000);
      assert.equal(await store.update('k1', { set: new Map([['b', '2']]), touched: meta.touched + 1 }), true);
      assert.equal(await store.update('k1', {}), true);
      const r = live(await store.load('k1'));
      assert.deepEqual(r.fields, new Map([['a', '1'], ['b', '2']]));
      assert.equal(r.meta.touched, meta.touched + 1);
      assert.equal(r.meta.user, 'alice');
      await assertTtl(h, 'k1', 60_000);
    });

    test('update applies del after set when both name the same field', async (t) => {
      const { store, clock } = await setup(t);
      await store.create('k1', metaAt(clock), new Map([['a', '1']]), 60_000);
      assert.equal(await store.update('k1', { set: new Map([['a', '2'], ['b', '2']]), del: ['a'] }), true);
      assert.deepEqual(live(await store.load('k1')).fields, new Map([['b', '2']]));
    });

    test('update on a missing key returns false and creates nothing', async (t) => {
      const { store } = await setup(t);
      assert.equal(await store.update('ghost', { set: new Map([['a', '1']]), touched: 1, ttlMs: 60_000, user: 'u' }), false);
      assert.deepEqual(await store.load('ghost'), { state: 'none' });
    });

    test('update on a revoked key returns false and never resurrects it', async (t) => {
      const { h, store, peer, clock } = await setup(t);
      await store.create('k1', metaAt(clock), new Map([['a', '1']]), 60_000);
      assert.equal(await peer.revoke('k1', 45_000), true);
      const before = revoked(await store.load('k1'));
      assert.equal(await store.update('k1', { set: new Map([['a', '2']]), touched: clock.now(), ttlMs: 10 * HOUR, user: 'x' }), false);
      assert.deepEqual(await store.load('k1'), before);
      await assertTtl(h, 'k1', 45_000); // the update's ttlMs did not stretch the tombstone
    });

    test('revoke of a live record returns true and leaves a tombstone with its deadline and TTL', async (t) => {
      const { h, store, clock } = await setup(t);
      await store.create('k1', metaAt(clock), new Map([['a', '1']]), HOUR);
      assert.equal(await store.revoke('k1', 6 * HOUR), true);
      const r = revoked(await store.load('k1'));
      assertDeadline(h, clock, r.deadline, 6 * HOUR);
      await assertTtl(h, 'k1', 6 * HOUR);
    });

    test('revoke of an unknown key returns false but still writes a tombstone', async (t) => {
      const { h, store, clock } = await setup(t);
      assert.equal(await store.revoke('k1', 30_000), false);
      const r = revoked(await store.load('k1'));
      assertDeadline(h, clock, r.deadline, 30_000);
      await assertTtl(h, 'k1', 30_000);
    });

    test('revoke of a tombstone returns false and the key stays revoked', async (t) => {
      const { h, store } = await setup(t);
      await store.revoke('k1', 30_000);
      assert.equal(await store.revoke('k1', 20_000), false);
      revoked(await store.load('k1'));
      await assertTtl(h, 'k1', 20_000);
    });

    test('rotate moves the session: old revoked, new live with the given meta and fields', async (t) => {
      const { h, store, clock } = await setup(t);
      const meta = metaAt(clock);
      await store.create('old', meta, new Map([['a', '1']]), HOUR);
      const newMeta = metaAt(clock, { touched: meta.touched + 1, user: 'bob' });
      const newFields = new Map([['a', '1'], ['b', '2']]);
      assert.equal(await store.rotate('old', 15_000, 'new', newMeta, newFields, 2 * HOUR), true);
      const o = revoked(await store.load('old'));
      assertDeadline(h, clock, o.deadline, 15_000);
      const n = live(await store.load('new'));
      assert.deepEqual(n.meta, newMeta);
      assert.deepEqual(n.fields, newFields);
      assert.equal(await store.update('old', { set: new Map([['z', '1']]) }), false);
      if (h.pttl) {
        await assertTtl(h, 'old', 15_000);
        await assertTtl(h, 'new', 2 * HOUR);
      } else {
        h.advance(15_000);
        assert.deepEqual(await store.load('old'), { state: 'none' });
        await assertTtl(h, 'new', 2 * HOUR - 15_000);
      }
    });

    test('rotate fails and changes nothing when the old key is not live or the new key is taken', async (t) => {
      const { h, store, clock } = await setup(t);
      const meta = metaAt(clock);
      const fields = new Map([['a', '1']]);
      // old missing
      assert.equal(await store.rotate('missing', 1000, 'n1', meta, fields, HOUR), false);
      assert.deepEqual(await store.load('missing'), { state: 'none' });
      assert.deepEqual(await store.load('n1'), { state: 'none' });
      // old revoked
      await store.revoke('gone', 50_000);
      assert.equal(await store.rotate('gone', 1000, 'n2', meta, fields, HOUR), false);
      revoked(await store.load('gone'));
      assert.deepEqual(await store.load('n2'), { state: 'none' });
      // new key live
      await store.create('old', meta, fields, 60_000);
      await store.create('taken', metaAt(clock, { family: 'f2' }), new Map([['t', 't']]), 70_000);
      assert.equal(await store.rotate('old', 1000, 'taken', metaAt(clock, { family: 'f3' }), new Map([['x', 'x']]), HOUR), false);
      assert.deepEqual(live(await store.load('old')).fields, fields);
      assert.equal(live(await store.load('taken')).meta.family, 'f2');
      assert.deepEqual(live(await store.load('taken')).fields, new Map([['t', 't']]));
      // new key is a tombstone
      await store.revoke('dead', 80_000);
      assert.equal(await store.rotate('old', 1000, 'dead', meta, fields, HOUR), false);
      revoked(await store.load('dead'));
      // old and new the same key
      assert.equal(await store.rotate('old', 1000, 'old', meta, new Map([['y', 'y']]), HOUR), false);
      assert.deepEqual(live(await store.load('old')).fields, fields);
      // nothing's TTL moved
      if (h.pttl) {
        await assertTtl(h, 'old', 60_000);
        await assertTtl(h, 'taken', 70_000);
        await assertTtl(h, 'dead', 80_000);
      } else {
        await assertTtl(h, 'old', 60_000);
        await assertTtl(h, 'taken', 10_000);
        await assertTtl(h, 'dead', 10_000);
      }
    });

    test('concurrent updates that set different fields all persist', async (t) => {
      const { store, peer, clock } = await setup(t);
      await store.create('k1', metaAt(clock), new Map([['base', '0']]), HOUR);
      const n = 20;
      const results = await Promise.all(
        Array.from({ length: n }, (_, i) => (i % 2 ? peer : store).update('k1', { set: new Map([[`f${i}`, `v${i}`]]), touched: clock.now() + i })),
      );
      assert.deepEqual(results, Array(n).fill(true));
      const fields = live(await store.load('k1')).fields;
      assert.equal(fields.size, n + 1);
      for (let i = 0; i < n; i++) assert.equal(fields.get(`f${i}`), `v${i}`);
    });

    test('concurrent update and revoke never resurrect the session', async (t) => {
      const { h, store, peer, clock } = await setup(t);
      const n = 60;
      const keys = Array.from({ length: n }, (_, i) => `race${i}`);
      await Promise.all(keys.map((k) => store.create(k, metaAt(clock), new Map([['a', '1']]), HOUR)));
      for (let i = 0; i < n; i++) {
        const k = keys[i] as string;
        const upd = () => (i % 4 < 2 ? peer : store).update(k, { set: new Map([['late', 'x']]), touched: clock.now(), ttlMs: 10 * HOUR, user: 'late' });
        const rev = () => (i % 4 < 2 ? store : peer).revoke(k, 60_000);
        // Alternate which one is issued first (and on which connection), so both orders happen.
        let u: boolean;
        let r: boolean;
        if (i % 2 === 0) [u, r] = await Promise.all([upd(), rev()]);
        else [r, u] = await Promise.all([rev(), upd()]);
        assert.equal(r, true, `${k}: the record was live when revoked`);
        assert.equal(typeof u, 'boolean');
        revoked(await store.load(k));
        assert.equal(await store.update(k, { set: new Map([['after', 'x']]), ttlMs: 10 * HOUR }), false);
      }
      // No racing update stretched a tombstone's TTL.
      if (h.pttl) {
        for (const k of keys) {
          const left = await h.pttl(k);
          assert.ok(left > 0 && left <= 60_000, `${k}: PTTL ${left}`);
        }
      } else {
        h.advance(60_000);
        for (const k of keys) assert.deepEqual(await store.load(k), { state: 'none' }, k);
      }
    });

    test('concurrent creates of one key: exactly one wins', async (t) => {
      const { store, peer, clock } = await setup(t);
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) => (i % 2 ? peer : store).create('k1', metaAt(clock, { family: `f${i}` }), new Map([['i', String(i)]]), HOUR)),
      );
      assert.equal(results.filter(Boolean).length, 1);
      const winner = results.indexOf(true);
      const r = live(await store.load('k1'));
      assert.equal(r.meta.family, `f${winner}`);
      assert.deepEqual(r.fields, new Map([['i', String(winner)]]));
    });

    test('field names with separators, spaces, unicode and special words round-trip', async (t) => {
      const { store, clock } = await setup(t);
      const names = [
        'sid;example.com;/',
        'a=b;c=d',
        'with space ; and = signs',
        '  leading and trailing  ',
        'ünïcödé;bücher.example;/straße',
        '日本語;例え.jp;/パス',
        'emoji 🍪;x;/',
        '__proto__',
        'constructor',
        'hasOwnProperty',
        '0',
        '123',
        'x@y', // '@' is only reserved as the first character
        '',
      ];
      const fields = new Map(names.map((n, i) => [n, `value-${i}`]));
      assert.equal(await store.create('k1', metaAt(clock), fields, HOUR), true);
      assert.deepEqual(live(await store.load('k1')).fields, fields);
      // Delete and set through update too.
      assert.equal(await store.update('k1', { del: ['__proto__', 'a=b;c=d'], set: new Map([['new;é=ü', 'v']]) }), true);
      const expected = new Map(fields);
      expected.delete('__proto__');
      expected.delete('a=b;c=d');
      expected.set('new;é=ü', 'v');
      assert.deepEqual(live(await store.load('k1')).fields, expected);
    });

    test('values are opaque strings and round-trip exactly', async (t) => {
      const { store, peer, clock } = await setup(t);
      const values = [
        '',
        ' ',
        '  padded  ',
        'a;b=c, d',
        '"quoted"',
        '\r\n\t',
        'nul\u0000inside',
        '@looks-like-meta',
        '12345',
        '1e3',
        '-0',
        'null',
        'true',
        '{"json":[1,2]}',
        'ünïcödé 日本語 🍪',
        'base64url_-AbC09'.repeat(64),
        'x'.repeat(16 * 1024),
      ];
      const fields = new Map(values.map((v, i) => [`f${i}`, v]));
      assert.equal(await store.create('k1', metaAt(clock), fields, HOUR), true);
      assert.deepEqual(live(await peer.load('k1')).fields, fields);
      const meta = metaAt(clock, { family: 'fam ; = 🍪', user: 'user@example.com ; = "q"' });
      assert.equal(await store.create('k2', meta, new Map(), HOUR), true);
      assert.deepEqual(live(await peer.load('k2')).meta, meta);
      assert.equal(await store.update('k2', { user: '' }), true);
      assert.equal(live(await peer.load('k2')).meta.user, '');
    });

    test('callers cannot change stored state through the maps and objects they pass or get', async (t) => {
      const { store, clock } = await setup(t);
      const meta = metaAt(clock);
      const fields = new Map([['a', '1']]);
      await store.create('k1', meta, fields, HOUR);
      fields.set('b', '2');
      meta.user = 'mallory';
      const r1 = live(await store.load('k1'));
      r1.fields.set('c', '3');
      r1.meta.family = 'changed';
      const set = new Map([['d', '4']]);
      await store.update('k1', { set });
      set.set('e', '5');
      const r2 = live(await store.load('k1'));
      assert.deepEqual(r2.fields, new Map([['a', '1'], ['d', '4']]));
      assert.equal(r2.meta.user, 'alice');
      assert.equal(r2.meta.family, 'fam-1');
    });

    test('field names starting with "@" and bad TTLs are rejected before anything is written', async (t) => {
      const { store, clock } = await setup(t);
      await assert.rejects(store.create('k1', metaAt(clock), new Map([['@c', 'x']]), HOUR), TypeError);
      assert.deepEqual(await store.load('k1'), { state: 'none' });
      await store.create('k2', metaAt(clock), new Map([['a', '1']]), HOUR);
      await assert.rejects(store.update('k2', { set: new Map([['@r', '1']]) }), TypeError);
      await assert.rejects(store.update('k2', { del: ['@c'] }), TypeError);
      await assert.rejects(store.rotate('k2', 1000, 'k3', metaAt(clock), new Map([['@u', 'x']]), HOUR), TypeError);
      for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
        await assert.rejects(store.create('k4', metaAt(clock), new Map(), bad), RangeError);
        await assert.rejects(store.update('k2', { ttlMs: bad }), RangeError);
        await assert.rejects(store.revoke('k2', bad), RangeError);
      }
      assert.deepEqual(await store.load('k4'), { state: 'none' });
      assert.deepEqual(await store.load('k3'), { state: 'none' });
      assert.deepEqual(live(await store.load('k2')).fields, new Map([['a', '1']]));
    });

    test('ping answers; after close every call rejects with StoreUnavailableError; close is idempotent', async (t) => {
      const { store, clock } = await setup(t);
      await store.ping();
      await store.close();
      await store.close();
      await assert.rejects(store.ping(), StoreUnavailableError);
      await assert.rejects(store.load('k1'), StoreUnavailableError);
      await assert.rejects(store.create('k1', metaAt(clock), new Map(), HOUR), StoreUnavailableError);
      await assert.rejects(store.update('k1', {}), StoreUnavailableError);
      await assert.rejects(store.revoke('k1', HOUR), StoreUnavailableError);
      await assert.rejects(store.rotate('k1', 1, 'k2', metaAt(clock), new Map(), HOUR), StoreUnavailableError);
    });

    describe('families, renewal aliases and revokeFamily', () => {
      function renewed(r: LoadResult): Extract<LoadResult, { state: 'renewed' }> {
        assert.equal(r.state, 'renewed', `expected a renewal alias, got ${JSON.stringify(r)}`);
        return r as Extract<LoadResult, { state: 'renewed' }>;
      }

      /** Makes `key` (created with `ttlMs`, before any other key) expire: advances the fake clock, or drops it in a real-time backend. */
      async function expire(h: StoreHarness, key: string, ttlMs: number): Promise<void> {
        if (h.expireNow) await h.expireNow(key);
        else h.advance(ttlMs);
        assert.deepEqual(await h.store.load(key), { state: 'none' }, `${key} should have expired`);
      }

      /** Real-time backends: the family's index has about `ms` left to live. */
      async function assertFamilyPttl(familyPttl: (family: string) => Promise<number>, family: string, ms: number): Promise<void> {
        const left = await familyPttl(family);
        assert.ok(left <= ms && left > ms - REAL_TIME_SLACK_MS, `PTTL of family ${family} is ${left}, expected about ${ms}`);
      }

      test('create adds the key to its family: revokeFamily revokes the family, counts its live records, and leaves other families alone', async (t) => {
        const { h, store, peer, clock } = await setup(t);
        assert.equal(await store.create('a1', metaAt(clock, { family: 'A' }), new Map([['x', '1']]), HOUR), true);
        assert.equal(await store.create('a2', metaAt(clock, { family: 'A' }), new Map(), HOUR), true);
        assert.equal(await store.create('b1', metaAt(clock, { family: 'B' }), new Map([['y', '2']]), HOUR), true);
        assert.equal(await peer.revokeFamily('A', 6 * HOUR), 2);
        for (const k of ['a1', 'a2']) {
          const r = revoked(await store.load(k));
          assertDeadline(h, clock, r.deadline, 6 * HOUR);
          assert.equal(await store.update(k, { set: new Map([['z', '1']]), touched: clock.now(), ttlMs: 10 * HOUR }), false, k);
          revoked(await store.load(k));
        }
        const b = live(await store.load('b1'));
        assert.equal(b.meta.family, 'B');
        assert.deepEqual(b.fields, new Map([['y', '2']]));
        // The index is gone with the records; unknown families have nothing to revoke.
        assert.equal(await store.revokeFamily('A', 6 * HOUR), 0);
        assert.equal(await store.revokeFamily('never-created', 6 * HOUR), 0);
        assert.deepEqual(await store.load('never-created'), { state: 'none' });
        await assertTtl(h, 'a1', 6 * HOUR);
      });

      test('the family index lives until meta.deadline; a family whose index expired revokes nothing', async (t) => {
        const { h, store, clock } = await setup(t);
        // Records that outlive their deadline (the caller never does this) isolate the index's own lifetime.
        const deadline = clock.now() + 10 * 60_000;
        assert.equal(await store.create('k1', metaAt(clock, { family: 'F', deadline }), new Map(), HOUR), true);
        assert.equal(await store.create('k2', metaAt(clock, { family: 'G', deadline }), new Map(), HOUR), true);
        if (h.familyPttl) {
          await assertFamilyPttl(h.familyPttl, 'F', 10 * 60_000);
          await assertFamilyPttl(h.familyPttl, 'G', 10 * 60_000);
          return;
        }
        h.advance(10 * 60_000 - 1);
        assert.equal(await store.revokeFamily('F', HOUR), 1);
        revoked(await store.load('k1'));
        h.advance(1);
        assert.equal(await store.revokeFamily('G', HOUR), 0);
        assert.equal(live(await store.load('k2')).meta.family, 'G');
      });

      test('a family lives until the latest deadline of its members: a later create or rotate never shortens it', async (t) => {
        const { h, store, clock } = await setup(t);
        const now = clock.now();
        assert.equal(await store.create('x1', metaAt(clock, { family: 'H', deadline: now + HOUR }), new Map(), 3 * HOUR), true);
        assert.equal(await store.create('x2', metaAt(clock, { family: 'H', deadline: now + 2 * HOUR }), new Map(), 3 * HOUR), true);
        assert.equal(await store.create('x3', metaAt(clock, { family: 'H', deadline: now + 30 * 60_000 }), new Map(), 3 * HOUR), true);
        assert.equal(await store.rotate('x1', 1000, 'x4', metaAt(clock, { family: 'H', deadline: now + 15 * 60_000 }), new Map(), 3 * HOUR), true);
        if (h.familyPttl) {
          await assertFamilyPttl(h.familyPttl, 'H', 2 * HOUR);
          return;
        }
        h.advance(2 * HOUR - 1);
        assert.equal(await store.revokeFamily('H', HOUR), 3); // x2, x3, x4 (x1 is a tombstone)
        for (const k of ['x2', 'x3', 'x4']) revoked(await store.load(k));
      });

      test('rotate with an alias: the old id reads as renewed (successor, grace, its own end of life, family) until its TTL; the new id is live', async (t) => {
        const { h, store, peer, clock } = await setup(t);
        const meta = metaAt(clock, { family: 'R' });
        await store.create('old', meta, new Map([['a', '1']]), HOUR);
        const newMeta = metaAt(clock, { family: 'R', touched: meta.touched + 1, issued: meta.issued + 1 });
        const newFields = new Map([['a', '1'], ['b', '2']]);
        const graceUntil = clock.now() + 30_000;
        const successor = 'sealed;succ=ü 🍪 "x"';
        assert.equal(await store.rotate('old', 15_000, 'new', newMeta, newFields, 2 * HOUR, { successor, graceUntil }), true);
        for (const s of [store, peer]) {
          const o = renewed(await s.load('old'));
          const { deadline, ...rest } = o;
          assert.deepEqual(rest, { state: 'renewed', successor, graceUntil, family: 'R' });
          // The alias's deadline is its own end of life (oldTombstoneTtlMs), like a tombstone's.
          assertDeadline(h, clock, deadline, 15_000);
        }
        const n = live(await store.load('new'));
        assert.deepEqual(n.meta, newMeta);
        assert.deepEqual(n.fields, newFields);
        if (h.pttl) {
          await assertTtl(h, 'old', 15_000);
          await assertTtl(h, 'new', 2 * HOUR);
        } else {
          await assertTtl(h, 'old', 15_000);
          await assertTtl(h, 'new', 2 * HOUR - 15_000);
        }
      });

      test('an alias keeps any successor string exactly, the empty one included', async (t) => {
        const { store, clock } = await setup(t);
        const successors = ['', ' ', '@n', 'x'.repeat(4096), 'nul\u0000inside', '日本語 🍪;=,'];
        for (const [i, successor] of successors.entries()) {
          await store.create(`o${i}`, metaAt(clock), new Map(), HOUR);
          const graceUntil = clock.now() + i;
          assert.equal(await store.rotate(`o${i}`, HOUR, `n${i}`, metaAt(clock), new Map(), HOUR, { successor, graceUntil }), true);
          const r = renewed(await store.load(`o${i}`));
          assert.equal(r.successor, successor, `successor ${i}`);
          assert.equal(r.graceUntil, graceUntil);
        }
      });

      test('an alias is not live: update, create, rotate from or onto it fail and change nothing; revoke turns it into a tombstone', async (t) => {
        const { h, store, peer, clock } = await setup(t);
        await store.create('old', metaAt(clock, { family: 'R' }), new Map([['a', '1']]), HOUR);
        assert.equal(await store.rotate('old', 15_000, 'new', metaAt(clock, { family: 'R' }), new Map([['a', '1']]), HOUR, { successor: 's', graceUntil: clock.now() + 5000 }), true);
        const before = renewed(await store.load('old'));
        assert.equal(await peer.update('old', { set: new Map([['a', '2']]), del: ['a'], touched: clock.now(), ttlMs: 10 * HOUR, user: 'x' }), false);
        assert.deepEqual(await store.load('old'), before);
        assert.equal(await peer.create('old', metaAt(clock, { family: 'G' }), new Map([['c', '3']]), 10 * HOUR), false);
        assert.deepEqual(await store.load('old'), before);
        assert.equal(await peer.rotate('old', 10 * HOUR, 'n2', metaAt(clock, { family: 'G' }), new Map(), HOUR, { successor: 't', graceUntil: clock.now() + 1 }), false);
        assert.deepEqual(await store.load('old'), before);
        assert.deepEqual(await store.load('n2'), { state: 'none' });
        await store.create('other', metaAt(clock, { family: 'G' }), new Map([['o', 'o']]), HOUR);
        assert.equal(await peer.rotate('other', 1000, 'old', metaAt(clock, { family: 'G' }), new Map(), 10 * HOUR), false);
        assert.deepEqual(await store.load('old'), before);
        assert.deepEqual(live(await store.load('other')).fields, new Map([['o', 'o']]));
        // None of the failed writes added the alias to family G.
        assert.equal(await store.revokeFamily('G', HOUR), 1); // 'other' only
        assert.deepEqual(await store.load('old'), before);
        await assertTtl(h, 'old', 15_000); // no failed write stretched the alias
      });

      test('revoke of an alias returns false and leaves a tombstone', async (t) => {
        const { h, store, clock } = await setup(t);
        await store.create('old', metaAt(clock), new Map(), HOUR);
        await store.rotate('old', 15_000, 'new', metaAt(clock), new Map(), HOUR, { successor: 's', graceUntil: clock.now() + 5000 });
        assert.equal(await store.revoke('old', 40_000), false);
        assertDeadline(h, clock, revoked(await store.load('old')).deadline, 40_000);
        live(await store.load('new'));
        await assertTtl(h, 'old', 40_000);
      });

      test('revokeFamily turns live records and aliases into tombstones, counts only the live ones, skips expired ids and old tombstones', async (t) => {
        const { h, store, peer, clock } = await setup(t);
        const F = metaAt(clock, { family: 'F' });
        // An id that expired on its own: it must not come back as a tombstone.
        await store.create('short', F, new Map(), 1000);
        await expire(h, 'short', 1000);
        await store.create('a', F, new Map([['a', '1']]), HOUR);
        await store.create('c', F, new Map(), HOUR);
        await store.create('d', F, new Map(), HOUR);
        assert.equal(await store.rotate('a', 10 * 60_000, 'b', F, new Map([['a', '1']]), HOUR, { successor: 'to-b', graceUntil: clock.now() + 5000 }), true);
        assert.equal(await store.rotate('d', 20 * 60_000, 'e', F, new Map(), HOUR), true); // d: a plain tombstone
        const dBefore = revoked(await store.load('d'));
        // Family G, with its own alias, is not touched.
        const G = metaAt(clock, { family: 'G' });
        await store.create('y', G, new Map([['g', '1']]), HOUR);
        assert.equal(await store.rotate('y', 10 * 60_000, 'z', G, new Map([['g', '1']]), HOUR, { successor: 'to-z', graceUntil: clock.now() + 5000 }), true);
        const yBefore = renewed(await store.load('y'));

        assert.equal(await peer.revokeFamily('F', 5 * HOUR), 3); // b, c, e
        for (const k of ['a', 'b', 'c', 'e']) assertDeadline(h, clock, revoked(await store.load(k)).deadline, 5 * HOUR);
        assert.deepEqual(await store.load('short'), { state: 'none' });
        assert.deepEqual(await store.load('d'), dBefore);
        assert.equal(await store.update('b', { set: new Map([['late', 'x']]), ttlMs: 10 * HOUR }), false);
        revoked(await store.load('b'));
        assert.deepEqual(await store.load('y'), yBefore);
        assert.deepEqual(live(await store.load('z')).fields, new Map([['g', '1']]));

        if (h.pttl) {
          await assertTtl(h, 'd', 20 * 60_000);
          await assertTtl(h, 'a', 5 * HOUR);
          await assertTtl(h, 'b', 5 * HOUR);
        } else {
          await assertTtl(h, 'd', 20 * 60_000);
          await assertTtl(h, 'a', 5 * HOUR - 20 * 60_000);
          assert.deepEqual(await store.load('b'), { state: 'none' });
        }
      });

      test('after revokeFamily a rotate from a member fails; a later create in the family starts afresh', async (t) => {
        const { store, peer, clock } = await setup(t);
        const F = metaAt(clock, { family: 'F' });
        await store.create('m1', F, new Map(), HOUR);
        assert.equal(await store.rotate('m1', HOUR, 'm2', F, new Map(), HOUR, { successor: 's', graceUntil: clock.now() + 5000 }), true);
        assert.equal(await store.revokeFamily('F', HOUR), 1);
        for (const [from, to] of [['m1', 'm3'], ['m2', 'm4']] as const) {
          assert.equal(await peer.rotate(from, HOUR, to, F, new Map(), HOUR, { successor: 's', graceUntil: clock.now() + 5000 }), false, from);
          assert.equal(await peer.rotate(from, HOUR, to, F, new Map(), HOUR), false, from);
          revoked(await store.load(from));
          assert.deepEqual(await store.load(to), { state: 'none' });
        }
        assert.equal(await store.create('m5', F, new Map(), HOUR), true);
        assert.equal(await store.revokeFamily('F', HOUR), 1);
        revoked(await store.load('m5'));
      });

      test('a failed create or rotate adds nothing to the family it names', async (t) => {
        const { store, clock } = await setup(t);
        await store.create('k1', metaAt(clock, { family: 'F' }), new Map([['a', '1']]), HOUR);
        await store.create('taken', metaAt(clock, { family: 'H' }), new Map([['t', '1']]), HOUR);
        await store.revoke('tomb', HOUR);
        const G = metaAt(clock, { family: 'G' });
        assert.equal(await store.create('k1', G, new Map(), HOUR), false);
        assert.equal(await store.create('taken', G, new Map(), HOUR), false);
        assert.equal(await store.create('tomb', G, new Map(), HOUR), false);
        assert.equal(await store.rotate('missing', HOUR, 'n1', G, new Map(), HOUR), false);
        assert.equal(await store.rotate('k1', HOUR, 'taken', G, new Map(), HOUR), false);
        assert.equal(await store.rotate('k1', HOUR, 'tomb', G, new Map(), HOUR, { successor: 's', graceUntil: clock.now() + 1 }), false);
        assert.equal(await store.revokeFamily('G', HOUR), 0);
        assert.deepEqual(live(await store.load('k1')).fields, new Map([['a', '1']]));
        assert.deepEqual(live(await store.load('taken')).fields, new Map([['t', '1']]));
        assert.deepEqual(await store.load('n1'), { state: 'none' });
      });

      test('concurrent updates and revokeFamily never resurrect a session or its alias', async (t) => {
        const { h, store, peer, clock } = await setup(t);
        const n = 40;
        const tombTtl = 60_000;
        await Promise.all(
          Array.from({ length: n }, async (_, i) => {
            const F = metaAt(clock, { family: `rf${i}` });
            await store.create(`a${i}`, F, new Map([['a', '1']]), HOUR);
            assert.equal(await store.rotate(`a${i}`, HOUR, `b${i}`, F, new Map([['a', '1']]), HOUR, { successor: 's', graceUntil: clock.now() + HOUR }), true);
          }),
        );
        for (let i = 0; i < n; i++) {
          const [a, b] = [`a${i}`, `b${i}`];
          const [mine, other] = i % 4 < 2 ? [peer, store] : [store, peer];
          const upd = (k: string) => mine.update(k, { set: new Map([['late', 'x']]), touched: clock.now(), ttlMs: 10 * HOUR, user: 'late' });
          const rev = () => other.revokeFamily(`rf${i}`, tombTtl);
          let r: number;
          if (i % 2 === 0) [, , r] = await Promise.all([upd(b), upd(a), rev()]);
          else [r] = await Promise.all([rev(), upd(b), upd(a)]);
          assert.equal(r, 1, `rf${i}: exactly one live record was revoked`);
          for (const k of [a, b]) {
            revoked(await store.load(k));
            assert.equal(await store.update(k, { set: new Map([['after', 'x']]), ttlMs: 10 * HOUR }), false, k);
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

      test('concurrent rotate and revokeFamily: whichever runs first, the family ends with no live id', async (t) => {
        const { store, peer, clock } = await setup(t);
        const n = 40;
        await Promise.all(Array.from({ length: n }, (_, i) => store.create(`o${i}`, metaAt(clock, { family: `rr${i}` }), new Map([['a', '1']]), HOUR)));
        const outcomes = new Set<boolean>();
        for (let i = 0; i < n; i++) {
          const [o, nk] = [`o${i}`, `n${i}`];
          const [mine, other] = i % 4 < 2 ? [peer, store] : [store, peer];
          const rot = () =>
            mine.rotate(o, HOUR, nk, metaAt(clock, { family: `rr${i}` }), new Map([['a', '1']]), HOUR, { successor: 's', graceUntil: clock.now() + HOUR });
          const rev = () => other.revokeFamily(`rr${i}`, HOUR);
          let rotated: boolean;
          let r: number;
          if (i % 2 === 0) [rotated, r] = await Promise.all([rot(), rev()]);
          else [r, rotated] = await Promise.all([rev(), rot()]);
          outcomes.add(rotated);
          assert.equal(r, 1, `rr${i}: exactly one live record was revoked`);
          revoked(await store.load(o)); // a tombstone, not an alias
          if (rotated) revoked(await store.load(nk));
          else assert.deepEqual(await store.load(nk), { state: 'none' });
        }
        // Both orders are expected to have happened; with one store they do by construction.
        if (store === peer) assert.equal(outcomes.size, 2);
      });

      test('bad arguments are rejected before anything is written; a closed store rejects revokeFamily', async (t) => {
        const { store, clock } = await setup(t);
        await store.create('k1', metaAt(clock, { family: 'F' }), new Map([['a', '1']]), HOUR);
        for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
          await assert.rejects(store.revokeFamily('F', bad), RangeError);
          await assert.rejects(store.rotate('k1', bad, 'k2', metaAt(clock, { family: 'F' }), new Map(), HOUR, { successor: 's', graceUntil: 1 }), RangeError);
        }
        for (const bad of [Number.NaN, Number.POSITIVE_INFINITY]) {
          await assert.rejects(store.rotate('k1', HOUR, 'k2', metaAt(clock, { family: 'F' }), new Map(), HOUR, { successor: 's', graceUntil: bad }), RangeError);
        }
        assert.deepEqual(live(await store.load('k1')).fields, new Map([['a', '1']]));
        assert.deepEqual(await store.load('k2'), { state: 'none' });
        assert.equal(await store.revokeFamily('F', HOUR), 1);
        await store.close();
        await assert.rejects(store.revokeFamily('F', HOUR), StoreUnavailableError);
      });
    });
  });
}
