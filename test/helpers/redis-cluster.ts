// Starts a real Redis Cluster of three masters for one test suite (optionally with a replica
// each): redis-server processes on free ports in one throwaway directory, joined by `redis-cli
// --cluster create`. Readiness is each server's "Ready to accept connections" line, then CLUSTER
// INFO saying cluster_state:ok, every slot assigned and every node known on every node, and each
// replica's link to its master up: events and polled real state, never a sleep. Nothing global is
// registered: the suite calls stop() (idempotent) from its `after` hook.
//
// Each node gets a second free port for its cluster bus (`--cluster-port`, Redis 7): the default
// bus port (port + 10000) may be taken, or past 65535 for an ephemeral port.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { Cluster, Redis } from 'ioredis';
import { exited, freePort, launchRedisServer, waitExit, type Launch } from './redis-server.js';

export interface ClusterNodeServer {
  readonly port: number;
  /** "127.0.0.1:<port>" */
  readonly address: string;
  /** A plain client of this node alone (no redirections followed), for CLUSTER commands and raw reads. */
  client(): Redis;
  /** Sends the server process a signal (SIGSTOP to freeze it, SIGCONT, SIGKILL). */
  signal(signal: NodeJS.Signals): void;
}

export interface ClusterReplicaServer extends ClusterNodeServer {
  /** The master it was made a replica of when the cluster was created. */
  readonly master: ClusterNodeServer;
}

export interface RedisClusterOptions {
  /** Replicas per master (default 0). */
  replicas?: 0 | 1;
}

export interface RedisCluster {
  /** The three masters (as created; a failover may promote a replica since). */
  readonly nodes: readonly ClusterNodeServer[];
  /** The replicas, one per master with `replicas: 1`. */
  readonly replicas: readonly ClusterReplicaServer[];
  /** The nodes as the store's config names them: "127.0.0.1:<port>". */
  readonly seeds: string[];
  /** A cluster client (redirections followed) for raw inspection; closed by stop(). */
  client(): Cluster;
  /** The node that serves `slot` now, as `node`'s slot table says (default: the first node); a promoted replica too. */
  ownerOf(slot: number, node?: ClusterNodeServer): Promise<ClusterNodeServer>;
  /**
   * Starts moving `slot` to `to`, as `redis-cli --cluster reshard` does, step by step: the
   * target IMPORTING, the source MIGRATING. The keys move with moveKeys(); finish() hands the
   * slot over on every node and waits until every node agrees.
   */
  beginMigration(slot: number, to: ClusterNodeServer): Promise<SlotMigration>;
  /** SIGTERMs every node and removes the directory. Idempotent. */
  stop(): Promise<void>;
}

export interface SlotMigration {
  readonly from: ClusterNodeServer;
  readonly to: ClusterNodeServer;
  /** MIGRATEs up to `count` keys of the slot from the source to the target; how many it moved. */
  moveKeys(count?: number): Promise<number>;
  /** MIGRATEs these keys (of the slot, on the source) to the target. */
  moveKey(...keys: string[]): Promise<void>;
  /** Moves the keys left, then CLUSTER SETSLOT <slot> NODE <target> on the target, the source and the rest; waits until every node's table says so. */
  finish(): Promise<void>;
}

const STOP_TIMEOUT_MS = 5_000;
const CLUSTER_TIMEOUT_MS = 30_000;
const MAX_PORT_ATTEMPTS = 5;
const POLL_MS = 20;

function launchNode(port: number, busPort: number, dir: string): Promise<Launch> {
  return launchRedisServer([
    '--port', String(port),
      '--cluster-enabled', 'yes',
      '--cluster-port', String(busPort),
      '--cluster-config-file', `nodes-${port}.conf`,
      '--cluster-node-timeout', '2000',
      '--appendonly', 'no',
      '--save', '',
      '--dir', dir,
      '--bind', '127.0.0.1',
      '--daemonize', 'no',
  ]);
}

