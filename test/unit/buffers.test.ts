import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ownCopy, ownString } from '../../src/util/buffers.js';

test('ownCopy: the same bytes in memory of its own, never a slice of the shared pool', () => {
  const pooled = Buffer.from('a small record, from the pool');
  assert.ok(pooled.buffer.byteLength > pooled.length, 'precondition: Buffer.from of a short string is a pool slice');
  const copy = ownCopy(pooled);
  assert.ok(copy.equals(pooled));
  assert.equal(copy.byteOffset, 0);
  assert.equal(copy.buffer.byteLength, pooled.length, 'its backing store is exactly its own bytes');
  pooled[0] = 0x41;
  assert.equal(copy[0], 0x61, 'a change to the source does not reach the copy');
  assert.equal(ownCopy(Buffer.alloc(0)).length, 0);
  assert.ok(ownCopy(new Uint8Array([1, 2, 3])).equals(Buffer.from([1, 2, 3])));
});

test('ownString: the same characters (ASCII and latin1), as a string of its own', () => {
  const header = `a=1; coatcheck=v1.${'x'.repeat(43)}.${'y'.repeat(43)}; b=2`;
  const ticket = header.slice(header.indexOf('coatcheck=') + 10, header.indexOf('; b='));
  assert.equal(ownString(ticket), ticket);
  assert.equal(ownString('caf\u00e9 \u00ff'), 'caf\u00e9 \u00ff');
  assert.equal(ownString(''), '');
});
