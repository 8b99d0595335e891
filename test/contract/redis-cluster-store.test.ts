// The store contract against a real Redis Cluster of three masters (one per suite), plus checks
// of what is particular to a cluster: the key layout in hash tags, slots as the servers compute
// them, loads batched per slot, the family revocation with its members declared, and what a
// slot migration does to each kind of write.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { StoreUnavailableError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import { createStore } from '../../src/store/index.js';
import { RedisStore } from '../../src/store/redis.js';
import { KeyLayout } from '../../src/store/redis/model.js';
import type { ScriptedRedis } from '../../src/store/redis/scripts.js';
import { keySlot } from '../../src/store/redis/slots.js';
import type { RenewalAlias } from '../../src/store/types.js';
import { captureLogger } from '../helpers/logs.js';
import { type ClusterNodeServer, pollUntil, redisClusterForSuite } from '../helpers/redis-cluster.js';
import { freePort } from '../helpers/redis-server.js';
import { runStoreContract } from './store.contract.js';

const cluster = redisClusterForSuite();

let prefixes = 0;
function nextPrefix(): string {
  prefixes += 1;
  return `c${prefixes}:`;
}

function seedNodes() {
  return cluster().nodes.map((n) => ({ host: '127.0.0.1', port: n.port }));
}

/** Generous timeouts: these are correctness tests on a possibly loaded machine. */
function makeStore(prefix: string, logger: Logger, timeout = 5000): RedisStore {
  return new RedisStore({ target: { mode: 'cluster', nodes: seedNodes() }, prefix, timeout, connectTimeout: 10_000, logger });
}

runStoreContract('redis cluster', async (clock) => {
  const prefix = nextPrefix();
  const layout = new KeyLayout(prefix, true);
  const { logger } = captureLogger();
  const store = makeStore(prefix, logger);
  const peer = makeStore(prefix, logger);
  try {
    await store.start();
    await peer.start();
  } catch (err) {
    await Promise.all([store.close(), peer.close()]);
    throw err;
  }
  const raw = cluster().client();
  return {
    store,
    peer,
    advance: (ms) => clock.advance(ms),
    // The suite's keys have no lineage tag: they all share the empty lineage's `{.}`.
    pttl: (key) => raw.pttl(layout.session(key)),
    fingerprintPttl: (fp) => raw.pttl(`${prefix}p:${fp}`),
    familyPttl: (family) => raw.pttl(layout.family(family, '')),
    expireNow: async (key) => {
      await raw.pexpire(layout.session(key), 0);
    },
    expireFamilyNow: async (family) => {
      await raw.pexpire(layout.family(family, ''), 0);
    },
    cleanup: async () => {
      await Promise.all([store.close(), peer.close()]);
    },
  };
});

const HOUR = 3_600_000;

function b(text: string): Buffer {
  return Buffer.from(text, 'utf8');
}

/** A fresh lineage tag (4 base64url characters), as a first session's id gets. */
function lineage(): string {
  return randomBytes(3).toString('base64url');
}

/** A store key as the session layer makes them: `<tag>.<hash>`. */
function keyIn(tag: string, name: string): string {
  return `${tag}.${name}`;
}

function aliasOf(family: string, over: Partial<RenewalAlias> = {}): RenewalAlias {
  return { successor: 'c2VhbGVk-succ_1', graceUntil: Date.now() + 30_000, family, familyDeadline: Date.now() + 12 * HOUR, ...over };
}

/** Calls of one command on every node since the last CONFIG RESETSTAT. */
async function calls(nodes: readonly ClusterNodeServer[], command: string): Promise<number> {
  let total = 0;
  for (const n of nodes) {
    const m = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(await n.client().info('commandstats'));
    total += m ? Number(m[1]) : 0;
  }
  return total;
}

/** The store's cluster client, to call a script directly. */
function ioredisOf(store: RedisStore): ScriptedRedis {
  return (store as unknown as { client: { ioredis: ScriptedRedis } }).client.ioredis;
}