/** Runs redis-cli to completion; rejects with its output when it fails. */
function redisCli(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const proc = spawn('redis-cli', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    proc.stdout?.on('data', (c: Buffer) => (output += c.toString('utf8')));
    proc.stderr?.on('data', (c: Buffer) => (output += c.toString('utf8')));
    proc.once('error', (err) => reject(new Error(`redis-cli: ${err.message}`)));
    proc.once('exit', (code) => (code === 0 ? resolve(output) : reject(new Error(`redis-cli ${args.join(' ')} exited ${code}:\n${output}`))));
  });
}

/** Polls `check` until it returns true; throws `what` after `timeoutMs`. */
export async function pollUntil(check: () => Promise<boolean>, what: string, timeoutMs = CLUSTER_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting until ${what}`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

function infoField(info: string, field: string): string | undefined {
  return new RegExp(`^${field}:(\\S+)`, 'm').exec(info)?.[1];
}

interface Running {
  port: number;
  proc: ChildProcess;
  raw?: Redis;
}

export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisCluster> {
  const replicasPerMaster = options.replicas ?? 0;
  const total = 3 * (1 + replicasPerMaster);
  const dir = await mkdtemp(join(tmpdir(), 'coatcheck-cluster-'));
  const running: Running[] = [];
  let inspector: Cluster | undefined;
  let stopping: Promise<void> | undefined;

  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      inspector?.disconnect();
      for (const r of running) r.raw?.disconnect();
      await Promise.all(
        running.map(async ({ proc }) => {
          if (exited(proc)) return;
          proc.kill('SIGTERM');
          if (!(await waitExit(proc, STOP_TIMEOUT_MS))) {
            proc.kill('SIGKILL');
            await waitExit(proc, STOP_TIMEOUT_MS);
          }
        }),
      );
      await rm(dir, { recursive: true, force: true });
    })();
    return stopping;
  };

  try {
    for (let i = 0; i < total; i++) {
      let started: Running | undefined;
      let lastOutput = '';
      for (let attempt = 0; attempt < MAX_PORT_ATTEMPTS && !started; attempt++) {
        const port = await freePort();
        const busPort = await freePort();
        if (busPort === port) continue;
        const r = await launchNode(port, busPort, dir);
        if (r.ok) started = { port, proc: r.proc };
        else {
          lastOutput = r.output;
          if (!r.addressInUse) break;
        }
      }
      if (!started) throw new Error(`redis-server (cluster node ${i + 1}) did not start:\n${lastOutput}`);
      running.push(started);
    }
    await redisCli(['--cluster', 'create', ...running.map((r) => `127.0.0.1:${r.port}`), '--cluster-replicas', String(replicasPerMaster), '--cluster-yes']);
  } catch (err) {
    await stop();
    throw err;
  }

  const all: ClusterNodeServer[] = running.map((r) => ({
    port: r.port,
    address: `127.0.0.1:${r.port}`,
    client() {
      if (!r.raw) {
        r.raw = new Redis({ host: '127.0.0.1', port: r.port, maxRetriesPerRequest: 1, retryStrategy: (n) => Math.min(n * 50, 500) });
        r.raw.on('error', () => {
          // Expected while a node is stopped; inspection calls report their own errors.
        });
      }
      return r.raw;
    },
    signal(sig) {
      if (!exited(r.proc)) r.proc.kill(sig);
    },
  }));
  // Which node redis-cli made a master, and which a replica of which (ROLE).
  const nodes: ClusterNodeServer[] = [];
  const replicas: ClusterReplicaServer[] = [];
  /** Reads every node's ROLE; true once there are 3 masters and each replica names one of them. */
  const readRoles = async (): Promise<boolean> => {
    const roles = await Promise.all(all.map(async (node) => ({ node, role: (await node.client().call('ROLE')) as unknown[] })));
    nodes.length = 0;
    replicas.length = 0;
    for (const { node, role } of roles) if (role[0] === 'master') nodes.push(node);
    for (const { node, role } of roles) {
      const master = role[0] === 'slave' ? nodes.find((n) => n.port === Number(role[2])) : undefined;
      if (master) replicas.push({ ...node, master });
    }
    return nodes.length === 3 && replicas.length === 3 * replicasPerMaster;
  };
  try {
    await pollUntil(readRoles, `3 masters and ${3 * replicasPerMaster} replicas (ROLE)`);
  } catch (err) {
    await stop();
    throw err;
  }
  const first = nodes[0] as ClusterNodeServer;

  /** This node's own id. */
  const idOf = async (node: ClusterNodeServer): Promise<string> => String(await node.client().call('CLUSTER', 'MYID'));

  /** The port that `node`'s slot table gives `slot` to. */
  const ownerPort = async (slot: number, node: ClusterNodeServer): Promise<number | undefined> => {
    const ranges = (await node.client().call('CLUSTER', 'SLOTS')) as Array<[number, number, [string, number, ...unknown[]], ...unknown[]]>;
    for (const [lo, hi, master] of ranges) if (slot >= lo && slot <= hi) return Number(master[1]);
    return undefined;
  };

  const cluster: RedisCluster = {
    nodes,
    replicas,
    seeds: nodes.map((n) => n.address),
    client() {
      if (!inspector) {
        inspector = new Cluster([{ host: '127.0.0.1', port: first.port }], { redisOptions: { maxRetriesPerRequest: 1 } });
        inspector.on('error', () => {
          // Reported by the calls that fail.
        });
      }
      return inspector;
    },
    async ownerOf(slot, node = first) {
      const port = await ownerPort(slot, node);
      const owner = all.find((n) => n.port === port);
      if (!owner) throw new Error(`slot ${slot} has no owner among the cluster's nodes`);
      return owner;
    },
    async beginMigration(slot, to) {
      const from = await cluster.ownerOf(slot);
      if (from === to) throw new Error(`slot ${slot} is on ${to.address} already`);
      const [fromId, toId] = await Promise.all([idOf(from), idOf(to)]);
      // The order redis-cli uses: the target imports before the source starts redirecting.
      await to.client().call('CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', fromId);
      await from.client().call('CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', toId);
      const moveKey = async (...keys: string[]): Promise<void> => {
        await from.client().call('MIGRATE', '127.0.0.1', String(to.port), '', '0', '5000', 'KEYS', ...keys);
      };
      const moveKeys = async (count = 10): Promise<number> => {
        const keys = (await from.client().call('CLUSTER', 'GETKEYSINSLOT', String(slot), String(count))) as string[];
        if (keys.length > 0) await moveKey(...keys);
        return keys.length;
      };
      return {
        from,
        to,
        moveKeys,
        moveKey,
        async finish() {
          while ((await moveKeys(100)) > 0) {
            // until the slot is empty on the source
          }
          for (const node of [to, from, ...nodes.filter((n) => n !== to && n !== from)]) {
            await node.client().call('CLUSTER', 'SETSLOT', String(slot), 'NODE', toId);
          }
          await pollUntil(async () => (await Promise.all(nodes.map((n) => ownerPort(slot, n)))).every((p) => p === to.port), `every node gives slot ${slot} to ${to.address}`);
        },
      };
    },
    stop,
  };

  try {
    await pollUntil(async () => {
      const infos = await Promise.all(all.map((n) => n.client().call('CLUSTER', 'INFO') as Promise<string>));
      const links = await Promise.all(replicas.map((n) => n.client().info('replication')));
      return (
        infos.every((info) => infoField(info, 'cluster_state') === 'ok' && infoField(info, 'cluster_slots_assigned') === '16384' && infoField(info, 'cluster_known_nodes') === String(total)) &&
        links.every((info) => infoField(info, 'master_link_status') === 'up')
      );
    }, 'cluster_state:ok on every node, every replica linked');
  } catch (err) {
    await stop();
    throw err;
  }
  return cluster;
}

/** Starts one cluster for the enclosing suite (node:test `before`/`after`) and returns an accessor for it. */
export function redisClusterForSuite(options: RedisClusterOptions = {}): () => RedisCluster {
  let cluster: RedisCluster | undefined;
  before(async () => {
    cluster = await startRedisCluster(options);
  });
  after(() => cluster?.stop());
  return () => {
    if (!cluster) throw new Error('redis cluster not started');
    return cluster;
  };
}
