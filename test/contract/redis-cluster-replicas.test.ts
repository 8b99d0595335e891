// Durable revocation (store.replicas) on a real Redis Cluster of three masters with a replica
// each: every revoking write is followed by a WAIT on the node connection that ran it (after a
// MOVED or an ASK, the node that answered), so a frozen replica shows up exactly on the
// revocations of its own master; and an acknowledged revocation survives the kill -9 of its
// master and the promotion of its replica.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { StoreUnavailableError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import { RedisStore } from '../../src/store/redis.js';
import { keySlot } from '../../src/store/redis/slots.js';
import { captureLogger } from '../helpers/logs.js';
import { type ClusterNodeServer, type RedisCluster, pollUntil, redisClusterForSuite } from '../helpers/redis-cluster.js';

const HOUR = 3_600_000;
/**
 * Long enough to tell a WAIT that waited for a frozen replica from one that did not, and for a
 * live replica to acknowledge on a loaded machine (it answers a WAIT's GETACK at once; 400 ms was
 * missed once with the whole suite running). A WAIT whose replicas answer returns at once.
 */
const REPLICA_TIMEOUT_MS = 1500;

let prefixes = 0;
function nextPrefix(): string {
  prefixes += 1;
  return `r${prefixes}:`;
}

function b(text: string): Buffer {
  return Buffer.from(text, 'utf8');
}

/** A fresh lineage tag (4 base64url characters), as a first session's id gets. */
function lineage(): string {
  return randomBytes(3).toString('base64url');
}

function makeStore(cluster: RedisCluster, prefix: string, logger: Logger, replicas = 1): RedisStore {
  return new RedisStore({
    target: { mode: 'cluster', nodes: cluster.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })) },
    prefix,
    timeout: 5000,
    connectTimeout: 10_000,
    replicas,
    replicaTimeout: REPLICA_TIMEOUT_MS,
    logger,
  });
}

async function setup(t: TestContext, cluster: RedisCluster, replicas = 1) {
  const prefix = nextPrefix();
  const log = captureLogger();
  const store = makeStore(cluster, prefix, log.logger, replicas);
  t.after(() => store.close());
  await store.start();
  /** A session key of a new lineage whose slot `owner` serves now. */
  const keyOn = async (owner: ClusterNodeServer, name: string): Promise<{ key: string; raw: string; slot: number }> => {
    for (;;) {
      const tag = lineage();
      const slot = keySlot(`${prefix}{${tag}}s:`);
      if ((await cluster.ownerOf(slot)) === owner) return { key: `${tag}.${name}`, raw: `${prefix}{${tag}}s:${name}`, slot };
    }
  };
  return { prefix, store, keyOn, ...log };
}

/** Freezes the replica of `master` (SIGSTOP) for the rest of the test; it is thawed and caught up after. */
function freezeReplicaOf(t: TestContext, cluster: RedisCluster, master: ClusterNodeServer): void {
  const replica = cluster.replicas.find((r) => r.master === master);
  if (!replica) throw new Error(`${master.address} has no replica`);
  replica.signal('SIGSTOP');
  t.after(async () => {
    replica.signal('SIGCONT');
    // Caught up: the master's WAIT 1 answers 1 at once again.
    await pollUntil(async () => Number(await master.client().call('WAIT', '1', '100')) === 1, `${replica.address} caught up`);
  });
}