describe('RedisStore on a cluster', () => {
  async function setup(t: TestContext, timeout = 5000) {
    const prefix = nextPrefix();
    const log = captureLogger();
    const store = makeStore(prefix, log.logger, timeout);
    t.after(() => store.close());
    await store.start();
    return { prefix, store, raw: cluster().client(), ...log };
  }

  test('hash slots are computed as the servers compute them (CLUSTER KEYSLOT): hash tags, empty braces, UTF-8', async () => {
    const node = cluster().nodes[0] as ClusterNodeServer;
    const keys = ['', 'a', 'coatcheck:{AbC_}s:x', 'coatcheck:{.}f:fam', '{}', '{}x', 'a{}{b}', '{a', 'a}b{', '{{x}}', 'x{y}z{w}', 'ü{日本}🍪', 'plain-key-without-tag'];
    for (let i = 0; i < 50; i++) keys.push(`p:{${lineage()}}s:${randomBytes(32).toString('base64url')}`);
    for (const k of keys) assert.equal(keySlot(k), Number(await node.client().call('CLUSTER', 'KEYSLOT', k)), JSON.stringify(k));
  });

  test('layout: a session key in its lineage hash tag, the family key in the tag of the session key it is written with, untagged keys in {.}', async (t) => {
    const { prefix, store, raw } = await setup(t);
    const tag = lineage();
    assert.equal(await store.create(keyIn(tag, 'h1'), b('one'), HOUR), true);
    assert.equal(await store.rotate(keyIn(tag, 'h1'), 1, HOUR, keyIn(tag, 'h2'), b('two'), HOUR, aliasOf('fam')), 'ok');
    assert.equal(await store.create('plain', b('p'), HOUR), true);
    assert.equal((await raw.getBuffer(`${prefix}{${tag}}s:h2`))?.toString('latin1'), 'L1:two');
    assert.match((await raw.getBuffer(`${prefix}{${tag}}s:h1`))?.toString('latin1') ?? '', /^N\d+\|\d+\|fam\|/);
    assert.deepEqual((await raw.smembers(`${prefix}{${tag}}f:fam`)).sort(), [`${prefix}{${tag}}s:h1`, `${prefix}{${tag}}s:h2`]);
    assert.equal((await raw.getBuffer(`${prefix}{.}s:plain`))?.toString('latin1'), 'L1:p');
    // The lineage decides the slot: every key of one lineage has its slot.
    const slot = keySlot(`${prefix}{${tag}}s:h1`);
    for (const k of [`${prefix}{${tag}}s:h2`, `${prefix}{${tag}}f:fam`]) assert.equal(keySlot(k), slot);
    assert.equal(await store.revokeFamily('fam', keyIn(tag, 'h2'), HOUR), 1);
    assert.equal(await raw.exists(`${prefix}{${tag}}f:fam`), 0);
  });

  test('sessions of many lineages spread over every master; the loads of one turn go out as one command per slot, each load answered', async (t) => {
    const { prefix, store } = await setup(t);
    const nodes = cluster().nodes;
    const keys: string[] = [];
    // Fewer than the 256 loads one command carries at most: all of them go out in one flush.
    for (let i = 0; i < 200; i++) keys.push(keyIn(lineage(), `s${i}`));
    // A few lineages with several ids, as renewals make them: one slot, several keys.
    const shared = lineage();
    for (let i = 0; i < 5; i++) keys.push(keyIn(shared, `r${i}`));
    for (const [i, k] of keys.entries()) assert.equal(await store.create(k, b(`v${i}`), HOUR), true);
    await store.revoke(keys[0] as string, HOUR);
    for (const node of nodes) {
      const held = (await node.client().call('DBSIZE')) as number;
      assert.ok(held > 0, `${node.address} holds sessions (${held})`);
    }

    const asked = [...keys, keyIn(shared, 'missing'), keyIn(lineage(), 'missing')];
    const slots = new Map<number, number>();
    for (const k of asked) {
      const slot = keySlot(`${prefix}{${k.slice(0, 4)}}s:`);
      slots.set(slot, (slots.get(slot) ?? 0) + 1);
    }
    await Promise.all(nodes.map((n) => n.client().config('RESETSTAT')));
    const results = await Promise.all(asked.map((k) => store.load(k)));
    assert.deepEqual(results[0], { state: 'revoked', deadline: (results[0] as { deadline: number }).deadline });
    for (let i = 1; i < keys.length; i++) assert.deepEqual(results[i], { state: 'live', version: 1, data: b(`v${i}`) }, `load ${i}`);
    assert.deepEqual(results.slice(keys.length), [{ state: 'none' }, { state: 'none' }]);
    const several = [...slots.values()].filter((n) => n > 1).length;
    assert.ok(several >= 1, 'the shared lineage makes one slot with several keys');
    assert.equal(await calls(nodes, 'mget'), several, 'one MGET per slot asked for more than once');
    assert.equal(await calls(nodes, 'get'), slots.size - several, 'one GET per slot asked for once');
  });

  test('revokeFamily declares the members it read: a list that misses one (a renewal came in between) changes nothing and is read again', async (t) => {
    const { prefix, store, raw } = await setup(t);
    const tag = lineage();
    const k = (n: string) => keyIn(tag, n);
    const rawKey = (n: string) => `${prefix}{${tag}}s:${n}`;
    const familyKey = `${prefix}{${tag}}f:F`;
    await store.create(k('a'), b('a'), HOUR);
    await store.rotate(k('a'), 1, HOUR, k('b'), b('b'), HOUR, aliasOf('F'));
    await store.rotate(k('b'), 1, HOUR, k('c'), b('c'), HOUR, aliasOf('F'));
    // The script alone, as if `c` had joined after the members were read: nothing is written.
    const io = ioredisOf(store);
    assert.equal(await io.ccRevokeFamilyDeclared(4, familyKey, rawKey('c'), rawKey('a'), rawKey('b'), HOUR), -1);
    assert.equal((await store.load(k('c'))).state, 'live');
    assert.equal((await store.load(k('b'))).state, 'renewed');
    assert.equal(await raw.scard(familyKey), 3);
    // The store reads the members and revokes them all.
    assert.equal(await store.revokeFamily('F', k('c'), HOUR), 1);
    for (const n of ['a', 'b', 'c']) assert.equal((await store.load(k(n))).state, 'revoked', n);
    assert.equal(await raw.exists(familyKey), 0);
  });

  test('createStore builds a cluster store from store.cluster, with the ACL user and password on every node', async (t) => {
    const prefix = nextPrefix();
    const nodes = cluster().nodes;
    const user = `cc${prefixes}`;
    for (const n of nodes) {
      await n.client().call('ACL', 'SETUSER', user, 'on', '>s3cret-pass', `~${prefix}*`, '+@all');
    }
    t.after(async () => {
      for (const n of nodes) await n.client().call('ACL', 'DELUSER', user);
    });
    const { logger } = captureLogger();
    const config = {
      kind: 'redis' as const,
      cluster: { nodes: seedNodes() },
      username: user,
      password: 's3cret-pass',
      prefix,
      timeout: 5000,
      connectTimeout: 10_000,
      maxSessions: 10,
      replicas: 0,
      replicaTimeout: 200,
    };
    const store = createStore(config, { clock: Date.now, logger });
    t.after(() => store.close());
    await store.start();
    const keys = Array.from({ length: 30 }, () => keyIn(lineage(), 'k'));
    for (const k of keys) assert.equal(await store.create(k, b('x'), HOUR), true);
    assert.ok((await Promise.all(nodes.map((n) => n.client().call('DBSIZE') as Promise<number>))).every((n) => n > 0), 'every node was written through the ACL user');
    // A wrong password fails start() with the reason, never the password.
    const wrong = createStore({ ...config, password: 'not-the-pass', timeout: 250, connectTimeout: 1000 }, { clock: Date.now, logger });
    t.after(() => wrong.close());
    await assert.rejects(wrong.start(), (err: unknown) => {
      assert.ok(err instanceof StoreUnavailableError);
      assert.match(err.message, /WRONGPASS/);
      assert.doesNotMatch(err.message, /not-the-pass|s3cret/);
      return true;
    });
  });

  test('start() with no seed node answering fails fast with StoreUnavailableError naming the seed nodes, never the password', async (t) => {
    const ports = [await freePort(), await freePort()];
    const store = new RedisStore({
      target: { mode: 'cluster', nodes: ports.map((port) => ({ host: '127.0.0.1', port })), password: 'hunter2' },
      prefix: 'x:',
      timeout: 200,
      connectTimeout: 500,
      logger: captureLogger().logger,
    });
    t.after(() => store.close());
    const started = Date.now();
    await assert.rejects(store.start(), (err: unknown) => {
      assert.ok(err instanceof StoreUnavailableError);
      for (const port of ports) assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
      assert.doesNotMatch(err.message, /hunter2/);
      return true;
    });
    assert.ok(Date.now() - started < 5000, 'within about the connect timeout');
    assert.equal(store.available(), false);
    await assert.rejects(store.load(keyIn(lineage(), 'k')), StoreUnavailableError);
  });

  test('a store that is closed rejects with StoreUnavailableError; close leaves no node connection open', async (t) => {
    const { store } = await setup(t);
    const k = keyIn(lineage(), 'k');
    await store.create(k, b('x'), HOUR);
    const io = ioredisOf(store) as unknown as { nodes(role: string): Array<{ status: string }> };
    const nodes = io.nodes('all');
    assert.ok(nodes.length >= 1);
    await store.close();
    assert.equal(store.available(), false);
    await assert.rejects(store.load(k), StoreUnavailableError);
    await pollUntil(async () => nodes.every((n) => n.status === 'end'), 'every node connection ended', 5000);
  });
});

