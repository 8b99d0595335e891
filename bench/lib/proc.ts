// Child processes of the bench and what /proc says about them (Linux).
//
// Every process the bench starts is registered here, so that stopAll() (called on the normal
// path, on an error and on SIGINT/SIGTERM) stops each one, and an `exit` hook kills whatever
// is left. Output is always drained (a full pipe would block the child) and its tail kept
// for error messages.
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { Socket } from 'node:net';

export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly pid: number;
  /** The last few KB of stdout and stderr, interleaved. */
  tail(): string;
  /** Resolves with the first output line for which `pred` returns a value, or rejects on exit / deadline. */
  waitLine<T>(pred: (line: string) => T | undefined, timeoutMs: number): Promise<T>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  isRunning(): boolean;
  /** SIGTERM (or `signal`), then SIGKILL after `graceMs`. Idempotent. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

const children = new Set<Child>();
const tempDirs = new Set<string>();
let hooksInstalled = false;

/** A directory the bench made: removed by stopAll(), or at exit whatever happens. */
export function registerTempDir(dir: string): string {
  installHooks();
  tempDirs.add(dir);
  return dir;
}

function removeTempDirs(): void {
  for (const d of tempDirs) {
    try {
      rmSync(d, { recursive: true, force: true });
    } catch {
      // best effort
    }
    tempDirs.delete(d);
  }
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  // Last resort: nothing outlives the bench, even when it dies on an exception.
  process.on('exit', () => {
    for (const c of children) {
      if (c.isRunning()) {
        // Descendants too (nginx workers outlive a killed master).
        for (const pid of processTree(c.pid).reverse()) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
      }
    }
    removeTempDirs();
  });
}

/**
 * CPU placement: with `pinning` set, proxies under test run on `proxy` CPUs and everything else
 * the bench starts (load generator, upstream, Redis) on `rest`, through taskset (which execs,
 * so the pid is the program's own).
 */
export interface Pinning {
  proxy: string;
  rest: string;
}
let pinning: Pinning | undefined;
export function setPinning(p: Pinning | undefined): void {
  pinning = p;
}
export function currentPinning(): Pinning | undefined {
  return pinning;
}

export function startChild(name: string, command: string, args: string[], options: SpawnOptions & { role?: 'proxy' | 'rest' } = {}): Child {
  installHooks();
  const { role = 'rest', ...spawnOptions } = options;
  const [cmd, argv] = pinning ? ['taskset', ['-c', role === 'proxy' ? pinning.proxy : pinning.rest, command, ...args]] : [command, args];
  const proc = spawn(cmd, argv as string[], { stdio: ['ignore', 'pipe', 'pipe'], ...spawnOptions });
  let out = '';
  let partial = '';
  const lineWaiters = new Set<(line: string) => void>();
  const lines: string[] = [];
  const pushLine = (line: string) => {
    if (lines.length < 200) lines.push(line);
    for (const w of [...lineWaiters]) w(line);
  };
  const onData = (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    out = (out + text).slice(-8000);
    partial += text;
    let nl: number;
    while ((nl = partial.indexOf('\n')) !== -1) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      pushLine(line);
    }
    if (partial.length > 100_000) partial = partial.slice(-10_000);
  };
  proc.stdout?.on('data', onData);
  proc.stderr?.on('data', onData);
  let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    // 'close' comes after 'exit' once stdout and stderr are drained: a last line printed just
    // before exiting has been seen by then.
    proc.once('close', (code, signal) => {
      if (partial !== '') pushLine(partial);
      partial = '';
      exitInfo = { code, signal };
      resolve(exitInfo);
    });
    proc.once('error', (err) => {
      out += `\n[spawn error: ${err.message}]`;
      exitInfo = { code: -1, signal: null };
      resolve(exitInfo);
    });
  });
  let stopping: Promise<void> | undefined;
  const child: Child = {
    name,
    proc,
    pid: proc.pid ?? -1,
    tail: () => out,
    exited,
    isRunning: () => proc.exitCode === null && proc.signalCode === null && exitInfo === undefined,
    waitLine<T>(pred: (line: string) => T | undefined, timeoutMs: number): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        let done = false;
        const finish = (err: Error | undefined, value?: T) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          lineWaiters.delete(onLine);
          if (err) reject(err);
          else resolve(value as T);
        };
        const onLine = (line: string) => {
          const v = pred(line);
          if (v !== undefined) finish(undefined, v);
        };
        for (const l of lines) {
          const v = pred(l);
          if (v !== undefined) {
            done = true;
            resolve(v);
            return;
          }
        }
        lineWaiters.add(onLine);
        const timer = setTimeout(() => finish(new Error(`${name}: not ready within ${timeoutMs} ms\n${out}`)), timeoutMs);
        void exited.then((e) => finish(new Error(`${name} exited (code ${e.code}, signal ${e.signal}) before it was ready\n${out}`)));
      });
    },
    stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000) {
      stopping ??= (async () => {
        if (child.isRunning()) {
          const tree = processTree(child.pid).slice(1);
          proc.kill(signal);
          const t = setTimeout(() => {
            if (child.isRunning()) proc.kill('SIGKILL');
          }, graceMs);
          await exited;
          clearTimeout(t);
          // Whatever the process left behind (it should have taken its children with it).
          for (const pid of tree) {
            try {
              process.kill(pid, 'SIGKILL');
            } catch {
              // gone, as it should be
            }
          }
        }
        children.delete(child);
      })();
      return stopping;
    },
  };
  children.add(child);
  return child;
}

