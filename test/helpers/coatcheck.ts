// Starts coatcheck in-process on 127.0.0.1 port 0 with a test configuration, capturing its logs.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { createCoatcheck, type Coatcheck } from '../../src/app.js';
import { configSchema, type Config, type ConfigInput } from '../../src/config/schema.js';
import type { FakeClock } from './clock.js';
import { captureLogger, LogCapture } from './logs.js';

export const TEST_SECRET = 'test-secret-0123456789-abcdefghijklmnopqrstuvwxyz';
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export interface Harness {
  readonly port: number;
  /** The admin listener's port, when `admin.listen` is set. */
  readonly adminPort: number | undefined;
  readonly app: Coatcheck;
  readonly config: Config;
  readonly logs: LogCapture;
  close(): Promise<void>;
}

function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' && !Array.isArray(b)
        ? merge(b as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

/**
 * The logout and login rules most suites use: a test that relies on them spreads them into its
 * overrides (`{ ...DEFAULT_RULES, ... }`); testConfig adds no rule of its own.
 */
export const DEFAULT_RULES = {
  logout: [{ path: '/logout' }],
  login: [{ path: '/login', methods: ['POST'] }],
} satisfies Partial<ConfigInput>;

/** The test configuration: a loopback listener, the test secret, an insecure cookie, debug logs; no rules. */
export function testConfig(upstream: string, overrides: Partial<ConfigInput> = {}): Config {
  const base: Record<string, unknown> = {
    listen: '127.0.0.1:0',
    upstream,
    secrets: [TEST_SECRET],
    cookie: { name: 'coatcheck', secure: false, sameSite: 'lax' },
    log: { level: 'debug' },
  };
  return configSchema.parse(merge(base, overrides as Record<string, unknown>));
}

export async function startCoatcheck(
  upstream: string,
  overrides: Partial<ConfigInput> = {},
  opts: { clock?: FakeClock } = {},
): Promise<Harness> {
  const config = testConfig(upstream, overrides);
  const { logger, logs } = captureLogger(config.log.level);
  const app = createCoatcheck({ config, logger, ...(opts.clock ? { clock: opts.clock.now } : {}) });
  let addr: Awaited<ReturnType<typeof app.start>>;
  try {
    addr = await app.start();
  } catch (err) {
    await app.close();
    throw err;
  }
  return { port: addr.port, adminPort: addr.admin?.port, app, config, logs, close: () => app.close() };
}

/** Store settings for a suite: the memory store, or a real redis-server's URL. */
export type StoreChoice = { kind: 'memory' } | { kind: 'redis'; url: string };

export function storeOverrides(choice: StoreChoice, prefix = 'cc:'): Partial<ConfigInput> {
  return choice.kind === 'memory'
    ? { store: { kind: 'memory' } }
    : { store: { kind: 'redis', url: choice.url, prefix, timeout: '250ms', connectTimeout: '2s' } };
}

export interface CliProcess {
  readonly proc: ChildProcess;
  readonly stdout: LogCapture;
  stderr(): string;
  /** Resolves with the exit code. */
  readonly exited: Promise<number | null>;
}

/** Runs the built CLI (dist/cli.js) with args and env. */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): CliProcess {
  const proc = spawn(process.execPath, [`${REPO_ROOT}dist/cli.js`, ...args], {
    cwd: REPO_ROOT,
    // Only PATH and what the test passes; NODE_V8_COVERAGE too when set, so that c8 (npm test)
    // also sees the code the CLI runs.
    env: { PATH: process.env.PATH, ...(process.env.NODE_V8_COVERAGE ? { NODE_V8_COVERAGE: process.env.NODE_V8_COVERAGE } : {}), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdout = new LogCapture();
  proc.stdout?.pipe(stdout);
  let err = '';
  proc.stderr?.on('data', (c: Buffer) => (err += c.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return { proc, stdout, stderr: () => err, exited };
}

/** How long a test waits for a process, a line or a reply that is coming, before failing. */
export const DEADLINE_MS = 30_000;

/** `p`, or a rejection with `message` once `ms` passed (the timer cleared either way). */
export function within<T>(p: Promise<T>, message: string, ms = DEADLINE_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

/** Runs the built CLI to its end: exit code, stdout text, stderr text. */
export async function runCliToEnd(args: string[], env: NodeJS.ProcessEnv = {}, ms = DEADLINE_MS): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const cli = runCli(args, env);
  let stdout = '';
  cli.proc.stdout?.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
  // 'close' comes after 'exit' and after both pipes are drained.
  const closed = once(cli.proc, 'close');
  const code = await within(cli.exited, `coatcheck ${args.join(' ')} did not exit`, ms);
  await within(closed, 'stdio never closed', ms);
  return { code, stdout, stderr: cli.stderr() };
}

/** Kills a CLI process that still runs, and (several workers) each worker it started. */
export function killIfRunning(cli: CliProcess): void {
  if (cli.proc.exitCode === null && cli.proc.signalCode === null) cli.proc.kill('SIGKILL');
  // Its workers die with their primary's IPC channel; one killed on its own is ended here.
  for (const l of cli.stdout.events('worker.started')) {
    try {
      process.kill(l.pid as number, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Does anything accept a connection on 127.0.0.1:port? */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
