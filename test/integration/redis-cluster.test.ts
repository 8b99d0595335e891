// Session flows end to end through a real coatcheck on a real Redis Cluster of three masters:
// login, rotation, renewal, logout of a whole family, replay, concurrent writes, sessions spread
// over every master, and a live migration of the slots that hold sessions.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Browser, send, type Reply } from '../helpers/client.js';
import { FakeClock } from '../helpers/clock.js';
import { DEFAULT_RULES, startCoatcheck, type Harness } from '../helpers/coatcheck.js';
import { pollUntil, startRedisCluster, type ClusterNodeServer, type RedisCluster } from '../helpers/redis-cluster.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { keySlot } from '../../src/store/redis/slots.js';

const MIN = 60_000;

let cluster: RedisCluster;
let upstream: Upstream;
let prefixes = 0;

/** Sets the cookie `n` to `v` (query string), as an app page would. */
function setCookie(req: IncomingMessage, res: ServerResponse): void {
  const q = new URL(req.url ?? '/', 'http://x').searchParams;
  res.setHeader('set-cookie', `${q.get('n') ?? 'x'}=${q.get('v') ?? '1'}; Path=/`);
  res.end('set');
}

before(async () => {
  [cluster, upstream] = await Promise.all([startRedisCluster(), startUpstream()]);
  upstream.route('/visit', (_req, res) => {
    res.setHeader('set-cookie', 'visitor=v1; Path=/');
    res.end('hello');
  });
  upstream.route('/login', (_req, res) => {
    res.setHeader('set-cookie', 'app_session=alice; Path=/; HttpOnly');
    res.end('logged in');
  });
  upstream.route('/logout', (_req, res) => {
    res.setHeader('set-cookie', 'app_session=; Path=/; Max-Age=0');
    res.end('bye');
  });
  upstream.route('/set', setCookie);
});
after(async () => {
  await upstream.close();
  await cluster.stop();
});

function clusterStore(prefix: string, timeout = '2s'): Partial<ConfigInput> {
  return { store: { kind: 'redis', cluster: { nodes: cluster.seeds }, prefix, timeout, connectTimeout: '10s' } };
}

async function start(overrides: Partial<ConfigInput> = {}, timeout?: string) {
  const prefix = `i${++prefixes}:`;
  const clock = new FakeClock(Date.now());
  const h = await startCoatcheck(upstream.origin, { ...DEFAULT_RULES, ...clusterStore(prefix, timeout), ...overrides }, { clock });
  return { h, clock, prefix };
}

const cookiesSeen = (r: Reply): string | undefined => (JSON.parse(r.body) as { headers: { cookie?: string } }).headers.cookie;

/** The lineage tag of a ticket's session id (its first 3 bytes, base64url). */
function lineageOf(ticket: string): string {
  return Buffer.from(ticket.split('.')[1] as string, 'base64url').toString('base64url', 0, 3);
}

/** The hash slot that holds every key of a ticket's lineage. */
function slotOf(prefix: string, ticket: string): number {
  return keySlot(`${prefix}{${lineageOf(ticket)}}s:`);
}

/** Keys under `prefix` on one node. */
async function keysOn(node: ClusterNodeServer, prefix: string): Promise<string[]> {
  return (await node.client().call('KEYS', `${prefix}*`)) as string[];
}

/** A request with a ticket that the app must not see: the number of requests it received is unchanged. */
async function rejectedBeforeTheApp(h: Harness, ticket: string): Promise<Reply> {
  const seen = upstream.received.length;
  const r = await send(h.port, '/echo', { headers: { cookie: `coatcheck=${ticket}` } });
  assert.equal(upstream.received.length, seen, 'the app was not contacted');
  return r;
}

