// A throwaway 3-master Redis Cluster for the bench: 127.0.0.1, free ports, no persistence, one
// directory; `redis-cli --cluster create` assigns the 16 384 slots evenly. Ready when every node
// reports cluster_state:ok.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { Redis } from 'ioredis';
import { freePort, registerTempDir, startChild, type Child } from './proc.js';

export interface BenchCluster {
  /** "127.0.0.1:port" of every master. */
  readonly nodes: string[];
  readonly children: Child[];
  stop(): Promise<void>;
}

const MASTERS = 3;
const READY_TIMEOUT_MS = 30_000;

export async function startRedisCluster(): Promise<BenchCluster> {
  const dir = registerTempDir(await mkdtemp(join(tmpdir(), 'coatcheck-bench-cluster-')));
  const children: Child[] = [];
  const ports: number[] = [];
  const stop = async () => {
    for (const c of children) await c.stop('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < MASTERS; i++) {
      const port = await freePort();
      const child = startChild(`redis-cluster-${i + 1}`, 'redis-server', [
        '--port', String(port),
        '--bind', '127.0.0.1',
        '--cluster-enabled', 'yes',
        '--cluster-config-file', join(dir, `nodes-${port}.conf`),
        '--cluster-node-timeout', '2000',
        '--save', '',
        '--appendonly', 'no',
        '--dir', dir,
        '--daemonize', 'no',
      ]);
      children.push(child);
      await child.waitLine((l) => (l.includes('Ready to accept connections') ? true : undefined), 15_000);
      ports.push(port);
    }
    const nodes = ports.map((p) => `127.0.0.1:${p}`);
    const created = spawnSync('redis-cli', ['--cluster', 'create', ...nodes, '--cluster-yes'], { encoding: 'utf8', timeout: READY_TIMEOUT_MS });
    if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stdout}${created.stderr}`);
    await waitClusterOk(ports);
    return { nodes, children, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Polls CLUSTER INFO on every node until each says cluster_state:ok (the slots are agreed). */
async function waitClusterOk(ports: number[]): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  const clients = ports.map((port) => new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1, lazyConnect: true }));
  for (const c of clients) c.on('error', () => undefined);
  try {
    for (;;) {
      const infos = await Promise.all(clients.map((c) => c.call('CLUSTER', 'INFO') as Promise<string>));
      if (infos.every((i) => i.includes('cluster_state:ok'))) return;
      if (Date.now() > deadline) throw new Error(`cluster not ok within ${READY_TIMEOUT_MS} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    for (const c of clients) c.disconnect();
  }
}
