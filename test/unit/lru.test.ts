import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Lru } from '../../src/util/lru.js';

test('the cache keeps at most max entries and evicts the oldest inserted', () => {
  const lru = new Lru<string, number>(2);
  lru.set('a', 1);
  lru.set('b', 2);
  assert.equal(lru.get('a'), 1);
  lru.set('c', 3);
  assert.equal(lru.size, 2);
  assert.equal(lru.get('a'), undefined, 'a was inserted first');
  assert.equal(lru.get('b'), 2);
  lru.set('b', 20);
  lru.set('d', 4);
  assert.equal(lru.get('c'), undefined, 're-setting b made it the newest, so c went');
  assert.equal(lru.get('b'), 20);
  assert.equal(lru.get('d'), 4);
  lru.delete('b');
  assert.equal(lru.get('b'), undefined);
  assert.throws(() => new Lru(0), RangeError);
});
