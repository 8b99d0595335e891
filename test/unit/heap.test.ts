import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UsageError } from '../../src/errors.js';
import { HEAP_GROWING_PERCENT, heapGrowthSetting } from '../../src/heap.js';

test('heapGrowthSetting: node\'s own --heap-growing-percent wins, then COATCHECK_HEAP_GROWING_PERCENT, else 30', () => {
  assert.equal(HEAP_GROWING_PERCENT, 30);
  assert.equal(heapGrowthSetting([], {}), 30);
  assert.equal(heapGrowthSetting(['--max-old-space-size=512', '--cpu-prof'], {}), 30);
  assert.equal(heapGrowthSetting(['--heap-growing-percent=50'], {}), 'node options');
  assert.equal(heapGrowthSetting(['--heap_growing_percent=50'], { COATCHECK_HEAP_GROWING_PERCENT: '10' }), 'node options');
  assert.equal(heapGrowthSetting(['--heap-growing-percentage=20'], {}), 30);
  assert.equal(heapGrowthSetting([], { COATCHECK_HEAP_GROWING_PERCENT: '0' }), 0);
  assert.equal(heapGrowthSetting([], { COATCHECK_HEAP_GROWING_PERCENT: ' 50 ' }), 50);
  assert.equal(heapGrowthSetting([], { COATCHECK_HEAP_GROWING_PERCENT: '1000' }), 1000);
  assert.equal(heapGrowthSetting([], { COATCHECK_HEAP_GROWING_PERCENT: '' }), 30);
  for (const bad of ['-1', '1.5', 'thirty', '1001', '30%', '0x10']) {
    assert.throws(
      () => heapGrowthSetting([], { COATCHECK_HEAP_GROWING_PERCENT: bad }),
      (err: unknown) => err instanceof UsageError && err.message.includes('COATCHECK_HEAP_GROWING_PERCENT') && err.message.includes(`"${bad}"`),
      bad,
    );
  }
});
