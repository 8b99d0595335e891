// `npm run bench:scale-out`: what coatcheck's scale-out choices cost or bring, on the session GET
// hot path (a live ticket, a four-cookie jar), measured side by side in one run:
//   coatcheck (Redis)              one process, one Redis: the reference row;
//   coatcheck (Redis), 2 workers   `workers: 2`, the same Redis;
//   coatcheck (3-master cluster)   one process on a 3-master Redis Cluster on this machine;
//   minimal reference (engine)     the strict minimal proxy on the one Redis, for scale.
// Repetitions are interleaved (each target in turn, the order rotated) so that the machine's
// drift hits every row alike. Nothing is pinned to a CPU: two workers must be free to use two.
// On a 2-core machine the load generator, the app, Redis and the proxy share the same two CPUs,
// so 2 workers cannot show what they give on a bigger machine: the report says so.
//
//   node build/bench/scale-out.js [--quick] [--reps N] [--concurrency LIST] [--out FILE]
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runLoad, type GeneratorName, type Load } from './lib/loadgen.js';
import { commandOutput, cpuMicros, onPath, registerTempDir, stopAll } from './lib/proc.js';
import { startRedis } from './lib/redis.js';
import { startRedisCluster } from './lib/redis-cluster.js';
import { login, settledStats, statsDelta } from './lib/session.js';
import { REPO_ROOT, startCoatcheck, startMinimal, startUpstream, TARGET_LABELS, type Target } from './lib/targets.js';

interface Rep {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  cpuUsPerReq: number;
  redisCpuUsPerReq: number;
  errors: number;
}

interface Row {
  target: string;
  label: string;
  concurrency: number;
  rps: number;
  rpsMin: number;
  rpsMax: number;
  p50Ms: number;
  p99Ms: number;
  cpuUsPerReq: number;
  redisCpuUsPerReq: number;
  /** req/s relative to coatcheck (Redis), one process, in the same cell. */
  vsOneProcess: number | null;
  reps: Rep[];
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? (s[(n - 1) / 2] as number) : ((s[n / 2 - 1] as number) + (s[n / 2] as number)) / 2;
}

function log(msg: string): void {
  process.stderr.write(`[bench:scale-out] ${msg}\n`);
}

const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '—');

