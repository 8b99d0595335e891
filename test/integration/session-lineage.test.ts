// Session lineages: every id minted from a session (rotation at login, periodic renewal) keeps
// the first 3 bytes of the id it replaces, so that a store can keep one browser's ids together;
// on one Redis server the keys stay those written before lineages existed.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Browser, send, type Reply } from '../helpers/client.js';
import { FakeClock } from '../helpers/clock.js';
import { DEFAULT_RULES, startCoatcheck, storeOverrides, type StoreChoice } from '../helpers/coatcheck.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { setsCookies, startUpstream, type Upstream } from '../helpers/upstream.js';

const MIN = 60_000;
const echoCookie = (r: Reply): string | undefined => (JSON.parse(r.body) as { headers: { cookie?: string } }).headers.cookie;

/** The session id inside a ticket `v1.<id>.<mac>`. */
function sidOf(ticket: string): Buffer {
  return Buffer.from(ticket.split('.')[1] as string, 'base64url');
}

let redis: RedisServer;
let upstream: Upstream;
let prefixes = 0;

before(async () => {
  redis = await startRedis();
  upstream = await startUpstream();
  upstream.route('/visit', setsCookies('visitor=v1; Path=/'));
  upstream.route('/login', setsCookies('app_session=alice; Path=/; HttpOnly'));
  upstream.route('/logout', setsCookies('app_session=; Path=/; Max-Age=0'));
});
after(async () => {
  await upstream.close();
  await redis.stop();
});

for (const [name, choice] of [
  ['memory', (): StoreChoice => ({ kind: 'memory' })],
  ['redis', (): StoreChoice => ({ kind: 'redis', url: redis.url })],
] as const) {
  describe(`lineages (${name})`, () => {
    test('a login rotation and every renewal keep the lineage (first 3 bytes) and change the other 29; another browser gets a lineage of its own', async (t) => {
      const clock = new FakeClock(Date.now());
      const h = await startCoatcheck(upstream.origin, { ...DEFAULT_RULES, ...storeOverrides(choice(), `l${++prefixes}:`), session: { renewAfter: '15m', idleTimeout: '30m' } }, { clock });
      t.after(() => h.close());
      const b = new Browser(h.port);
      await b.send('/visit');
      const tickets = [b.ticket as string];
      await b.send('/login', { method: 'POST' });
      tickets.push(b.ticket as string);
      for (let i = 0; i < 2; i++) {
        clock.advance(16 * MIN);
        assert.equal(echoCookie(await b.send('/echo')), 'visitor=v1; app_session=alice');
        tickets.push(b.ticket as string);
      }
      assert.equal(new Set(tickets).size, 4, 'a first session, a login rotation, two renewals');
      assert.equal(h.logs.events('session.renewed').length, 2);
      const sids = tickets.map(sidOf);
      const lineage = (sid: Buffer) => sid.toString('hex', 0, 3);
      for (const sid of sids) assert.equal(lineage(sid), lineage(sids[0] as Buffer));
      for (let i = 1; i < sids.length; i++) {
        for (let j = 0; j < i; j++) assert.notEqual(sids[i]?.toString('hex', 3), sids[j]?.toString('hex', 3), 'the other 29 bytes are fresh');
      }
      const other = new Browser(h.port);
      await other.send('/login', { method: 'POST' });
      assert.notEqual(lineage(sidOf(other.ticket as string)), lineage(sids[0] as Buffer), 'a first session draws its own lineage');
      // Logout ends the whole chain, whichever id presented it.
      await b.send('/logout');
      for (const old of tickets) assert.equal((await send(h.port, '/echo', { headers: { cookie: `coatcheck=${old}` } })).status, 401);
    });
  });
}

describe('lineages on one Redis server', () => {
  test('a session stored before lineages (at s:<SHA-256 of its id>) is the same session after the upgrade: loaded, renewed and revoked', async (t) => {
    const prefix = `l${++prefixes}:`;
    const clock = new FakeClock(Date.now());
    const h = await startCoatcheck(upstream.origin, { ...DEFAULT_RULES, ...storeOverrides({ kind: 'redis', url: redis.url }, prefix), session: { renewAfter: '15m', idleTimeout: '30m' } }, { clock });
    t.after(() => h.close());
    const b = new Browser(h.port);
    await b.send('/login', { method: 'POST' });
    const first = b.ticket as string;
    // The key the code before lineages computed for this id, and no other session key in Redis
    // (beside it, the l: key of its log id).
    const oldKey = `${prefix}s:${createHash('sha256').update(sidOf(first)).digest('base64url')}`;
    const raw = redis.client();
    assert.deepEqual((await raw.keys(`${prefix}*`)).filter((k) => !k.startsWith(`${prefix}l:`)), [oldKey]);
    // Written back by an "old" writer, as the record stood: the session carries on.
    const record = (await raw.getBuffer(oldKey)) as Buffer;
    const ttl = await raw.pttl(oldKey);
    await raw.del(oldKey);
    await raw.set(oldKey, record, 'PX', ttl);
    assert.equal(echoCookie(await b.send('/echo')), 'app_session=alice');
    clock.advance(16 * MIN);
    assert.equal(echoCookie(await b.send('/echo')), 'app_session=alice');
    const renewed = b.ticket as string;
    assert.notEqual(renewed, first, 'renewed');
    assert.equal((await raw.keys(`${prefix}f:*`)).length, 1, 'the family set, without a hash tag');
    await b.send('/logout');
    for (const ticket of [first, renewed]) assert.equal((await send(h.port, '/echo', { headers: { cookie: `coatcheck=${ticket}` } })).status, 401);
    assert.equal(await raw.exists(oldKey), 1);
    assert.match((await raw.get(oldKey)) ?? '', /^R\d+$/, 'the old key holds the tombstone');
  });
});