/** Stops every child still registered (in reverse start order), then removes the bench's directories. */
export async function stopAll(): Promise<void> {
  const list = [...children].reverse();
  for (const c of list) await c.stop();
  removeTempDirs();
}

/**
 * Runs a short command to completion; returns its stdout and stderr (trimmed), or undefined when
 * it cannot run or (unless `anyStatus`) exits non-zero. `wrk -v` prints its version and exits 1.
 */
export function commandOutput(command: string, args: string[], anyStatus = false): string | undefined {
  const r = spawnSync(command, args, { encoding: 'utf8', timeout: 10_000 });
  if (r.error || (r.status !== 0 && !anyStatus)) return undefined;
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
}

/** Is `command` on PATH? */
export function onPath(command: string): boolean {
  const r = spawnSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() !== '';
}

/** A free TCP port on 127.0.0.1 (for programs that cannot listen on port 0 and report it). */
export { freePort } from '../../test/helpers/redis-server.js';

/** Resolves once a TCP connection to 127.0.0.1:port succeeds; polls until the deadline. */
export async function waitForPort(port: number, timeoutMs: number, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = new Socket();
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => {
        s.destroy();
        resolve(false);
      });
      s.connect(port, '127.0.0.1');
    });
    if (ok) return;
    if (!alive()) throw new Error(`the process meant to listen on ${port} has exited`);
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

// ---- /proc ----

let clockTicks: number | undefined;
function ticksPerSecond(): number {
  clockTicks ??= Number(commandOutput('getconf', ['CLK_TCK']) ?? '100') || 100;
  return clockTicks;
}

/** pid and every descendant (nginx: master and workers). */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    const p = out[i] as number;
    let kids: number[] = [];
    try {
      for (const tid of readdirSync(`/proc/${p}/task`)) {
        const text = readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8').trim();
        if (text) kids = kids.concat(text.split(/\s+/).map(Number));
      }
    } catch {
      kids = [];
    }
    for (const k of kids) if (!out.includes(k)) out.push(k);
  }
  return out;
}

/** CPU time (user + system) of a process tree, in microseconds. */
export function cpuMicros(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // "pid (comm) S ppid ..." — comm may hold spaces; fields after it start at state (field 3).
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]); // utime (14), stime (15)
    } catch {
      // the process is gone: its time no longer counts
    }
  }
  return (ticks * 1_000_000) / ticksPerSecond();
}

function statusField(pid: number, field: string): number | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Busy CPU time of the whole machine (every CPU, everything but idle and iowait), in microseconds. */
export function machineBusyMicros(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] as string;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal
    const busy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
    return (busy * 1_000_000) / ticksPerSecond();
  } catch {
    return 0;
  }
}

/** Peak resident set size (VmHWM) summed over a process tree, in bytes. */
/** The current resident set size of the processes, summed (bytes). */
export function currentRss(pids: readonly number[]): number {
  let sum = 0;
  for (const pid of pids) sum += statusField(pid, 'VmRSS') ?? 0;
  return sum;
}

export function peakRss(pids: readonly number[]): number {
  let sum = 0;
  for (const pid of pids) sum += statusField(pid, 'VmHWM') ?? 0;
  return sum;
}

/** Resets the peak RSS of each process to its current RSS (Linux ≥ 4.0). Returns false where refused. */
export function resetPeakRss(pids: readonly number[]): boolean {
  let ok = true;
  for (const pid of pids) {
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, '5');
    } catch {
      ok = false;
    }
  }
  return ok;
}