interface Measured {
  target: Target;
  redisPids: () => number[];
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      quick: { type: 'boolean', default: false },
      reps: { type: 'string' },
      concurrency: { type: 'string' },
      out: { type: 'string' },
    },
  });
  if (!onPath('redis-server') || !onPath('redis-cli')) throw new Error('the scale-out bench needs redis-server and redis-cli on PATH');
  const quick = values.quick === true;
  const reps = values.reps !== undefined ? Number(values.reps) : quick ? 1 : 3;
  if (!Number.isInteger(reps) || reps < 1 || reps > 99) throw new Error(`--reps: expected 1 to 99, got "${values.reps}"`);
  const concurrencies = values.concurrency !== undefined ? values.concurrency.split(',').map(Number) : quick ? [16] : [32, 128];
  if (concurrencies.some((c) => !Number.isInteger(c) || c < 1)) throw new Error(`--concurrency: expected connection counts like 32,128, got "${values.concurrency}"`);
  const durationSec = quick ? 0.5 : 3;
  const warmupSec = quick ? 0 : 1;
  const sessionsPerTarget = quick ? 32 : 1000;
  const generator: GeneratorName = onPath('wrk') ? 'wrk' : 'autocannon';
  const started = Date.now();
  const tmpDir = registerTempDir(await mkdtemp(join(tmpdir(), 'coatcheck-bench-scaleout-')));
  const problems: string[] = [];

  const upstream = await startUpstream();
  const redis = await startRedis();
  const cluster = await startRedisCluster();
  const storeTimeout = quick ? { timeout: '5s' } : {};
  const single = (): number[] => [redis.child.pid];
  const clusterPids = (): number[] => cluster.children.map((c) => c.pid);
  const measured: Measured[] = [
    { target: await startMinimal(upstream, redis.url, 'coatcheck'), redisPids: single },
    { target: await startCoatcheck(upstream, { kind: 'redis', url: redis.url, ...storeTimeout }), redisPids: single },
    { target: await startCoatcheck(upstream, { kind: 'redis', url: redis.url, ...storeTimeout }, [], 2), redisPids: single },
    { target: await startCoatcheck(upstream, { kind: 'cluster', nodes: cluster.nodes, ...storeTimeout }), redisPids: clusterPids },
  ];
  log(`targets: ${measured.map((m) => `${m.target.id} ${m.target.origin}`).join(', ')}`);
  const sessions = new Map<string, string[]>();
  for (const { target } of measured) sessions.set(target.id, await login(target.origin, 'hot', sessionsPerTarget));
  log(`${sessionsPerTarget} sessions created through each target`);

  const loadOf = (t: Target): Load => ({ kind: 'simple', method: 'GET', path: '/page', cookies: sessions.get(t.id) ?? [] });
  const run = async (m: Measured, connections: number, seconds: number, check: boolean): Promise<Rep> => {
    const pids = m.target.pids();
    const before = check ? await settledStats(upstream.origin) : undefined;
    const cpu0 = cpuMicros(pids);
    const rd0 = cpuMicros(m.redisPids());
    const r = await runLoad(loadOf(m.target), { origin: m.target.origin, connections, durationSec: seconds, generator, tmpDir });
    const cpu = cpuMicros(m.target.pids()) - cpu0;
    const rd = cpuMicros(m.redisPids()) - rd0;
    let errors = r.errors;
    if (r.errors > 0) problems.push(`${m.target.id} c=${connections}: ${r.errors} failed requests (${r.errorDetail})`);
    if (before) {
      const d = statsDelta(before, await settledStats(upstream.origin), '/page');
      if (d.total === 0 || d.withSession !== d.total) {
        errors += 1;
        problems.push(`${m.target.id} c=${connections}: ${d.total - d.withSession} of ${d.total} requests reached the app without their session cookie`);
      }
    }
    const per = (us: number) => (r.requests > 0 ? us / r.requests : NaN);
    return { rps: r.rps, p50Ms: r.p50Ms, p99Ms: r.p99Ms, cpuUsPerReq: per(cpu), redisCpuUsPerReq: per(rd), errors };
  };

  const rows: Row[] = [];
  for (const c of concurrencies) {
    const repsOf = new Map<string, Rep[]>(measured.map((m) => [m.target.id, []]));
    for (let rep = 0; rep < reps; rep++) {
      const order = measured.map((_, i) => measured[(i + rep) % measured.length] as Measured);
      for (const m of order) {
        if (warmupSec > 0) await run(m, c, warmupSec, false);
        const r = await run(m, c, durationSec, true);
        repsOf.get(m.target.id)?.push(r);
        log(`c=${c} ${m.target.id}: ${Math.round(r.rps)} req/s, p99 ${r.p99Ms.toFixed(2)} ms, ${Math.round(r.cpuUsPerReq)} µs CPU/req`);
      }
    }
    const cell = measured.map(({ target }) => {
      const rs = repsOf.get(target.id) ?? [];
      const rps = rs.map((r) => r.rps);
      return {
        target: target.id,
        label: TARGET_LABELS[target.id],
        concurrency: c,
        rps: median(rps),
        rpsMin: Math.min(...rps),
        rpsMax: Math.max(...rps),
        p50Ms: median(rs.map((r) => r.p50Ms)),
        p99Ms: median(rs.map((r) => r.p99Ms)),
        cpuUsPerReq: median(rs.map((r) => r.cpuUsPerReq)),
        redisCpuUsPerReq: median(rs.map((r) => r.redisCpuUsPerReq)),
        vsOneProcess: null as number | null,
        reps: rs,
      };
    });
    const one = cell.find((r) => r.target === 'coatcheck-redis');
    for (const r of cell) if (one && r !== one) r.vsOneProcess = r.rps / one.rps;
    rows.push(...cell);
  }

  for (const { target } of measured) await target.stop();
  await cluster.stop();
  await redis.stop();
  await upstream.stop();

  const nproc = Number(commandOutput('nproc', []) ?? cpus().length);
  const result = {
    version: 1,
    mode: quick ? 'quick' : 'full',
    ok: problems.length === 0,
    startedAt: new Date(started).toISOString(),
    elapsedSec: Math.round((Date.now() - started) / 100) / 10,
    machine: { nproc, cpuModel: cpus()[0]?.model ?? 'unknown', node: process.version, generator },
    settings: { reps, concurrencies, durationSec, warmupSec, sessionsPerTarget, pinning: 'off' },
    problems,
    results: rows,
  };
  const outFile = values.out ? resolve(values.out) : join(REPO_ROOT, 'bench', 'results', quick ? 'scale-out-quick.json' : 'scale-out.json');
  await mkdir(dirname(outFile), { recursive: true });
  await writeFile(outFile, `${JSON.stringify(result, null, 2)}\n`);

  const head = ['c', 'target', 'req/s', 'min–max', 'p50 ms', 'p99 ms', 'CPU µs/req', 'Redis CPU µs/req', 'vs 1 process'];
  const lines = rows.map((r) => [
    String(r.concurrency),
    r.label,
    fmt(r.rps),
    `${fmt(r.rpsMin)}–${fmt(r.rpsMax)}`,
    fmt(r.p50Ms, 2),
    fmt(r.p99Ms, 2),
    fmt(r.cpuUsPerReq),
    fmt(r.redisCpuUsPerReq),
    r.vsOneProcess === null ? '—' : `×${r.vsOneProcess.toFixed(2)}`,
  ]);
  const widths = head.map((_, i) => Math.max(...[head, ...lines].map((l) => (l[i] as string).length)));
  const render = (l: string[]) => `| ${l.map((x, i) => (i >= 2 ? x.padStart(widths[i] as number) : x.padEnd(widths[i] as number))).join(' | ')} |`;
  const out = [
    `\ncoatcheck scale-out bench (${result.mode}): ${nproc} CPUs, node ${process.version}, load from ${generator}, ${reps} × ${durationSec} s per cell, no CPU pinning`,
    render(head),
    `|${widths.map((w, i) => (i >= 2 ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`,
    ...lines.map(render),
    `CPU µs/req counts every process of the target (with workers: the primary and both workers), every thread; Redis CPU counts every Redis node.`,
    nproc <= 2
      ? `On ${nproc} CPUs the load generator, the app and Redis take CPU from the proxy's workers: this says what workers cost here, not what they give on a machine with cores to spare.`
      : `Workers help when the proxy, not Redis or the app, is the bottleneck; on ${nproc} CPUs the other processes still share them.`,
    ...problems.map((p) => `PROBLEM: ${p}`),
    `\nJSON: ${outFile} (${result.elapsedSec} s)`,
  ];
  process.stdout.write(`${out.join('\n')}\n`);
  await rm(tmpDir, { recursive: true, force: true });
  return problems.length === 0 ? 0 : 1;
}

let stopping: Promise<void> | undefined;
async function shutdown(code: number): Promise<never> {
  stopping ??= stopAll().catch(() => undefined);
  await stopping;
  process.exit(code);
}
process.on('SIGINT', () => void shutdown(130));
process.on('SIGTERM', () => void shutdown(143));

main().then(
  (code) => shutdown(code),
  (err: unknown) => {
    process.stderr.write(`bench:scale-out failed: ${(err as Error)?.stack ?? String(err)}\n`);
    void shutdown(1);
  },
);
