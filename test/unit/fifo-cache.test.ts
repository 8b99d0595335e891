import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FifoCache } from '../../src/util/fifo-cache.js';

test('the cache keeps at most max entries and evicts the oldest inserted', () => {
  const cache = new FifoCache<string, number>(2);
  cache.set('a', 1);
  cache.set('b', 2);
  assert.equal(cache.get('a'), 1);
  cache.set('c', 3);
  assert.equal(cache.size, 2);
  assert.equal(cache.get('a'), undefined, 'a was inserted first');
  assert.equal(cache.get('b'), 2);
  cache.set('b', 20);
  cache.set('d', 4);
  assert.equal(cache.get('c'), undefined, 're-setting b made it the newest, so c went');
  assert.equal(cache.get('b'), 20);
  assert.equal(cache.get('d'), 4);
  cache.delete('b');
  assert.equal(cache.get('b'), undefined);
  assert.throws(() => new FifoCache(0), RangeError);
});
