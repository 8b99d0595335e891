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

interface OpenRow {
  level: number;
  rate: number;
  target: string;
  achievedRps: number;
  p99Ms: number;
  p999Ms: number;
  latenessP99Ms: number;
  errors: number;
  vsRef: { p99: number; p999: number } | null;
  reps: Array<{ requests: number }>;
}

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
    notes: string[];
    redisMemory: { memoryUsage3: number; infoBytesPerSession: number } | null;
    openLoop: { baseRps: number; rows: OpenRow[] } | null;
    rounds: Array<{ round: number; target: string; rps: number; vsRef: { rps: number } | null }>;
    goals: Array<{ id: string; met: boolean | null; detail: string }>;
  };
  assert.equal(r.version, 2);
  assert.equal(r.mode, 'quick');
  assert.equal(r.ok, true);
  assert.deepEqual(r.problems, []);
  for (const k of ['nproc', 'cpuModel', 'node', 'redis', 'generator']) assert.ok(k in r.machine, `machine.${k}`);

  const expected = ['direct', 'bare', 'coatcheck-memory', ...(hasRedis ? ['minimal', 'minimal-engine', 'coatcheck-redis'] : [])];
  for (const id of expected) assert.ok(r.targetsRun.includes(id), `target ${id} did not run`);
  // nginx + lua runs wherever nginx, its lua module and lua-resty-redis are installed; elsewhere a note says why not.
  const luaRan = r.targetsRun.includes('nginx-lua');
  assert.ok(luaRan || r.notes.some((n) => n.startsWith('nginx + lua is skipped')), `nginx-lua neither ran nor was explained:\n${r.notes.join('\n')}`);
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
  // The open-loop session GET: every open-loop target that ran, at both levels, answered without a failure.
  assert.ok(r.openLoop, 'the open-loop scenario did not run');
  const openTargets = ['minimal-engine', 'coatcheck-redis', 'coatcheck-memory', 'nginx-lua'].filter((id) => r.targetsRun.includes(id));
  for (const id of openTargets) {
    for (const level of [0.5, 0.8]) {
      const row: OpenRow | undefined = r.openLoop.rows.find((x) => x.target === id && x.level === level);
      assert.ok(row, `no open-loop result for ${id} at ${level}`);
      assert.ok(row.rate > 0 && row.achievedRps > 0, `${id} open loop: no rate`);
      for (const k of ['p99Ms', 'p999Ms', 'latenessP99Ms'] as const) assert.ok(Number.isFinite(row[k]), `${id} open loop: ${k}`);
      assert.equal(row.errors, 0, `${id} open loop had failed requests`);
      assert.ok(row.reps.every((rep: { requests: number }) => rep.requests > 0), `${id} open loop completed no request`);
      if (id !== 'minimal-engine' && hasRedis) assert.ok(row.vsRef, `${id} open loop: no ratio to the reference`);
    }
  }
  // Quick mode runs two session GET rounds (the full run three).
  assert.deepEqual([...new Set(r.rounds.map((x) => x.round))], [1, 2]);
  if (hasRedis) assert.ok(r.rounds.some((x) => x.round === 2 && x.target === 'coatcheck-redis' && x.vsRef !== null && x.rps > 0), 'round 2 has no coatcheck (Redis) ratio');
  const ids = r.goals.map((g) => g.id);
  const goals = ['cpu-coatcheck-memory', 'open-loop-tail-coatcheck-memory', 'cookie-update-cpu-coatcheck-memory', 'login-churn-coatcheck-memory', 'session-scale', 'redis-memory', 'peak-rss'];
  if (luaRan) goals.push('nginx-lua-coatcheck-memory');
  for (const id of hasRedis ? goals : ['session-scale', 'redis-memory', 'peak-rss']) assert.ok(ids.includes(id), `goal ${id}`);
  if (hasRedis) {
    assert.ok(r.redisMemory && r.redisMemory.memoryUsage3 > 0, 'Redis memory per session was not measured');
    assert.ok(r.redisMemory.infoBytesPerSession > 0, 'the preload did not grow Redis memory');
  }
});

function runBench(args: string[]): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, [join(ROOT, 'build/bench/run.js'), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString('utf8')));
  child.stderr.on('data', (c: Buffer) => (output += c.toString('utf8')));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, output })));
}

test('bench filters: unknown names, bad counts and contradictions are refused before anything starts', async () => {
  for (const [args, message] of [
    [['--scenarios', 'session-get,nope'], /--scenarios: unknown "nope" \(one or more of: session-get, anonymous-get, cookie-update, login-churn, session-get-open\)/],
    [['--rounds', '0'], /--rounds: expected a number of rounds from 1 to 9, got "0"/],
    [['--targets', 'coatcheck'], /--targets: unknown "coatcheck"/],
    [['--targets', ','], /--targets: unknown empty list/],
    [['--concurrency', '32,0'], /--concurrency: expected connection counts like 32,128, got "32,0"/],
    [['--reps', 'three'], /--reps: expected a number of repetitions from 1 to 99, got "three"/],
    [['--scale', '--no-scale'], /--scale and --no-scale contradict each other/],
  ] as const) {
    const { code, output } = await runBench(['--quick', ...args]);
    assert.equal(code, 1, output);
    assert.match(output, message);
    assert.doesNotMatch(output, /\[bench\]/, 'nothing was started');
  }
});

test('bench filters: a subset run has only the scenarios and targets asked for, and says so', { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'coatcheck-bench-subset-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'subset.json');
  const { code, output } = await runBench(['--quick', '--scenarios', 'anonymous-get', '--targets', 'bare,coatcheck-memory', '--node-args=--no-warnings', '--out', out]);
  assert.equal(code, 0, output.slice(-4000));
  const r = JSON.parse(readFileSync(out, 'utf8')) as { targetsRun: string[]; results: Row[]; notes: string[] };
  assert.deepEqual(r.targetsRun, ['bare', 'coatcheck-memory']);
  assert.deepEqual([...new Set(r.results.map((x) => x.scenario))], ['anonymous-get']);
  assert.equal(r.results.length, 2);
  assert.ok(r.notes.some((n) => n.startsWith('a subset run: scenarios anonymous-get; targets bare,coatcheck-memory')), r.notes.join('\n'));
  assert.ok(r.notes.includes('coatcheck ran as node --no-warnings dist/cli.js'), r.notes.join('\n'));
});
