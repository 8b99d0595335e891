// Starts a real redis-server for one test suite, on a free port, in a throwaway directory.
// Readiness is the "Ready to accept connections" line on its stdout: an event, never a sleep.
// Nothing global is registered: the suite calls stop() (idempotent) from its `after` hook.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { Redis } from 'ioredis';

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Shuts the server down (resuming it first if paused) and removes its directory. Idempotent. */
  stop(): Promise<void>;
  /** SIGSTOP: the process freezes, its sockets stay open. Resolves once the kernel reports it stopped. */
  pause(): Promise<void>;
  /** SIGCONT. */
  resume(): Promise<void>;
  /** SIGKILL: stops it abruptly, like a crash. Resolves once it has exited. */
  kill(): Promise<void>;
  /** Starts it again on the same port (killing it first if still running); resolves when ready. */
  restart(): Promise<void>;
  /** A plain ioredis client for raw inspection (one per server, closed by stop()). */
  client(): Redis;
}

const READY_LINE = 'Ready to accept connections';
const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;
const MAX_PORT_ATTEMPTS = 5;

/** Asks the OS for a free port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}

export type Launch = { ok: true; proc: ChildProcess } | { ok: false; addressInUse: boolean; output: string };

/** Spawns redis-server and waits for its ready line, its exit, or the deadline. */
function launch(port: number, dir: string, aof = false): Promise<Launch> {
  // With AOF every write is fsynced before Redis answers it: a kill -9 loses nothing acknowledged.
  const persistence = aof ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no'];
  return launchRedisServer(['--port', String(port), '--bind', '127.0.0.1', '--save', '', ...persistence, '--dir', dir, '--daemonize', 'no']);
}

/** Spawns `redis-server ARGS` and waits for its ready line, its exit, or the deadline. */
export function launchRedisServer(args: string[]): Promise<Launch> {
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
      // Keep only the tail, and keep reading forever: a full pipe would block redis.
      output = (output + chunk.toString('utf8')).slice(-20_000);
      if (!settled && output.includes(READY_LINE)) settle({ ok: true, proc });
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

export function exited(proc: ChildProcess): boolean {
  return proc.exitCode !== null || proc.signalCode !== null;
}

export function waitExit(proc: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (exited(proc)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      proc.off('exit', onExit);
      resolve(false);
    }, timeoutMs);
    const onExit = () => {
      clearTimeout(timer);
      resolve(true);
    };
    proc.once('exit', onExit);
  });
}

/** Polls /proc/<pid>/stat until `want(state)` holds (Linux); elsewhere resolves at once. */
export async function waitProcState(pid: number, want: (state: string) => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let stat: string;
    try {
      stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    } catch {
      return; // no procfs
    }
    // Format: "pid (comm) S ..." — comm may contain spaces, the state follows the last ')'.
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (want(state)) return;
    if (Date.now() > deadline) throw new Error(`redis-server ${pid}: process state ${state} after ${timeoutMs}ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export interface RedisOptions {
  /** appendonly yes, appendfsync always: a restart after kill() keeps every acknowledged write. */
  aof?: boolean;
}

export async function startRedis(options: RedisOptions = {}): Promise<RedisServer> {
  const aof = options.aof ?? false;
  const dir = await mkdtemp(join(tmpdir(), 'coatcheck-redis-'));
  let proc: ChildProcess | undefined;
  let port = 0;
  let lastOutput = '';
  for (let attempt = 0; attempt < MAX_PORT_ATTEMPTS && !proc; attempt++) {
    port = await freePort();
    const r = await launch(port, dir, aof);
    if (r.ok) proc = r.proc;
    else {
      lastOutput = r.output;
      if (!r.addressInUse) break;
    }
  }
  if (!proc) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(`redis-server did not start:\n${lastOutput}`);
  }

  const url = `redis://127.0.0.1:${port}`;
  let paused = false;
  let raw: Redis | undefined;
  let stopping: Promise<void> | undefined;

  const killNow = async (): Promise<void> => {
    const p = proc;
    if (!p || exited(p)) return;
    p.kill('SIGKILL');
    if (!(await waitExit(p, STOP_TIMEOUT_MS))) throw new Error(`redis-server ${p.pid} did not die after SIGKILL`);
    paused = false;
  };

  const server: RedisServer = {
    port,
    url,
    async pause() {
      const p = proc;
      if (!p || exited(p) || p.pid === undefined) throw new Error('redis-server is not running');
      p.kill('SIGSTOP');
      paused = true;
      await waitProcState(p.pid, (s) => s === 'T' || s === 't', STOP_TIMEOUT_MS);
    },
    async resume() {
      const p = proc;
      if (!p || exited(p) || p.pid === undefined) return;
      p.kill('SIGCONT');
      paused = false;
      await waitProcState(p.pid, (s) => s !== 'T' && s !== 't', STOP_TIMEOUT_MS);
    },
    kill: killNow,
    async restart() {
      if (stopping) throw new Error('redis-server was stopped');
      await killNow();
      const deadline = Date.now() + START_TIMEOUT_MS;
      for (;;) {
        const r = await launch(port, dir, aof);
        if (r.ok) {
          proc = r.proc;
          return;
        }
        // The old listening socket can take a moment to go; retry the same port for a bounded time.
        if (!r.addressInUse || Date.now() > deadline) throw new Error(`redis-server did not restart on port ${port}:\n${r.output}`);
        await new Promise((res) => setTimeout(res, 50));
      }
    },
    client() {
      if (!raw) {
        raw = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1, retryStrategy: (n) => Math.min(n * 50, 500) });
        raw.on('error', () => {
          // Expected while the server is paused or killed; inspection calls report their own errors.
        });
      }
      return raw;
    },
    stop() {
      stopping ??= (async () => {
        raw?.disconnect();
        raw = undefined;
        const p = proc;
        if (p && !exited(p)) {
          if (paused) p.kill('SIGCONT');
          paused = false;
          p.kill('SIGTERM');
          if (!(await waitExit(p, STOP_TIMEOUT_MS))) await killNow();
        }
        await rm(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
  return server;
}

/**
 * Starts one redis-server for the enclosing suite (node:test `before`/`after`) and returns an
 * accessor for it.
 */
export function redisForSuite(): () => RedisServer {
  let server: RedisServer | undefined;
  before(async () => {
    server = await startRedis();
  });
  after(() => server?.stop());
  return () => {
    if (!server) throw new Error('redis-server not started');
    return server;
  };
}
