// Smoke test of the benchmark harness: `node build/bench/run.js --quick` must start every
// target it finds, send load through each scenario without a failed request, stop everything,
// exit 0 and write its JSON. It checks that the bench works, never how fast anything is.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const hasRedis = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).status === 0;

interface Row {
  scenario: string;
  concurrency: number;
  target: string;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  cpuUsPerReq: number | null;
  peakRssMB: number | null;
  errors: number;
  reps: Array<{ requests: number }>;
}

test('npm run bench -- --quick runs every scenario, exits 0 and writes its JSON', { timeout: 240_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'coatcheck-bench-smoke-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'quick.json');
  const child = spawn(process.execPath, [join(ROOT, 'build/bench/run.js'), '--quick', '--out', out], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString('utf8')));
  child.stderr.on('data', (c: Buffer) => (output += c.toString('utf8')));
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  assert.equal(code, 0, `the quick bench failed:\n${output.slice(-6000)}`);
  assert.ok(existsSync(out), 'no JSON written');

  const r = JSON.parse(readFileSync(out, 'utf8')) as {
    version: number;
    mode: string;
    ok: boolean;
    machine: Record<string, unknown>;
    targetsRun: string[];
    problems: string[];
    results: Row[];
    redisMemory: { memoryUsage3: number; infoBytesPerSession: number } | null;
    goals: Array<{ id: string; met: boolean | null; detail: string }>;
  };
  assert.equal(r.version, 1);
  assert.equal(r.mode, 'quick');
  assert.equal(r.ok, true);
  assert.deepEqual(r.problems, []);
  for (const k of ['nproc', 'cpuModel', 'node', 'redis', 'generator']) assert.ok(k in r.machine, `machine.${k}`);

  const expected = ['direct', 'bare', 'coatcheck-memory', ...(hasRedis ? ['minimal', 'coatcheck-redis'] : [])];
  for (const id of expected) assert.ok(r.targetsRun.includes(id), `target ${id} did not run`);
  const scenarios = ['session-get', 'anonymous-get', 'cookie-update', 'login-churn'];
  for (const s of scenarios) {
    for (const id of r.targetsRun) {
      const row = r.results.find((x) => x.scenario === s && x.target === id);
      assert.ok(row, `no result for ${id} / ${s}`);
      for (const k of ['rps', 'p50Ms', 'p99Ms', 'cpuUsPerReq', 'peakRssMB', 'errors', 'concurrency'] as const) assert.ok(k in row, `${id}/${s}: ${k}`);
      assert.equal(row.errors, 0, `${id}/${s} had failed requests`);
      assert.ok(row.reps.length > 0 && row.reps.every((rep) => rep.requests > 0), `${id}/${s} completed no request`);
    }
  }
  const ids = r.goals.map((g) => g.id);
  for (const id of ['throughput-coatcheck-memory', 'p99-coatcheck-memory', 'session-scale', 'redis-memory', 'peak-rss']) assert.ok(ids.includes(id), `goal ${id}`);
  if (hasRedis) {
    assert.ok(r.redisMemory && r.redisMemory.memoryUsage3 > 0, 'Redis memory per session was not measured');
    assert.ok(r.redisMemory.infoBytesPerSession > 0, 'the preload did not grow Redis memory');
  }
});
