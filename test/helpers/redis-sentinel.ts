// A Redis Sentinel deployment for one test suite, on loopback and free ports: a master, one
// replica (--replicaof) and three sentinels (quorum 2) watching the master as "mymaster".
// Readiness is polled from real state, never slept for: the replica's link to the master is up
// (INFO replication) and every sentinel knows the replica and the two other sentinels.
//
// The data nodes run with AOF on (appendonly yes, appendfsync everysec), as a production
// deployment would. everysec rather than always: the tests kill processes (SIGKILL), not
// machines, and what Redis has write()n to its AOF survives a process kill in the page cache
// whatever the fsync policy; always would only slow every write on a small test machine. (On
// a machine crash everysec may lose the last second; WAIT does not cover disk either, see
// docs/security.md.) The initial sync is diskless with no delay (the default delay is 5 s).
// The sentinels need no `resolve-hostnames` and no `announce-ip`/`announce-port`: every node
// listens on 127.0.0.1 and is seen, and announced, at the address clients use. Failures are
// detected after 1 s (down-after-milliseconds) and a failover may take 5 s (failover-timeout).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { exited, freePort, waitExit, waitProcState } from './redis-server.js';

export const MASTER_NAME = 'mymaster';

const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;
const MAX_PORT_ATTEMPTS = 5;
const POLL_MS = 25;
const DATA_READY = 'Ready to accept connections';
const SENTINEL_READY = '+monitor master';

/** One redis-server process (a data node or a sentinel). */
export interface RedisProcess {
  readonly port: number;
  readonly pid: number | undefined;
  /** SIGSTOP: the process freezes, its sockets stay open. Resolves once the kernel reports it stopped. */
  pause(): Promise<void>;
  /** SIGCONT; resolves once it runs again. */
  resume(): Promise<void>;
  /** SIGKILL, like a crash; resolves once it has exited. */
  kill(): Promise<void>;
  /** Running (not exited)? */
  alive(): boolean;
  /** The last of what it printed (for failure messages). */
  output(): string;
}

export interface SentinelDeployment {
  readonly name: string;
  /** The node that was master at start (it may not be any more). */
  readonly master: RedisProcess;
  /** The node that was the replica at start. */
  readonly replica: RedisProcess;
  readonly sentinels: readonly RedisProcess[];
  /** The sentinels as the `store.sentinel.nodes` config wants them. */
  sentinelNodes(): string[];
  /** A command against a data node or sentinel by port (a short-lived connection; rejects when it does not answer in time). */
  command(port: number, args: (string | number)[], timeoutMs?: number): Promise<unknown>;
  /** The port every answering sentinel names as the master, once they agree on one that is not `notPort` and that node says role:master. */
  waitForMaster(notPort: number | undefined, timeoutMs: number): Promise<number>;
  /** Polls until the master's replication offset is acknowledged by the replica (it holds everything written so far). */
  waitReplicated(masterPort: number, timeoutMs: number): Promise<void>;
  /** Stops every process (resuming paused ones first) and removes their directories. Idempotent. */
  stop(): Promise<void>;
}




type Launch = { ok: true; proc: ChildProcess; output: () => string } | { ok: false; addressInUse: boolean; output: string };

/**
 * Spawns redis-server with `args` and waits for its ready line (a data node's "Ready to accept
 * connections", a sentinel's "+monitor master"), its exit, or the deadline.
 */
function launch(args: string[], readyLine: string): Promise<Launch> {
  return new Promise((resolve) => {
    const proc = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let settled = false;
    const settle = (result: Launch) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      proc.off('exit', onExit);
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      // Keep reading forever (a full pipe would block redis), keep only the tail.
      output = (output + chunk.toString('utf8')).slice(-20_000);
      if (!settled && output.includes(readyLine)) settle({ ok: true, proc, output: () => output });
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
      output += `\n[redis-server exited: code ${code}, signal ${signal}]`;
      settle({ ok: false, addressInUse: /address already in use/i.test(output), output });
    };
    proc.stdout?.on('data', onData);
    proc.stderr?.on('data', onData);
    proc.once('exit', onExit);
    proc.once('error', (err) => {
      output += `\n[spawn error: ${err.message}]`;
      settle({ ok: false, addressInUse: false, output });
    });
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      settle({ ok: false, addressInUse: false, output: `${output}\n[not ready within ${START_TIMEOUT_MS}ms]` });
    }, START_TIMEOUT_MS);
  });
}