describe('durable revocation on a cluster: each WAIT goes to the master that ran the write', () => {
  const cluster = redisClusterForSuite({ replicas: 1 });

  test('at start, a master with fewer replicas than store.replicas is named in a warning, one per master', async (t) => {
    const { logs } = await setup(t, cluster(), 2);
    const warned = logs.events('store.replicas_missing');
    assert.deepEqual(warned.map((l) => l.redis).sort(), cluster().nodes.map((n) => n.address).sort());
    for (const l of warned) assert.equal(l.connected, 1);
  });

  test('with every replica up, revocations on every master are acknowledged: nothing is logged', async (t) => {
    const { store, keyOn, logs } = await setup(t, cluster());
    const keys = await Promise.all(cluster().nodes.map((n, i) => keyOn(n, `k${i}`)));
    for (const { key } of keys) assert.equal(await store.create(key, b('v'), HOUR), true);
    assert.deepEqual(await Promise.all(keys.map(({ key }) => store.revoke(key, HOUR, { logId: key }))), [true, true, true]);
    assert.deepEqual(logs.events('store.revoke_not_replicated'), []);
    assert.equal(store.stats().revokeNotReplicated, 0);
  });

  test("a frozen replica delays and flags only its own master's revocations; the others are answered at once", async (t) => {
    const { store, keyOn, logs } = await setup(t, cluster());
    const [a, b1, c] = cluster().nodes as [ClusterNodeServer, ClusterNodeServer, ClusterNodeServer];
    const onA = [await keyOn(a, 'a1'), await keyOn(a, 'a2')];
    const others = [await keyOn(b1, 'b'), await keyOn(c, 'c')];
    for (const { key } of [...onA, ...others]) assert.equal(await store.create(key, b('v'), HOUR), true);
    freezeReplicaOf(t, cluster(), a);

    const timed = async (key: string) => {
      const t0 = performance.now();
      const revoked = await store.revoke(key, HOUR, { logId: `log-${key}` });
      return { revoked, ms: performance.now() - t0 };
    };
    const [slowA1, slowA2, fastB, fastC] = await Promise.all([...onA, ...others].map(({ key }) => timed(key)));
    for (const r of [slowA1, slowA2, fastB, fastC]) assert.equal(r?.revoked, true);
    for (const r of [slowA1, slowA2]) assert.ok((r?.ms ?? 0) >= REPLICA_TIMEOUT_MS - 20, `a revocation on the frozen replica's master waited replicaTimeout (${r?.ms} ms)`);
    for (const r of [fastB, fastC]) assert.ok((r?.ms ?? Infinity) < REPLICA_TIMEOUT_MS, `a revocation on another master did not wait for it (${r?.ms} ms)`);

    const flagged = logs.events('store.revoke_not_replicated');
    assert.deepEqual(flagged.map((l) => l.session).sort(), onA.map(({ key }) => `log-${key}`).sort());
    for (const l of flagged) assert.equal(l.acknowledged, 0);
    assert.equal(store.stats().revokeNotReplicated, 2);
    // The tombstones are held all the same (the master has them).
    for (const { key } of [...onA, ...others]) assert.equal((await store.load(key)).state, 'revoked');
  });

  test('a revocation that ASK sends to the migration target is waited for on the target, not on the slot owner', async (t) => {
    const { store, keyOn, logs } = await setup(t, cluster());
    const [source, target] = cluster().nodes as [ClusterNodeServer, ClusterNodeServer];
    const stays = await keyOn(source, 'stays');
    const moved = { key: stays.key.replace('.stays', '.moved'), raw: stays.raw.replace(':stays', ':moved') };
    for (const { key } of [stays, moved]) assert.equal(await store.create(key, b('v'), HOUR), true);
    const migration = await cluster().beginMigration(stays.slot, target);
    t.after(() => migration.finish());
    await migration.moveKey(moved.raw);
    // The target's replica is frozen, the source's is not: only the write that ran on the
    // target may come out unacknowledged.
    freezeReplicaOf(t, cluster(), target);

    const [r1, r2] = await Promise.all([store.revoke(moved.key, HOUR, { logId: 'went-to-target' }), store.revoke(stays.key, HOUR, { logId: 'stayed-on-source' })]);
    assert.deepEqual([r1, r2], [true, true]);
    assert.deepEqual(
      logs.events('store.revoke_not_replicated').map((l) => l.session),
      ['went-to-target'],
      'the WAIT of the redirected write went to the node that ran it',
    );
    const onTarget = await target.client().pipeline().asking().get(moved.raw).exec();
    assert.match(String(onTarget?.[1]?.[1]), /^R/, 'the tombstone is on the target');
  });

  test('rotate and revokeFamily wait on their master too; a rotate that lost its race (nothing written) is not flagged', async (t) => {
    const { store, keyOn, logs } = await setup(t, cluster());
    const [a] = cluster().nodes as [ClusterNodeServer];
    const first = await keyOn(a, 'one');
    const second = first.key.replace('.one', '.two');
    const third = first.key.replace('.one', '.three');
    assert.equal(await store.create(first.key, b('v'), HOUR), true);
    freezeReplicaOf(t, cluster(), a);
    const alias = { successor: 'succ', graceUntil: Date.now() + 30_000, family: 'fam', familyDeadline: Date.now() + HOUR };
    assert.equal(await store.rotate(first.key, 1, HOUR, second, b('w'), HOUR, alias, { logId: 'rotated' }), 'ok');
    assert.equal(await store.rotate(first.key, 1, HOUR, third, b('x'), HOUR, alias, { logId: 'lost-race' }), 'gone');
    assert.equal(await store.revokeFamily('fam', second, HOUR, { logId: 'family' }), 1);
    assert.deepEqual(
      logs.events('store.revoke_not_replicated').map((l) => l.session),
      ['rotated', 'family'],
    );
  });
});

