import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pooledRandomBytes, randomView } from '../../src/util/random.js';

test('pooled random bytes: fresh every call across pool refills, never handed out twice, kept ones in memory of their own', () => {
  const seen = new Set<string>();
  // 12-byte views over several refills of the 4 KiB pool, and ids in between.
  for (let i = 0; i < 2000; i++) {
    const view = randomView(12);
    assert.equal(view.length, 12);
    const hex = view.toString('hex');
    assert.ok(!seen.has(hex), 'a value came out twice');
    seen.add(hex);
    if (i % 100 === 0) {
      const id = pooledRandomBytes(32);
      assert.equal(id.length, 32);
      assert.equal(id.byteOffset, 0);
      assert.equal(id.buffer.byteLength, 32, 'a kept value pins no pool memory');
      const before = id.toString('hex');
      randomView(4000);
      assert.equal(id.toString('hex'), before, 'a kept value does not change when the pool moves on');
    }
  }
  // Larger than the pool: its own buffer.
  assert.equal(randomView(10_000).length, 10_000);
  // Not all zero (the pool was filled).
  assert.ok(randomView(64).some((b) => b !== 0));
});
