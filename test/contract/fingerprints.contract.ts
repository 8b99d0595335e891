// The report-only fingerprint part of the store contract (types.ts FingerprintStore), run by
// runStoreContract for every store: memory, one Redis, Redis Cluster. Expiry is checked by the
// fake clock on a fake-clock backend; a real-time backend has its TTL read instead (pttl).
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { StoreHarness } from './store.contract.js';
import type { FakeClock } from '../helpers/clock.js';

const HOUR = 3_600_000;

/** Fingerprint-shaped tokens (22 base64url characters), different enough to land in different cluster slots. */
function fps(n: number, tag: string): string[] {
  return Array.from({ length: n }, (_, i) => `${tag}${String(i).padStart(4, '0')}`.padEnd(22, 'x'));
}

export function runFingerprintContract(setup: (t: TestContext) => Promise<{ h: StoreHarness; clock: FakeClock }>): void {
  describe('fingerprints (report-only)', () => {
    test('record says what was there before; find sees them from another connection', async (t) => {
      const { h } = await setup(t);
      const peer = h.peer ?? h.store;
      const [a, b, c] = fps(3, 'rec') as [string, string, string];
      assert.deepEqual(await h.store.findFingerprints([a, b]), [null, null]);
      assert.deepEqual(await h.store.recordFingerprints([a, b], 1000, HOUR), [null, null]);
      assert.deepEqual(await peer.findFingerprints([b, c, a]), [1000, null, 1000]);
      assert.deepEqual(await peer.recordFingerprints([c, a], 2000, HOUR), [null, 1000]);
      assert.deepEqual(await h.store.findFingerprints([a, b, c]), [2000, 1000, 2000]);
      assert.deepEqual(await h.store.findFingerprints([]), []);
      assert.deepEqual(await h.store.recordFingerprints([], 1, HOUR), []);
    });

    test('many fingerprints in one call (on a cluster: many slots), concurrent lookups', async (t) => {
      const { h } = await setup(t);
      const many = fps(40, 'many');
      await h.store.recordFingerprints(many.slice(0, 20), 7, HOUR);
      const found = await Promise.all(many.map((fp) => h.store.findFingerprints([fp])));
      assert.deepEqual(
        found.map((r) => r[0]),
        many.map((_, i) => (i < 20 ? 7 : null)),
      );
      assert.deepEqual(await h.store.findFingerprints(many), many.map((_, i) => (i < 20 ? 7 : null)));
    });

    test('they are not sessions: a fingerprint never loads as one, a session key is no fingerprint', async (t) => {
      const { h } = await setup(t);
      const [fp] = fps(1, 'sep') as [string];
      await h.store.recordFingerprints([fp], 1, HOUR);
      assert.deepEqual(await h.store.load(fp), { state: 'none' });
      assert.equal(await h.store.create('sepkey', Buffer.from('x'), HOUR), true);
      assert.deepEqual(await h.store.findFingerprints(['sepkey']), [null]);
    });

    test('kept for the TTL given, and refused a TTL that is not positive', async (t) => {
      const { h, clock } = await setup(t);
      const [fp] = fps(1, 'ttl') as [string];
      await assert.rejects(h.store.recordFingerprints([fp], 1, 0), RangeError);
      await h.store.recordFingerprints([fp], 1, HOUR);
      if (h.fingerprintPttl) {
        const left = await h.fingerprintPttl(fp);
        assert.ok(left > HOUR - 10_000 && left <= HOUR, `pttl ${left}`);
        return;
      }
      clock.advance(HOUR - 1);
      assert.deepEqual(await h.store.findFingerprints([fp]), [1]);
      clock.advance(1);
      assert.deepEqual(await h.store.findFingerprints([fp]), [null]);
    });
  });
}