describe('durable revocation on a cluster: the kill -9 of a master', () => {
  const cluster = redisClusterForSuite({ replicas: 1 });

  test('every acknowledged revocation on the killed master is still revoked once its replica took over; live sessions keep their data', async (t) => {
    const { store, keyOn, logs } = await setup(t, cluster());
    const victim = cluster().nodes[0] as ClusterNodeServer;
    const replica = cluster().replicas.find((r) => r.master === victim) as ClusterNodeServer;
    const keys: Array<{ key: string; slot: number }> = [];
    for (let i = 0; i < 40; i++) keys.push(await keyOn(victim, `s${i}`));
    for (const { key } of keys) assert.equal(await store.create(key, b(`data ${key}`), HOUR), true);
    const revoked = keys.filter((_, i) => i % 2 === 0);
    const live = keys.filter((_, i) => i % 2 === 1);
    // Acknowledged by the replica (nothing flagged), then the master dies at once.
    assert.deepEqual(new Set(await Promise.all(revoked.map(({ key }) => store.revoke(key, HOUR, { logId: key })))), new Set([true]));
    assert.deepEqual(logs.events('store.revoke_not_replicated'), []);
    victim.signal('SIGKILL');

    // Meanwhile a load either fails (StoreUnavailableError: 503) or answers the truth.
    const duringOutage = await Promise.allSettled(keys.map(({ key }) => store.load(key)));
    for (const [i, r] of duringOutage.entries()) {
      if (r.status === 'rejected') assert.ok(r.reason instanceof StoreUnavailableError, String(r.reason));
      else assert.equal(r.value.state, i % 2 === 0 ? 'revoked' : 'live');
    }

    const slot = (keys[0] as { slot: number }).slot;
    await pollUntil(async () => {
      try {
        return (await cluster().ownerOf(slot, replica)).port === replica.port && /cluster_state:ok/.test(String(await replica.client().call('CLUSTER', 'INFO')));
      } catch {
        return false;
      }
    }, `${replica.address} promoted`);

    // The store follows the new master by itself (MOVED, slot table refresh).
    await pollUntil(async () => {
      try {
        await store.load((keys[0] as { key: string }).key);
        return true;
      } catch {
        return false;
      }
    }, 'the store reaches the promoted replica');
    for (const { key } of revoked) assert.equal((await store.load(key)).state, 'revoked', `${key} stays revoked after the failover`);
    for (const { key } of live) assert.deepEqual(await store.load(key), { state: 'live', version: 1, data: b(`data ${key}`) });
    // And a logout after the failover still works (the promoted node has no replica: flagged).
    assert.equal(await store.revoke((live[0] as { key: string }).key, HOUR, { logId: 'after' }), true);
    assert.equal((await store.load((live[0] as { key: string }).key)).state, 'revoked');
  });
});