/** Starts a process on a free port; `args(port)` builds its arguments (after writing any file it needs). */
async function startProcess(readyLine: string, args: (port: number) => Promise<string[]>): Promise<RedisProcess> {
  let last = '';
  for (let attempt = 0; attempt < MAX_PORT_ATTEMPTS; attempt++) {
    const port = await freePort();
    const r = await launch(await args(port), readyLine);
    if (r.ok) return handle(port, r.proc, r.output);
    last = r.output;
    if (!r.addressInUse) break;
  }
  throw new Error(`redis-server did not start:\n${last}`);
}

function handle(port: number, proc: ChildProcess, output: () => string): RedisProcess {
  return {
    port,
    pid: proc.pid,
    alive: () => !exited(proc),
    output,
    async pause() {
      if (exited(proc) || proc.pid === undefined) throw new Error(`redis-server on ${port} is not running`);
      proc.kill('SIGSTOP');
      await waitProcState(proc.pid, (s) => s === 'T' || s === 't', STOP_TIMEOUT_MS);
    },
    async resume() {
      if (exited(proc) || proc.pid === undefined) return;
      proc.kill('SIGCONT');
      await waitProcState(proc.pid, (s) => s !== 'T' && s !== 't', STOP_TIMEOUT_MS);
    },
    async kill() {
      if (exited(proc)) return;
      proc.kill('SIGKILL');
      if (!(await waitExit(proc, STOP_TIMEOUT_MS))) throw new Error(`redis-server ${proc.pid} did not die after SIGKILL`);
    },
  };
}

async function stopProcess(p: RedisProcess | undefined): Promise<void> {
  if (!p || !p.alive() || p.pid === undefined) return;
  try {
    process.kill(p.pid, 'SIGCONT');
    process.kill(p.pid, 'SIGTERM');
  } catch {
    return; // gone already
  }
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  while (p.alive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, POLL_MS));
  if (p.alive()) await p.kill();
}

/** One command on a short-lived connection: no retries, no offline queue, bounded. */
export async function redisCommand(port: number, args: (string | number)[], timeoutMs = 1000): Promise<unknown> {
  const client = new Redis({
    host: '127.0.0.1',
    port,
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    enableReadyCheck: false,
  });
  client.on('error', () => {
    // Reported by the command's own rejection.
  });
  try {
    await client.connect();
    const [cmd, ...rest] = args;
    return await client.call(String(cmd), ...rest.map(String));
  } finally {
    client.disconnect();
  }
}

/** `INFO section` as a map of its fields. */
export async function info(port: number, section: string): Promise<Map<string, string>> {
  const text = String(await redisCommand(port, ['INFO', section]));
  const out = new Map<string, string>();
  for (const line of text.split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0) out.set(line.slice(0, i), line.slice(i + 1));
  }
  return out;
}