describe('sessions on a Redis Cluster', () => {
  test('login rotates, renewal keeps a grace window, logout revokes the whole family on its node; replays get 401 and never reach the app', async (t) => {
    const { h, clock, prefix } = await start({ session: { renewAfter: '15m', renewGrace: '30s', idleTimeout: '30m' } });
    t.after(() => h.close());
    const b = new Browser(h.port);
    await b.send('/visit');
    const anonymous = b.ticket as string;
    assert.equal((await b.send('/login', { method: 'POST' })).status, 200);
    const loggedIn = b.ticket as string;
    assert.notEqual(loggedIn, anonymous, 'login rotates the ticket');
    assert.equal((await rejectedBeforeTheApp(h, anonymous)).status, 401, 'the ticket from before login is dead');

    clock.advance(16 * MIN);
    assert.equal(cookiesSeen(await b.send('/echo')), 'visitor=v1; app_session=alice');
    const renewed = b.ticket as string;
    assert.notEqual(renewed, loggedIn, 'renewed');
    // Within the grace window the previous ticket still works, and hands out the newest one.
    const late = await send(h.port, '/echo', { headers: { cookie: `coatcheck=${loggedIn}` } });
    assert.equal(late.status, 200);
    assert.equal(cookiesSeen(late), 'visitor=v1; app_session=alice');
    assert.ok(late.setCookies.some((c) => c.startsWith(`coatcheck=${renewed};`)));

    // Every key of the chain is in one slot, on one master, with the family set.
    const slot = slotOf(prefix, renewed);
    for (const ticket of [anonymous, loggedIn]) assert.equal(slotOf(prefix, ticket), slot);
    const owner = await cluster.ownerOf(slot);
    // (Beside them, each id's log id key, l:, in a slot of its own.)
    const held = (await keysOn(owner, prefix)).filter((k) => !k.startsWith(`${prefix}l:`)).sort();
    assert.equal(held.length, 4, `three ids (the anonymous one's tombstone, the renewed one's alias, the live one) and the family set: ${held.join(' ')}`);
    assert.ok(held.every((k) => k.startsWith(`${prefix}{${lineageOf(renewed)}}`)));

    const replays = h.logs.events('session.replay').length;
    await b.send('/logout');
    for (const ticket of [anonymous, loggedIn, renewed]) assert.equal((await rejectedBeforeTheApp(h, ticket)).status, 401);
    assert.equal(h.logs.events('session.replay').length, replays + 3);
    const after = (await keysOn(owner, prefix)).filter((k) => !k.startsWith(`${prefix}l:`));
    assert.ok(!after.some((k) => k.includes('}f:')), 'the family set went with the family');
    for (const k of after) assert.match((await owner.client().get(k)) ?? '', /^R\d+$/, `${k} is a tombstone`);
  });

  test('concurrent writes to one session are all kept', async (t) => {
    const { h } = await start();
    t.after(() => h.close());
    const b = new Browser(h.port);
    await b.send('/login', { method: 'POST' });
    const ticket = b.ticket as string;
    const replies = await Promise.all(
      Array.from({ length: 12 }, (_, i) => send(h.port, `/set?n=c${i}&v=${i}`, { headers: { cookie: `coatcheck=${ticket}` } })),
    );
    for (const r of replies) assert.equal(r.status, 200);
    const jar = cookiesSeen(await b.send('/echo')) ?? '';
    for (let i = 0; i < 12; i++) assert.ok(jar.split('; ').includes(`c${i}=${i}`), `c${i} in ${jar}`);
  });

  test('1 000 sessions spread over all three masters, each one served from its own', async (t) => {
    const { h, prefix } = await start();
    t.after(() => h.close());
    const tickets: string[] = [];
    const workers = Array.from({ length: 25 }, async () => {
      while (tickets.length < 1000) {
        const b = new Browser(h.port);
        tickets.push('');
        const slot = tickets.length - 1;
        const r = await b.send('/login', { method: 'POST' });
        assert.equal(r.status, 200);
        tickets[slot] = b.ticket as string;
      }
    });
    await Promise.all(workers);
    assert.equal(new Set(tickets).size, 1000);
    // The session keys (each session also has its log id's key, l:, in a slot of its own).
    const perNode = (await Promise.all(cluster.nodes.map((n) => keysOn(n, prefix)))).map((keys) => keys.filter((k) => /\}s:/.test(k)));
    assert.equal(perNode.reduce((n, keys) => n + keys.length, 0), 1000);
    for (const [i, keys] of perNode.entries()) assert.ok(keys.length > 200, `master ${cluster.nodes[i]?.address} holds ${keys.length} of 1000`);
    // A sample of them, loaded in one go (several slots per event-loop turn).
    const sample = tickets.filter((_, i) => i % 20 === 0);
    const replies = await Promise.all(sample.map((ticket) => send(h.port, '/echo', { headers: { cookie: `coatcheck=${ticket}` } })));
    for (const r of replies) assert.equal(cookiesSeen(r), 'app_session=alice');
  });
});

