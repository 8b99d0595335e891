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
  });
}