/** Retries `fn` until it returns a value other than undefined (errors count as not yet); fails after `timeoutMs`. */
export async function pollUntil<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs}ms${last ? ` (last error: ${String(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** Pairs of a Redis "flat" reply (field, value, field, value…) as an object. */
function pairs(reply: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  const a = reply as string[];
  for (let i = 0; i + 1 < a.length; i += 2) out[a[i] as string] = a[i + 1] as string;
  return out;
}

export async function startSentinelDeployment(): Promise<SentinelDeployment> {
  const dirs: string[] = [];
  const procs: RedisProcess[] = [];
  const newDir = async () => {
    const d = await mkdtemp(join(tmpdir(), 'coatcheck-sentinel-'));
    dirs.push(d);
    return d;
  };
  const dataArgs = (dir: string, port: number, replicaOf?: number): string[] => [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--dir', dir,
    '--daemonize', 'no',
    '--save', '',
    '--appendonly', 'yes',
    '--appendfsync', 'everysec',
    '--repl-diskless-sync', 'yes',
    '--repl-diskless-sync-delay', '0',
    ...(replicaOf !== undefined ? ['--replicaof', '127.0.0.1', String(replicaOf)] : []),
  ];
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      await Promise.all(procs.map((p) => stopProcess(p)));
      await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
    })();
    return stopping;
  };

  try {
    const masterDir = await newDir();
    const master = await startProcess(DATA_READY, async (port) => dataArgs(masterDir, port));
    procs.push(master);
    const replicaDir = await newDir();
    const replica = await startProcess(DATA_READY, async (port) => dataArgs(replicaDir, port, master.port));
    procs.push(replica);
    await pollUntil('replica link up', async () => ((await info(replica.port, 'replication')).get('master_link_status') === 'up' ? true : undefined), START_TIMEOUT_MS);

    // Each sentinel has a config file of its own: sentinels rewrite it (their id, what they learn).
    const sentinels = await Promise.all(
      [0, 1, 2].map(async () => {
        const dir = await newDir();
        const file = join(dir, 'sentinel.conf');
        return startProcess(SENTINEL_READY, async (port) => {
          await writeFile(
            file,
            [
              `port ${port}`,
              'bind 127.0.0.1',
              'daemonize no',
              `dir ${dir}`,
              `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${master.port} 2`,
              `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
              `sentinel failover-timeout ${MASTER_NAME} 5000`,
              `sentinel parallel-syncs ${MASTER_NAME} 1`,
              '',
            ].join('\n'),
          );
          return [file, '--sentinel'];
        });
      }),
    );
    procs.push(...sentinels);

    // Every sentinel knows the replica (linked, not down) and both other sentinels.
    for (const s of sentinels) {
      await pollUntil(
        `sentinel ${s.port} knows the replica and the other sentinels`,
        async () => {
          const replicas = (await redisCommand(s.port, ['SENTINEL', 'REPLICAS', MASTER_NAME])) as unknown[];
          const others = (await redisCommand(s.port, ['SENTINEL', 'SENTINELS', MASTER_NAME])) as unknown[];
          const r = replicas.map(pairs).find((x) => Number(x.port) === replica.port);
          const ok = r && !/s_down|o_down|disconnected/.test(r.flags ?? '') && r['master-link-status'] === 'ok' && others.length === 2;
          return ok ? true : undefined;
        },
        START_TIMEOUT_MS,
      );
    }

    const deployment: SentinelDeployment = {
      name: MASTER_NAME,
      master,
      replica,
      sentinels,
      sentinelNodes: () => sentinels.map((s) => `127.0.0.1:${s.port}`),
      command: (port, args, timeoutMs) => redisCommand(port, args, timeoutMs),
      async waitForMaster(notPort, timeoutMs) {
        return pollUntil(
          `sentinels agree on a new master (not ${notPort})`,
          async () => {
            let agreed: number | undefined;
            for (const s of sentinels) {
              if (!s.alive()) continue;
              const addr = (await redisCommand(s.port, ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME])) as [string, string] | null;
              const port = addr ? Number(addr[1]) : undefined;
              if (port === undefined || port === notPort || (agreed !== undefined && port !== agreed)) return undefined;
              agreed = port;
            }
            if (agreed === undefined) return undefined;
            return (await info(agreed, 'replication')).get('role') === 'master' ? agreed : undefined;
          },
          timeoutMs,
        );
      },
      async waitReplicated(masterPort, timeoutMs) {
        await pollUntil(
          'replica acknowledged the master offset',
          async () => {
            const i = await info(masterPort, 'replication');
            const offset = Number(i.get('master_repl_offset'));
            const slave = i.get('slave0') ?? '';
            const acked = Number(/offset=(\d+)/.exec(slave)?.[1] ?? -1);
            return acked >= offset ? true : undefined;
          },
          timeoutMs,
        );
      },
      stop,
    };
    return deployment;
  } catch (err) {
    await stop();
    throw err;
  }
}
