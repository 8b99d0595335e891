// The revocation channel on the other Redis targets: a logout on one instance closes the
// session's WebSocket on another instance, over a Redis Cluster (PUBLISH reaches every node; each
// instance subscribes on one) and over a master watched by Redis Sentinel.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { ConfigInput } from '../../src/config/schema.js';
import { Browser } from '../helpers/client.js';
import { DEFAULT_RULES, startCoatcheck, type Harness } from '../helpers/coatcheck.js';
import { startRedisCluster, type RedisCluster } from '../helpers/redis-cluster.js';
import { startSentinelDeployment, type SentinelDeployment } from '../helpers/redis-sentinel.js';
import { setsCookies } from '../helpers/upstream.js';
import { closed, mustOpen, roundTrip, startWsApp, type WsApp } from '../helpers/websocket.js';

/**
 * The bound a close must meet in these tests. The guarantee is 1 s (typically 5–20 ms here); the
 * time is measured from sending the logout, so on a loaded 2-core machine it also holds the
 * logout request's own wait for the event loop (600 ms seen once with the whole suite running
 * next to another one): the assertion is generous, the measured time is reported.
 */
const CLOSE_BOUND_MS = 2000;

let app: WsApp;
before(async () => {
  app = await startWsApp();
  app.upstream.route('/login', setsCookies('app_session=alice; Path=/; HttpOnly'));
});
after(() => app?.close());

/** Two instances on `store`; a logout on the first closes the session's socket on the second within 1 s (1008). */
async function logoutClosesEverywhere(t: { after(fn: () => unknown): void; diagnostic(msg: string): void }, store: Partial<ConfigInput>, what: string): Promise<void> {
  const list: Harness[] = [];
  for (let i = 0; i < 2; i++) {
    const h = await startCoatcheck(app.origin, { ...DEFAULT_RULES, ...store, shutdownTimeout: '300ms' });
    t.after(() => h.close());
    list.push(h);
  }
  const [a, b] = list as [Harness, Harness];
  const alice = new Browser(a.port);
  assert.equal((await alice.send('/login', { method: 'POST' })).status, 200);
  const bob = new Browser(b.port);
  assert.equal((await bob.send('/login', { method: 'POST' })).status, 200);
  const ws = await mustOpen(b.port, '/ws/echo', { ticket: alice.ticket as string });
  const bobWs = await mustOpen(b.port, '/ws/echo', { ticket: bob.ticket as string });
  t.after(() => {
    ws.terminate();
    bobWs.terminate();
  });
  const c = closed(ws);
  const start = performance.now();
  assert.equal((await alice.send('/logout')).status, 200);
  const got = await c;
  t.diagnostic(`${what}: logout on instance A → close on instance B after ${(got.at - start).toFixed(1)} ms`);
  assert.equal(got.code, 1008);
  assert.ok(got.at - start < CLOSE_BOUND_MS, `closed after ${got.at - start} ms`);
  assert.equal((await roundTrip(bobWs, 'bob')).data.toString(), 'bob');
}

describe('the revocation channel on a Redis Cluster', () => {
  let cluster: RedisCluster;
  before(async () => {
    cluster = await startRedisCluster();
  });
  after(() => cluster?.stop());

  test('a logout on one instance closes the socket on another', { timeout: 60_000 }, async (t) => {
    await logoutClosesEverywhere(t, { store: { kind: 'redis', cluster: { nodes: cluster.seeds }, prefix: 'wsc:', timeout: '2s', connectTimeout: '10s' } }, 'Redis Cluster');
  });
});

describe('the revocation channel through Redis Sentinel', () => {
  let d: SentinelDeployment;
  before(async () => {
    d = await startSentinelDeployment();
  });
  after(() => d?.stop());

  test('a logout on one instance closes the socket on another', { timeout: 60_000 }, async (t) => {
    await logoutClosesEverywhere(t, { store: { kind: 'redis', sentinel: { name: d.name, nodes: d.sentinelNodes() }, prefix: 'wss:', timeout: '250ms', connectTimeout: '2s' } } as Partial<ConfigInput>, 'Redis Sentinel');
  });
});
