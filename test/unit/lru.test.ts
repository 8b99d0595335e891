import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Lru } from '../../src/util/lru.js';

test('the LRU keeps at most max entries and evicts the least recently used', () => {
  const lru = new Lru<string, number>(2);
  lru.set('a', 1);
  lru.set('b', 2);
  assert.equal(lru.get('a'), 1); // a is now the most recent
  lru.set('c', 3);
  assert.equal(lru.size, 2);
  assert.equal(lru.get('b'), undefined, 'b was the least recently used');
  assert.equal(lru.get('a'), 1);
  assert.equal(lru.get('c'), 3);
  lru.set('a', 10);
  assert.equal(lru.get('a'), 10, 'set replaces');
  lru.delete('a');
  assert.equal(lru.get('a'), undefined);
  assert.throws(() => new Lru(0), RangeError);
});
