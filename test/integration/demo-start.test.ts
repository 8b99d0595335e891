// `npm start` (scripts/demo.mjs) stops as a whole: SIGTERM, or Ctrl-C (SIGINT to the whole
// process group, as a terminal sends it), stops coatcheck and the demo app, and every process
// exits, whether the script runs under npm or on its own. Both listeners on port 0.
//
// Waits are on events (a log line, a process's exit); once the started process has exited, the
// others are checked once: they must be gone already, since the script waits for them.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { describe, test } from 'node:test';
import { accepts, REPO_ROOT, within as withinDeadline } from '../helpers/coatcheck.js';
import { LogCapture } from '../helpers/logs.js';

const DEADLINE_MS = 30_000;

/** `p`, or a rejection with `message` after `ms` (this file's argument order). */
const within = <T>(p: Promise<T>, ms: number, message: string): Promise<T> => withinDeadline(p, message, ms);


function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

interface Started {
  proc: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  demoPid: number;
  proxyPid: number;
  proxyPort: number;
  appPort: number;
  stderr(): string;
}

/** Starts the demo in a process group of its own; resolves once coatcheck and the app listen. */
async function startDemo(command: string, args: string[]): Promise<Started> {
  const proc = spawn(command, args, {
    cwd: REPO_ROOT,
    detached: true, // its own process group: a group signal is what Ctrl-C in a terminal sends
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      ...(process.env.NODE_V8_COVERAGE ? { NODE_V8_COVERAGE: process.env.NODE_V8_COVERAGE } : {}),
      COATCHECK_DEMO_PORT: '0',
      COATCHECK_DEMO_APP_PORT: '0',
      npm_config_update_notifier: 'false',
      npm_config_loglevel: 'silent',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const stdout = new LogCapture();
  proc.stdout?.pipe(stdout);
  let err = '';
  let onErr: (() => void) | undefined;
  proc.stderr?.on('data', (c: Buffer) => {
    err += c.toString('utf8');
    onErr?.();
  });
  const pids = new Promise<{ demoPid: number; proxyPid: number }>((resolve) => {
    onErr = () => {
      const m = /demo pid (\d+), coatcheck pid (\d+)/.exec(err);
      if (m) resolve({ demoPid: Number(m[1]), proxyPid: Number(m[2]) });
    };
  });
  const listening = await within(
    Promise.race([stdout.waitFor((l) => l.msg === 'listening'), exited.then(() => assert.fail(`the demo exited before listening:\n${err}`))]),
    DEADLINE_MS,
    `the demo did not start:\n${err}`,
  );
  const { demoPid, proxyPid } = await within(pids, DEADLINE_MS, `no pids on stderr:\n${err}`);
  return {
    proc,
    exited,
    demoPid,
    proxyPid,
    proxyPort: listening.port as number,
    appPort: Number(new URL(listening.upstream as string).port),
    stderr: () => err,
  };
}

describe('npm start stops as a whole', () => {
  const table: Array<{ name: string; command: string; args: string[]; stop: (p: ChildProcess) => void; signal: string }> = [
    { name: 'node scripts/demo.mjs, SIGTERM', command: process.execPath, args: ['scripts/demo.mjs'], stop: (p) => p.kill('SIGTERM'), signal: 'SIGTERM' },
    { name: 'node scripts/demo.mjs, Ctrl-C (SIGINT to the group)', command: process.execPath, args: ['scripts/demo.mjs'], stop: (p) => process.kill(-(p.pid as number), 'SIGINT'), signal: 'SIGINT' },
    { name: 'npm start, SIGTERM to npm', command: 'npm', args: ['start'], stop: (p) => p.kill('SIGTERM'), signal: 'SIGTERM' },
    { name: 'npm start, Ctrl-C (SIGINT to the group)', command: 'npm', args: ['start'], stop: (p) => process.kill(-(p.pid as number), 'SIGINT'), signal: 'SIGINT' },
  ];
  for (const row of table) {
    test(row.name, { timeout: 2 * DEADLINE_MS }, async (t) => {
      const d = await startDemo(row.command, row.args);
      t.after(() => {
        // Whatever the outcome, leave nothing running.
        for (const pid of [d.proxyPid, d.demoPid]) if (alive(pid)) process.kill(pid, 'SIGKILL');
        if (d.proc.exitCode === null && d.proc.signalCode === null) d.proc.kill('SIGKILL');
      });
      assert.equal(await accepts(d.proxyPort), true, 'coatcheck listens');
      assert.equal(await accepts(d.appPort), true, 'the demo app listens');

      row.stop(d.proc);
      const { code, signal } = await within(d.exited, DEADLINE_MS, `did not exit after ${row.signal}:\n${d.stderr()}`);
      // The script exits 0 on a requested stop; npm reports a signalled child its own way.
      if (row.command !== 'npm') assert.deepEqual({ code, signal }, { code: 0, signal: null }, d.stderr());
      assert.equal(alive(d.demoPid), false, `scripts/demo.mjs (pid ${d.demoPid}) outlived ${row.args.join(' ')}`);
      assert.equal(alive(d.proxyPid), false, `coatcheck (pid ${d.proxyPid}) outlived ${row.args.join(' ')}`);
      assert.equal(await accepts(d.proxyPort), false, 'coatcheck still accepts connections');
      assert.equal(await accepts(d.appPort), false, 'the demo app still accepts connections');
      assert.match(d.stderr(), new RegExp(`demo: ${row.signal}: stopping coatcheck and the demo app`));
    });
  }
});
