// A log id's record in the session directory: the compact form written now, and the JSON form
// written before (still read: a log id from a line logged before an upgrade still revokes).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatWhere, parseWhere } from '../../src/session/directory.js';

const KEY = 'AbCd.Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV';
const DEADLINE = Date.UTC(2026, 11, 5, 20, 0, 0, 123);

test('a log id record round-trips, shorter than the JSON written before', () => {
  const text = formatWhere(KEY, 'c2Vzc2lvbmZhbWls', DEADLINE);
  assert.deepEqual(parseWhere(text), { k: KEY, f: 'c2Vzc2lvbmZhbWls', d: DEADLINE });
  const before = JSON.stringify({ k: KEY, f: 'c2Vzc2lvbmZhbWls', d: DEADLINE });
  assert.ok(text.length <= before.length - 20, `${text.length} vs ${before.length}`);
  assert.deepEqual(parseWhere(before), { k: KEY, f: 'c2Vzc2lvbmZhbWls', d: DEADLINE }, 'the JSON form is still read');
});

test('a damaged log id record reads as nothing', () => {
  for (const text of ['', 'a b', 'a b c d', ' b 1', 'a  1', 'a b -1', 'a b 1.5', 'a b zzzzzzzzzzzz', '{"k":"a"}', '{']) {
    assert.equal(parseWhere(text), undefined, text);
  }
});