describe('sessions on a Redis Cluster while slots migrate', () => {
  test('moving the slots of live and revoked sessions under traffic: every answer 200 or a 503 that a retry gets past, no acknowledged write lost, revoked sessions stay revoked', async (t) => {
    const { h, clock, prefix } = await start({ session: { renewAfter: '15m', renewGrace: '10m', idleTimeout: '1h' } }, '1s');
    t.after(() => h.close());

    interface User {
      browser: Browser;
      /** Cookies the app set in a 200 answer: they must all be in the jar at the end. */
      acknowledged: Map<string, string>;
      /** Every ticket this user held. */
      tickets: Set<string>;
      leaves: boolean;
      requests: number;
    }
    const statuses = new Map<number, number>();
    const users: User[] = [];
    for (let i = 0; i < 20; i++) {
      const browser = new Browser(h.port);
      assert.equal((await browser.send('/login', { method: 'POST' })).status, 200);
      users.push({ browser, acknowledged: new Map([['app_session', 'alice']]), tickets: new Set([browser.ticket as string]), leaves: i % 4 === 3, requests: 0 });
    }
    // Logged out before anything moves: their tombstones move with the slots.
    const gone: string[] = [];
    for (let i = 0; i < 4; i++) {
      const b = new Browser(h.port);
      await b.send('/login', { method: 'POST' });
      gone.push(b.ticket as string);
      await b.send('/logout');
    }

    /** One request, sent again after a 503 (a store command that failed: timed out, or refused mid-migration). */
    async function request(u: User, path: string, method = 'GET'): Promise<Reply> {
      for (let attempt = 1; ; attempt++) {
        const r = await u.browser.send(path, { method });
        u.requests += 1;
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        if (r.status !== 503 || attempt === 20) return r;
      }
    }

    let moving = true;
    let renewalsDue = false;
    const traffic = users.map(async (u, n) => {
      let step = 0;
      while (moving || step < 6) {
        step += 1;
        // Ten names, set again and again (a jar holds at most 50 cookies): the last value acknowledged counts.
        const name = `c${step % 10}`;
        const set = await request(u, `/set?n=${name}&v=${n}-${step}`);
        assert.equal(set.status, 200, `set ${name}: ${set.status}`);
        u.acknowledged.set(name, `${n}-${step}`);
        if (u.browser.ticket) u.tickets.add(u.browser.ticket);
        const echo = await request(u, '/echo');
        assert.equal(echo.status, 200, `echo: ${echo.status}`);
        const jar = (cookiesSeen(echo) ?? '').split('; ');
        for (const [k, v] of u.acknowledged) assert.ok(jar.includes(`${k}=${v}`), `${k}=${v} acknowledged, missing from ${jar.join('; ')}`);
        if (u.browser.ticket) u.tickets.add(u.browser.ticket);
        if (u.leaves && renewalsDue) {
          assert.equal((await request(u, '/logout')).status, 200);
          return;
        }
      }
    });

    // The slots of every session (live ones, those that log out on the way, those gone), each
    // moved to another master: first one key, then (once a request of that user went through
    // the half-moved slot) the rest.
    const slots = [...new Set([...users.map((u) => slotOf(prefix, [...u.tickets][0] as string)), ...gone.map((g) => slotOf(prefix, g))])];
    const migrations = (async () => {
      try {
        for (const [i, slot] of slots.entries()) {
          if (i === Math.floor(slots.length / 2)) {
            // Renewals from here on: new ids made while slots move.
            clock.advance(16 * MIN);
            renewalsDue = true;
          }
          const owner = await cluster.ownerOf(slot);
          const to = cluster.nodes[(cluster.nodes.indexOf(owner) + 1) % cluster.nodes.length] as ClusterNodeServer;
          const m = await cluster.beginMigration(slot, to);
          await m.moveKeys(1);
          const user = users.find((u) => slotOf(prefix, [...u.tickets][0] as string) === slot);
          if (user) {
            const seen = user.requests;
            await pollUntil(async () => user.requests > seen + 1 || (user.leaves && renewalsDue), `a request of the slot's user went through slot ${slot} half moved`, 20_000);
          }
          await m.finish();
        }
      } finally {
        moving = false;
      }
    })();
    await Promise.all([migrations, ...traffic]);

    const asks = await Promise.all(cluster.nodes.map(async (n) => /^errorstat_ASK:count=(\d+)/m.exec(await n.client().info('errorstats'))?.[1] ?? '0'));
    assert.ok(asks.reduce((a, c) => a + Number(c), 0) > 0, 'requests were redirected (ASK) to keys already moved');
    assert.deepEqual([...statuses.keys()].filter((s) => s !== 200 && s !== 503), [], `answers: ${JSON.stringify([...statuses])}`);
    for (const slot of slots) assert.notEqual(await cluster.ownerOf(slot), undefined);

    for (const u of users) {
      if (u.leaves) {
        for (const ticket of u.tickets) assert.equal((await rejectedBeforeTheApp(h, ticket)).status, 401, 'logged out during the migration: every id of the family');
        continue;
      }
      const r = await request(u, '/echo');
      assert.equal(r.status, 200);
      const jar = (cookiesSeen(r) ?? '').split('; ');
      for (const [k, v] of u.acknowledged) assert.ok(jar.includes(`${k}=${v}`), `${k}=${v}`);
      u.tickets.add(u.browser.ticket as string);
      assert.ok(u.tickets.size >= 2, 'renewed once the clock moved');
    }
    for (const ticket of gone) assert.equal((await rejectedBeforeTheApp(h, ticket)).status, 401, 'logged out before the migration');
  });
});
