// Smoke test of the WebSocket bench: `node build/bench/websocket.js --quick` must start its
// processes, run every part, stop everything, exit 0 and write its JSON. It checks that the bench
// works (and that a logout closed every socket with 1008 within its bound), never how fast.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

test('npm run bench:websocket -- --quick runs, exits 0 and writes its JSON', { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'coatcheck-bench-ws-smoke-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'ws.json');
  const child = spawn(process.execPath, [join(ROOT, 'build/bench/websocket.js'), '--quick', '--out', out], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString('utf8')));
  child.stderr.on('data', (c: Buffer) => (output += c.toString('utf8')));
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  assert.equal(code, 0, `the quick WebSocket bench failed:\n${output.slice(-6000)}`);
  const r = JSON.parse(readFileSync(out, 'utf8')) as {
    mode: string;
    ok: boolean;
    problems: string[];
    throughput: Array<{ target: string; messagesPerSec: number }>;
    logoutToClose: { trials: number; otherInstanceMaxMs: number };
    rss: { sockets: number; rounds: Array<{ openMB: number }> };
  };
  assert.equal(r.mode, 'quick');
  assert.equal(r.ok, true);
  assert.deepEqual(r.problems, []);
  assert.deepEqual(r.throughput.map((x) => x.target), ['direct (no proxy)', 'coatcheck (Redis)']);
  for (const x of r.throughput) assert.ok(x.messagesPerSec > 0);
  assert.equal(r.logoutToClose.trials, 3);
  assert.ok(r.logoutToClose.otherInstanceMaxMs < 1000);
  assert.equal(r.rss.rounds.length, 4);
  assert.ok((r.rss.rounds[0]?.openMB ?? 0) > 0);
});