describe('RedisStore on a cluster while a slot migrates', () => {
  async function setup(t: TestContext, timeout = 5000) {
    const prefix = nextPrefix();
    const log = captureLogger();
    const store = makeStore(prefix, log.logger, timeout);
    t.after(() => store.close());
    await store.start();
    const tag = lineage();
    const slot = keySlot(`${prefix}{${tag}}s:`);
    const k = (n: string) => keyIn(tag, n);
    const rawKey = (n: string) => `${prefix}{${tag}}s:${n}`;
    const familyKey = (f: string) => `${prefix}{${tag}}f:${f}`;
    /** Starts moving the lineage's slot to another master. */
    const migrate = async () => {
      const owner = await cluster().ownerOf(slot);
      const to = cluster().nodes.find((n) => n !== owner) as ClusterNodeServer;
      const m = await cluster().beginMigration(slot, to);
      // A failing test must not leave the slot half moved for the next one.
      t.after(() => m.finish());
      return m;
    };
    return { prefix, store, ...log, tag, k, rawKey, familyKey, migrate };
  }

  /** How many TRYAGAIN answers a node gave (INFO errorstats). */
  async function tryAgains(node: ClusterNodeServer): Promise<number> {
    const m = /^errorstat_TRYAGAIN:count=(\d+)/m.exec(await node.client().info('errorstats'));
    return m ? Number(m[1]) : 0;
  }

  test('loads, updates, revokes and creates follow their key to whichever node holds it (ASK); each write applies once', async (t) => {
    const { store, k, rawKey, migrate } = await setup(t);
    for (const n of ['moved', 'stays', 'dead', 'goes']) await store.create(k(n), b(n), HOUR);
    await store.revoke(k('dead'), HOUR);
    const m = await migrate();
    await m.moveKey(rawKey('moved'), rawKey('dead'), rawKey('goes'));
    assert.deepEqual(await store.load(k('moved')), { state: 'live', version: 1, data: b('moved') });
    assert.deepEqual(await store.load(k('stays')), { state: 'live', version: 1, data: b('stays') });
    assert.equal((await store.load(k('dead'))).state, 'revoked');
    assert.deepEqual(await store.load(k('missing')), { state: 'none' });
    assert.equal(await store.update(k('moved'), 1, b('moved 2'), HOUR), 'ok');
    assert.equal(await store.update(k('stays'), 1, b('stays 2'), HOUR), 'ok');
    assert.equal(await store.update(k('dead'), 1, b('back?'), HOUR), 'gone');
    assert.equal(await store.revoke(k('goes'), HOUR), true);
    assert.equal(await store.create(k('new'), b('new'), HOUR), true);
    assert.equal(await store.create(k('moved'), b('again?'), HOUR), false);
    const replies = await m.to.client().pipeline().asking().exists(rawKey('new')).exec();
    assert.equal(replies?.[1]?.[1], 1, 'a new key of a migrating slot is made on the target');
    await m.finish();
    assert.deepEqual(await store.load(k('moved')), { state: 'live', version: 2, data: b('moved 2') });
    assert.deepEqual(await store.load(k('stays')), { state: 'live', version: 2, data: b('stays 2') });
    assert.equal((await store.load(k('dead'))).state, 'revoked');
    assert.equal((await store.load(k('goes'))).state, 'revoked');
    assert.deepEqual(await store.load(k('new')), { state: 'live', version: 1, data: b('new') });
  });

  test('rotate and revokeFamily wait (TRYAGAIN) while their keys are split between the nodes, and apply once when the slot has moved', async (t) => {
    const { store, k, rawKey, familyKey, migrate } = await setup(t);
    await store.create(k('a'), b('a'), HOUR);
    assert.equal(await store.rotate(k('a'), 1, HOUR, k('b'), b('b'), HOUR, aliasOf('F')), 'ok');
    await store.create(k('c'), b('c'), HOUR);
    const m = await migrate();
    await m.moveKey(rawKey('a'));
    const before = await tryAgains(m.from);
    const rotated = store.rotate(k('c'), 1, HOUR, k('d'), b('d'), HOUR);
    const revoked = store.revokeFamily('F', k('b'), HOUR);
    await pollUntil(async () => (await tryAgains(m.from)) >= before + 2, 'both writes were refused with TRYAGAIN', 10_000);
    await m.finish();
    assert.equal(await rotated, 'ok');
    assert.equal(await revoked, 1);
    for (const n of ['a', 'b', 'c']) assert.equal((await store.load(k(n))).state, 'revoked', n);
    assert.deepEqual(await store.load(k('d')), { state: 'live', version: 1, data: b('d') });
    assert.equal(await cluster().client().exists(familyKey('F')), 0);
  });

  test('revokeFamily of a family split by the migration revokes the live member left behind (its members are declared)', async (t) => {
    const { store, k, rawKey, familyKey, migrate } = await setup(t);
    await store.create(k('a'), b('a'), HOUR);
    // a: an alias now; b: the family's live id.
    assert.equal(await store.rotate(k('a'), 1, HOUR, k('b'), b('b'), HOUR, aliasOf('F', { graceUntil: Date.now() + HOUR })), 'ok');
    const m = await migrate();
    // The family set and the id named by the logout move first; the live member stays behind.
    // A script that read its members undeclared would run on the target (both declared keys
    // there) and find b missing: b would outlive the logout.
    await m.moveKey(familyKey('F'), rawKey('a'));
    const before = await tryAgains(m.from);
    let settled = false;
    const revoked = store.revokeFamily('F', k('a'), HOUR).finally(() => (settled = true));
    await pollUntil(async () => settled || (await tryAgains(m.from)) > before, 'the revocation was refused with TRYAGAIN (or done)', 10_000);
    assert.equal(await m.from.client().exists(rawKey('b')), 1, 'b is still on the source');
    await m.finish();
    assert.equal(await revoked, 1, 'the live member b');
    assert.equal((await store.load(k('b'))).state, 'revoked');
    assert.equal((await store.load(k('a'))).state, 'revoked');
  });

  test('a write that timed out while its slot migrated is never sent afterwards (it would apply after the caller was told it failed)', async (t) => {
    const { store, k, logs, migrate } = await setup(t, 300);
    await store.create(k('c'), b('c'), HOUR);
    const m = await migrate();
    // c on the source, d nowhere: the source refuses the rotate (TRYAGAIN) until the slot moved.
    await assert.rejects(store.rotate(k('c'), 1, HOUR, k('d'), b('d'), HOUR), (err: unknown) => err instanceof StoreUnavailableError && /timed out/.test(err.message));
    // ioredis still holds it (a TRYAGAIN retry queued, or an answer on its way): it is dropped.
    const dropped = logs.waitFor((l) => /was not sent again/.test(l.msg ?? ''));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('the timed-out rotate was neither dropped nor abandoned')), 10_000);
    });
    await Promise.race([dropped, deadline]).finally(() => clearTimeout(timer));
    await m.finish();
    // With the slot moved, a resend would now succeed: the rotate must not have happened.
    assert.deepEqual(await store.load(k('c')), { state: 'live', version: 1, data: b('c') });
    assert.deepEqual(await store.load(k('d')), { state: 'none' });
    assert.equal(await store.rotate(k('c'), 1, HOUR, k('d'), b('d'), HOUR), 'ok', 'the store works on');
  });
});
