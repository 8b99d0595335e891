// The Redis ACL that docs/security.md §4.2 recommends is enough for everything the store does,
// and no more than the key prefix: the test takes the ACL from the document itself, so the
// document and the code cannot drift apart.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { RedisStore } from '../../src/store/redis.js';
import { REPO_ROOT } from '../helpers/coatcheck.js';
import { captureLogger } from '../helpers/logs.js';
import { redisForSuite } from '../helpers/redis-server.js';

const HOUR = 3_600_000;

/** The `ACL SETUSER …` command of docs/security.md, as arguments. */
function documentedAcl(): string[] {
  const doc = readFileSync(join(REPO_ROOT, 'docs/security.md'), 'utf8');
  const block = /```\s*\n\s*(ACL SETUSER coatcheck[^`]*)```/.exec(doc)?.[1];
  assert.ok(block, 'docs/security.md has an ACL SETUSER block');
  return block.trim().split(/\s+/).slice(2);
}

describe('the documented Redis ACL', () => {
  const redis = redisForSuite();

  test('lets the store do all it does, with the default prefix', async (t) => {
    const acl = documentedAcl();
    assert.equal(acl[0], 'coatcheck');
    const password = 'acl-test-password-0123456789';
    const args = acl.map((a) => (a.startsWith('>') ? `>${password}` : a));
    await redis().client().call('ACL', 'SETUSER', ...args);
    const { logger, logs } = captureLogger();
    const store = new RedisStore({ target: { mode: 'single', url: `redis://coatcheck:${password}@127.0.0.1:${redis().port}` }, prefix: 'coatcheck:', timeout: 2000, connectTimeout: 5000, logger });
    t.after(() => store.close());
    await store.start();
    await store.ping();
    // The revocation channel: subscribed as this user, and every revoking write below is published (a refused PUBLISH would be a warning).
    const heard: unknown[] = [];
    await store.revocationFeed.listen({ revoked: (r) => heard.push(r), resynced: () => undefined });
    const data = Buffer.from([0, 1, 2, 0xff]);
    assert.equal(await store.create('k1', data, HOUR), true);
    assert.equal((await store.load('k1')).state, 'live');
    assert.equal(await store.update('k1', 1, data, HOUR), 'ok');
    assert.equal(await store.update('k1', 1, data, HOUR), 'conflict');
    const alias = { successor: 'succ', graceUntil: Date.now() + 30_000, family: 'fam', familyDeadline: Date.now() + HOUR };
    assert.equal(await store.rotate('k1', 2, HOUR, 'k2', data, HOUR, alias), 'ok');
    assert.equal((await store.load('k1')).state, 'renewed');
    assert.equal(await store.rotate('k2', 1, HOUR, 'k3', data, HOUR), 'ok');
    assert.equal(await store.revokeFamily('fam', 'k3', HOUR), 1);
    assert.equal(await store.revoke('k4', HOUR), false);
    assert.equal((await store.load('k2')).state, 'revoked');
    // Loads asked for together go out as one MGET.
    assert.deepEqual(
      (await Promise.all(['k1', 'k2', 'k3', 'none'].map((k) => store.load(k)))).map((r) => r.state),
      ['revoked', 'revoked', 'revoked', 'none'],
    );
    // The session directory (users' entries, log ids, the revoke-all time).
    const d = store.directory;
    await d.putUserEntry('user', 'fam', 'entry', HOUR);
    assert.deepEqual(await d.userEntries('user'), new Map([['fam', 'entry']]));
    await d.dropUserEntries('user', ['fam']);
    await d.putLogIndex('log', 'where', HOUR);
    assert.equal(await d.getLogIndex('log'), 'where');
    await d.setRevokedBefore(1, HOUR);
    assert.equal(await d.revokedBefore(), 1);
    // Report-only mode's fingerprints: SET … PX … GET, and lookups in an MGET.
    assert.deepEqual(await store.recordFingerprints(['fp1', 'fp2'], 5, HOUR), [null, null]);
    assert.deepEqual(await store.recordFingerprints(['fp1'], 6, HOUR), [5]);
    assert.deepEqual(await store.findFingerprints(['fp1', 'fp2', 'fp3']), [6, 5, null]);
    assert.deepEqual(logs.warnings(), []);
    assert.ok(heard.length >= 3, 'the revocations were delivered');
    // and nothing outside the prefix
    const outside = new Redis({ port: redis().port, host: '127.0.0.1', username: 'coatcheck', password, lazyConnect: true, maxRetriesPerRequest: 0 });
    t.after(() => outside.disconnect());
    await outside.connect();
    await assert.rejects(outside.get('other:key'), /NOPERM/);
    await assert.rejects(outside.call('FLUSHALL'), /NOPERM/);
  });
});
