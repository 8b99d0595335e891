import assert from 'node:assert/strict';
import { test } from 'node:test';
import { normalizePath } from '../../src/pipeline/rules.js';

test('normalizePath: plain paths come back as they are; dot segments, // and unreserved escapes are resolved', () => {
  for (const p of ['/', '/page', '/a/b/', '/x.html', '/.well-known/x', '/a..b', '/a/...', "/a:b@c!$&'()*+,;=~-_"]) assert.equal(normalizePath(p), p);
  assert.equal(normalizePath('/a/./b'), '/a/b');
  assert.equal(normalizePath('/a/../logout'), '/logout');
  assert.equal(normalizePath('/..'), '/');
  assert.equal(normalizePath('//logout'), '/logout', 'a leading // is a path, not an authority');
  assert.equal(normalizePath('///x/./logout'), '/x/logout');
  assert.equal(normalizePath('/a//b///c'), '/a/b/c');
  assert.equal(normalizePath('/%6Cogout'), '/logout');
  assert.equal(normalizePath('/a%2Fb'), '/a%2Fb', 'an encoded / stays encoded');
  assert.equal(normalizePath('/a%2fb'), '/a%2Fb');
  assert.equal(normalizePath('/%2e%2e/logout'), '/logout');
});

test('normalizePath: a long segment followed by a character outside the plain set is handled in linear time', () => {
  // The earlier plain-path regex backtracked exponentially on this shape: 30 characters took seconds.
  const long = `/${'a'.repeat(50_000)}%`;
  assert.equal(normalizePath(long), long);
  assert.equal(normalizePath(`/${'a/'.repeat(20_000)}%41`), `/${'a/'.repeat(20_000)}A`);
});
