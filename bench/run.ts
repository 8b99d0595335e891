// `npm run bench`: coatcheck side by side with what a user would pick instead, in one run.
// See bench/README.md for what is measured, how, and the latest results.
//
//   node build/bench/run.js [--quick] [--out FILE] [--generator wrk|autocannon] [--profile [--profile-target T]]
//                           [--scenarios LIST] [--targets LIST] [--concurrency LIST] [--reps N] [--[no-]scale]
//                           [--rounds N] [--node-args "ARGS"]
//
// Everything runs on 127.0.0.1, each load for a bounded time, and every process started here
// is stopped at the end (and on an error or Ctrl-C). Exit status: 0 when every target started
// and no request failed; 1 otherwise (the table and the JSON are written either way).
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { cpus, totalmem, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runLoad, runOpenLoop, type GeneratorName, type Load, type LoadResult, type SimpleLoad } from './lib/loadgen.js';
import { commandOutput, cpuMicros, currentPinning, machineBusyMicros, onPath, peakRss, registerTempDir, resetPeakRss, setPinning, stopAll } from './lib/proc.js';
import { startRedis, type BenchRedis } from './lib/redis.js';
import {
  login,
  preloadCopies,
  restore,
  sessionKeyOf,
  settledStats,
  snapshot,
  statsDelta,
  ticketOf,
  usedMemory,
  type UpstreamStats,
} from './lib/session.js';
import {
  COATCHECK_PREFIX,
  COATCHECK_SECRET,
  directTarget,
  MAIN_TARGETS,
  nginxLuaSupport,
  REFERENCE,
  REPO_ROOT,
  startBare,
  startCoatcheck,
  startMinimal,
  startNginx,
  startNginxLua,
  startUpstream,
  TARGET_LABELS,
  type Target,
  type TargetId,
  type Upstream,
} from './lib/targets.js';
import { profileSummary } from './lib/profile.js';

// ---------------------------------------------------------------- settings

interface Settings {
  mode: 'full' | 'quick';
  durationSec: number;
  reps: number;
  warmupSec: number;
  initialWarmupSec: number;
  concurrencies: number[];
  sessions: number;
  /** Live coatcheck sessions in Redis for the large-keyspace run (0: skipped). */
  scaleSessions: number;
  /** Copies preloaded only to measure memory per session (quick mode). */
  memoryPreload: number;
  scaleConcurrency: number;
  /** Repetitions per phase of the 1 000 vs 1 000 000 sessions comparison. */
  scaleReps: number;
  /**
   * Quick mode: every target takes its load at the same time (one ~1 s round per scenario).
   * It only proves that each path works; the numbers of such a run mean nothing.
   */
  parallel: boolean;
  /** Open-loop session GET: repetitions, warm-up and measured seconds per repetition, connections. */
  openReps: number;
  openWarmupSec: number;
  openDurationSec: number;
  openConnections: number;
  /** Arrival rates, as fractions of the reference's measured maximum req/s. */
  openLevels: number[];
  /** Quick mode: a fixed rate base instead of the reference's maximum (the numbers mean nothing). */
  openFixedBase: number;
  /** Seconds of the overdriven run that measures the reference's maximum under the open-loop generator. */
  openCalibrateSec: number;
  /** Consecutive session-GET rounds (round 1 is the scenarios' own session GET). */
  rounds: number;
}

const FULL: Settings = {
  mode: 'full',
  durationSec: 3,
  reps: 3,
  warmupSec: 1,
  initialWarmupSec: 1,
  concurrencies: [32, 128],
  sessions: 1000,
  scaleSessions: 1_000_000,
  memoryPreload: 0,
  scaleConcurrency: 128,
  scaleReps: 4,
  parallel: false,
  openReps: 3,
  openWarmupSec: 1,
  openDurationSec: 8,
  openConnections: 128,
  openLevels: [0.5, 0.8],
  openFixedBase: 0,
  openCalibrateSec: 5,
  rounds: 3,
};

const QUICK: Settings = {
  mode: 'quick',
  durationSec: 0.5,
  reps: 1,
  warmupSec: 0,
  initialWarmupSec: 0,
  concurrencies: [16],
  sessions: 32,
  scaleSessions: 0,
  memoryPreload: 10_000,
  scaleConcurrency: 16,
  scaleReps: 1,
  parallel: true,
  openReps: 1,
  openWarmupSec: 0,
  openDurationSec: 0.5,
  openConnections: 16,
  openLevels: [0.5, 0.8],
  openFixedBase: 400,
  openCalibrateSec: 0.5,
  rounds: 2,
};

type ScenarioId = 'session-get' | 'anonymous-get' | 'cookie-update' | 'login-churn';
/** Every scenario the filters know: the closed-loop ones and the open-loop session GET. */
type AnyScenarioId = ScenarioId | 'session-get-open';
const OPEN_SCENARIO = 'session-get-open';
/** The calibration offers the reference this many times wrk's maximum (open-loop maximum, see runOpen). */
const OPEN_OVERDRIVE = 1.5;
/** The targets of the open-loop scenario and of rounds 2.. of the session GET (when they run). */
const OPEN_TARGETS: readonly TargetId[] = [REFERENCE, 'coatcheck-redis', 'coatcheck-memory', 'nginx-lua'];
const ROUND_TARGETS: readonly TargetId[] = [REFERENCE, 'minimal', 'coatcheck-redis', 'coatcheck-memory', 'nginx-lua'];

interface Scenario {
  id: ScenarioId;
  title: string;
  load(sessions: readonly string[]): Load;
  /** Checks the upstream's counters: did the requests carry what they should have? */
  check(before: UpstreamStats, after: UpstreamStats): string | undefined;
}

const CHURN_PAGES = 3;

/** A session scenario's check: every request to `path` reached the app with its session cookie. */
function everyRequestHadSession(b: Parameters<typeof statsDelta>[0], a: Parameters<typeof statsDelta>[1], path: string): string | undefined {
  const d = statsDelta(b, a, path);
  if (d.total === 0) return 'the upstream saw no request';
  return d.withSession === d.total ? undefined : `${d.total - d.withSession} of ${d.total} requests reached the app without its session cookie`;
}

const SCENARIOS: Scenario[] = [
  {
    id: 'session-get',
    title: 'session GET, live ticket (hot path)',
    load: (sessions) => ({ kind: 'simple', method: 'GET', path: '/page', cookies: sessions }),
    check: (b, a) => everyRequestHadSession(b, a, '/page'),
  },
  {
    id: 'anonymous-get',
    title: 'anonymous GET',
    load: () => ({ kind: 'simple', method: 'GET', path: '/page', cookies: [] }),
    check: (b, a) => {
      const d = statsDelta(b, a, '/page');
      if (d.total === 0) return 'the upstream saw no request';
      return d.withSession === 0 ? undefined : `${d.withSession} anonymous requests carried a session cookie`;
    },
  },
  {
    id: 'cookie-update',
    title: 'GET whose response updates one cookie',
    load: (sessions) => ({ kind: 'simple', method: 'GET', path: '/update', cookies: sessions }),
    check: (b, a) => everyRequestHadSession(b, a, '/update'),
  },
  {
    id: 'login-churn',
    title: `login → ${CHURN_PAGES} GETs → logout`,
    load: () => ({
      kind: 'sequence',
      requests: [
        { method: 'POST', path: '/login?jar=hot', capture: true },
        ...Array.from({ length: CHURN_PAGES }, () => ({ method: 'GET', path: '/page', useCaptured: true })),
        { method: 'GET', path: '/logout', useCaptured: true },
      ],
    }),
    check: (b, a) => {
      const page = statsDelta(b, a, '/page');
      const logins = statsDelta(b, a, '/login');
      const logouts = statsDelta(b, a, '/logout');
      if (logins.total === 0 || logouts.total === 0) return 'no login or no logout reached the app';
      return page.withSession === page.total ? undefined : `${page.total - page.withSession} of ${page.total} GETs after login reached the app without its session cookie`;
    },
  },
];

// ---------------------------------------------------------------- results

interface Rep {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  cpuUsPerReq: number | null;
  upstreamCpuUsPerReq: number;
  redisCpuUsPerReq: number | null;
  generatorCpuUsPerReq: number;
  /** CPU used during the run by processes that are not the bench's, in cores (0.5 = half a CPU). */
  backgroundCores: number;
  errors: number;
}

interface Row {
  scenario: ScenarioId;
  concurrency: number;
  target: TargetId;
  label: string;
  generator: GeneratorName;
  rps: number;
  rpsMin: number;
  rpsMax: number;
  /** (max − min) / median of req/s over the repetitions, in %. */
  spreadPct: number;
  p50Ms: number;
  p99Ms: number;
  cpuUsPerReq: number | null;
  upstreamCpuUsPerReq: number;
  redisCpuUsPerReq: number | null;
  peakRssMB: number | null;
  generatorCpuUsPerReq: number;
  /** Highest background CPU (processes not the bench's) over the repetitions, in cores. */
  backgroundCores: number;
  errors: number;
  /** Against THE reference (the minimal proxy on coatcheck's engine), same scenario, concurrency and run. */
  vsRef: { rps: number; p99: number; cpu: number | null } | null;
  /** Against the second line: the minimal proxy on undici's request() and pipeline(). */
  vsMinimalRequest: { rps: number; p99: number } | null;
  vsBare: { rps: number; p99: number } | null;
  vsNginxLua: { rps: number; p99: number } | null;
  reps: Rep[];
}

interface Verdict {
  id: string;
  target: string;
  met: boolean | null;
  detail: string;
}

const problems: string[] = [];
const notes: string[] = [];

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return NaN;
  return n % 2 ? (s[(n - 1) / 2] as number) : ((s[n / 2 - 1] as number) + (s[n / 2] as number)) / 2;
}

function medianOrNull(xs: readonly (number | null)[]): number | null {
  const v = xs.filter((x): x is number => x !== null);
  return v.length ? median(v) : null;
}

function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

// ---------------------------------------------------------------- machine

function machine(generator: GeneratorName): Record<string, string | number> {
  let cpuModel = cpus()[0]?.model ?? 'unknown';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpuModel = (m[1] as string).trim();
  } catch {
    // not Linux
  }
  const wrk = commandOutput('wrk', ['-v'], true);
  return {
    nproc: Number(commandOutput('nproc', []) ?? cpus().length),
    cpuModel,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: commandOutput('uname', ['-r']) ?? 'unknown',
    node: process.version,
    redis: commandOutput('redis-server', ['--version'])?.match(/v=(\S+)/)?.[1] ?? 'not installed',
    wrk: wrk?.match(/wrk (\S+)/)?.[1] ?? 'not installed',
    nginx: commandOutput('nginx', ['-v'])?.match(/nginx\/(\S+)/)?.[1] ?? 'not installed',
    generator,
  };
}

// ---------------------------------------------------------------- one measured run

interface Env {
  targets: Target[];
  upstream: Upstream;
  redis: BenchRedis | undefined;
  generator: GeneratorName;
  tmpDir: string;
}

function selfCpu(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** Time spent waiting for other processes to calm down, and the budget for it (s). */
const quiet = { waitedSec: 0, budgetSec: 90, threshold: 0.15 };

/**
 * Before a measured run: wait (within a budget for the whole bench) until processes that are not
 * the bench's use less than `threshold` of one CPU. The bench's own processes are idle then.
 */
async function waitQuiet(): Promise<void> {
  const started = performance.now();
  while (quiet.waitedSec < quiet.budgetSec) {
    const b0 = machineBusyMicros();
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 150));
    const cores = (machineBusyMicros() - b0) / ((performance.now() - t0) * 1000);
    if (cores < quiet.threshold) break;
    quiet.waitedSec += (performance.now() - t0) / 1000;
  }
  if (performance.now() - started > 1000) log(`waited ${((performance.now() - started) / 1000).toFixed(1)} s for other processes to go quiet`);
}

async function measure(env: Env, target: Target, load: Load, scenario: Scenario | undefined, concurrency: number, durationSec: number): Promise<{ load: LoadResult; rep: Rep }> {
  const pids = target.pids();
  const upPids = [env.upstream.child.pid];
  const redisPids = env.redis && target.usesRedis ? [env.redis.child.pid] : [];
  // The quiet check and the settling of the upstream's counters overlap (both take ~100-300 ms).
  const [before] = await Promise.all([scenario ? settledStats(env.upstream.origin) : undefined, scenario ? waitQuiet() : undefined]);
  const allRedis = env.redis ? [env.redis.child.pid] : [];
  // Everything the bench runs, to tell its CPU time from other processes' on the machine.
  const ours = () => cpuMicros([...new Set([...env.targets.flatMap((t) => t.pids()), ...upPids, ...allRedis])]) + selfCpu();
  const busy0 = machineBusyMicros();
  const ours0 = ours();
  const t0 = performance.now();
  const cpu0 = cpuMicros(pids);
  const up0 = cpuMicros(upPids);
  const rd0 = cpuMicros(redisPids);
  const r = await runLoad(load, { origin: target.origin, connections: concurrency, durationSec, generator: env.generator, tmpDir: env.tmpDir });
  const cpu1 = cpuMicros(pids);
  const up1 = cpuMicros(upPids);
  const rd1 = cpuMicros(redisPids);
  const wallUs = (performance.now() - t0) * 1000;
  const background = Math.max(0, machineBusyMicros() - busy0 - (ours() - ours0) - r.generatorCpuUs) / wallUs;
  let errors = r.errors;
  const where = `${target.id} ${scenario?.id ?? 'load'} c=${concurrency}`;
  if (r.errors) {
    // What the proxy said about them (coatcheck logs every failed request at warn or error).
    const said = target.tail?.().trim().split('\n').slice(-5).join('\n    ');
    problems.push(`${where}: ${r.errors} failed requests (${r.errorDetail})${said ? `; its last log lines:\n    ${said}` : ''}`);
  }
  if (!(r.requests > 0)) {
    errors += 1;
    problems.push(`${where}: no request completed`);
  }
  if (scenario && before) {
    const bad = scenario.check(before, await settledStats(env.upstream.origin));
    if (bad) {
      errors += 1;
      problems.push(`${where}: ${bad}`);
    }
  }
  const per = (d: number) => (r.requests > 0 ? d / r.requests : 0);
  return {
    load: r,
    rep: {
      rps: r.rps,
      p50Ms: r.p50Ms,
      p99Ms: r.p99Ms,
      requests: r.requests,
      cpuUsPerReq: pids.length ? per(cpu1 - cpu0) : null,
      upstreamCpuUsPerReq: per(up1 - up0),
      redisCpuUsPerReq: redisPids.length ? per(rd1 - rd0) : null,
      generatorCpuUsPerReq: per(r.generatorCpuUs),
      backgroundCores: background,
      errors,
    },
  };
}

function summarize(scenario: ScenarioId, concurrency: number, target: Target, generator: GeneratorName, reps: Rep[], peak: number | null): Row {
  const rpsList = reps.map((r) => r.rps);
  const rps = median(rpsList);
  return {
    scenario,
    concurrency,
    target: target.id,
    label: TARGET_LABELS[target.id],
    generator,
    rps,
    rpsMin: Math.min(...rpsList),
    rpsMax: Math.max(...rpsList),
    spreadPct: rps > 0 ? ((Math.max(...rpsList) - Math.min(...rpsList)) / rps) * 100 : 0,
    p50Ms: median(reps.map((r) => r.p50Ms)),
    p99Ms: median(reps.map((r) => r.p99Ms)),
    cpuUsPerReq: medianOrNull(reps.map((r) => r.cpuUsPerReq)),
    upstreamCpuUsPerReq: median(reps.map((r) => r.upstreamCpuUsPerReq)),
    redisCpuUsPerReq: medianOrNull(reps.map((r) => r.redisCpuUsPerReq)),
    peakRssMB: peak === null ? null : peak / 2 ** 20,
    generatorCpuUsPerReq: median(reps.map((r) => r.generatorCpuUsPerReq)),
    backgroundCores: Math.max(0, ...reps.map((r) => r.backgroundCores)),
    errors: reps.reduce((s, r) => s + r.errors, 0),
    vsRef: null,
    vsMinimalRequest: null,
    vsBare: null,
    vsNginxLua: null,
    reps,
  };
}

/** Runs one scenario at one concurrency on every target: interleaved repetitions, each after its own warm-up. */
async function runCell(env: Env, s: Settings, targets: Target[], sessions: Map<TargetId, string[]>, scenario: Scenario, concurrency: number): Promise<Row[]> {
  const peakResettable = new Map<TargetId, boolean>();
  for (const t of targets) peakResettable.set(t.id, t.pids().length > 0 && resetPeakRss(t.pids()));
  const generatorOf = (load: Load): GeneratorName => (load.kind === 'sequence' ? 'autocannon' : env.generator);
  const loads = new Map(targets.map((t) => [t.id, scenario.load(sessions.get(t.id) ?? [])]));
  const reps = new Map<TargetId, Rep[]>(targets.map((t) => [t.id, []]));
  for (let rep = 0; rep < s.reps && s.parallel; rep++) {
    const before = await settledStats(env.upstream.origin);
    const all = await Promise.all(targets.map((t) => measure(env, t, loads.get(t.id) as Load, undefined, concurrency, s.durationSec)));
    const bad = scenario.check(before, await settledStats(env.upstream.origin));
    targets.forEach((t, i) => {
      const r = (all[i] as { rep: Rep }).rep;
      if (bad) r.errors += 1;
      reps.get(t.id)?.push(r);
    });
    if (bad) problems.push(`${scenario.id} c=${concurrency} (all targets at once): ${bad}`);
    log(`${scenario.id} c=${concurrency}: ${targets.map((t, i) => `${t.id} ${Math.round((all[i] as { rep: Rep }).rep.rps)} req/s`).join(', ')}`);
  }
  for (let rep = 0; rep < s.reps && !s.parallel; rep++) {
    // Rotate the order every repetition, so that no target always runs first or last.
    const order = targets.map((_, i) => targets[(i + rep) % targets.length] as Target);
    for (const t of order) {
      // A warm-up right before every repetition: a target measured after idling while the others
      // ran would otherwise start its repetition cold, and that start showed up in its p99.
      if (s.warmupSec > 0) await measure(env, t, loads.get(t.id) as Load, undefined, concurrency, s.warmupSec);
      const { rep: r } = await measure(env, t, loads.get(t.id) as Load, scenario, concurrency, s.durationSec);
      reps.get(t.id)?.push(r);
      log(
        `${scenario.id} c=${concurrency} ${t.id}: ${Math.round(r.rps)} req/s, p99 ${r.p99Ms.toFixed(2)} ms` +
          `${r.backgroundCores >= 0.1 ? `, background CPU ${r.backgroundCores.toFixed(2)} cores` : ''}${r.errors ? `, ${r.errors} ERRORS` : ''}`,
      );
    }
  }
  const rows = targets.map((t) => {
    const pids = t.pids();
    const peak = pids.length ? peakRss(pids) : null;
    if (pids.length && !peakResettable.get(t.id)) notes.push(`peak RSS of ${t.id} could not be reset between scenarios: it is the process's lifetime peak`);
    return summarize(scenario.id, concurrency, t, generatorOf(loads.get(t.id) as Load), reps.get(t.id) ?? [], peak);
  });
  addRatios(rows);
  return rows;
}

/** Each row's ratios to the reference, the request()+pipeline() line, the bare forwarder and nginx + lua of the same cell. */
function addRatios(rows: Row[]): void {
  const ref = rows.find((r) => r.target === REFERENCE);
  const minimal = rows.find((r) => r.target === 'minimal');
  const bare = rows.find((r) => r.target === 'bare');
  const lua = rows.find((r) => r.target === 'nginx-lua');
  for (const r of rows) {
    if (ref && r !== ref) {
      const cpu = r.cpuUsPerReq !== null && ref.cpuUsPerReq ? r.cpuUsPerReq / ref.cpuUsPerReq : null;
      r.vsRef = { rps: r.rps / ref.rps, p99: r.p99Ms / ref.p99Ms, cpu };
    }
    if (minimal && r !== minimal) r.vsMinimalRequest = { rps: r.rps / minimal.rps, p99: r.p99Ms / minimal.p99Ms };
    if (bare && r !== bare) r.vsBare = { rps: r.rps / bare.rps, p99: r.p99Ms / bare.p99Ms };
    if (lua && r !== lua) r.vsNginxLua = { rps: r.rps / lua.rps, p99: r.p99Ms / lua.p99Ms };
  }
}

// ---------------------------------------------------------------- open loop: session GET at a fixed arrival rate

interface OpenRep {
  achievedRps: number;
  requests: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  latenessP99Ms: number;
  latenessMaxMs: number;
  maxQueue: number;
  cpuUsPerReq: number | null;
  redisCpuUsPerReq: number | null;
  generatorCpuUsPerReq: number;
  backgroundCores: number;
  errors: number;
}

interface OpenRow {
  scenario: typeof OPEN_SCENARIO;
  /** The arrival rate as a fraction of the reference's maximum (0.5, 0.8). */
  level: number;
  rate: number;
  connections: number;
  target: TargetId;
  label: string;
  achievedRps: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  /** The generator's own lateness (due → dispatched), median over the repetitions of each one's p99, and the worst max. */
  latenessP99Ms: number;
  latenessMaxMs: number;
  maxQueue: number;
  cpuUsPerReq: number | null;
  peakRssMB: number | null;
  backgroundCores: number;
  errors: number;
  vsRef: { p99: number; p999: number } | null;
  reps: OpenRep[];
}

interface OpenLoopResultSet {
  /** The reference's maximum req/s the rates derive from, and where it came from. */
  baseRps: number;
  baseFrom: string;
  rows: OpenRow[];
}

async function measureOpen(env: Env, s: Settings, target: Target, load: SimpleLoad, rate: number, check: boolean): Promise<OpenRep> {
  const pids = target.pids();
  const redisPids = env.redis && target.usesRedis ? [env.redis.child.pid] : [];
  const [before] = await Promise.all([check ? settledStats(env.upstream.origin) : undefined, check ? waitQuiet() : undefined]);
  const allRedis = env.redis ? [env.redis.child.pid] : [];
  const ours = () => cpuMicros([...new Set([...env.targets.flatMap((t) => t.pids()), env.upstream.child.pid, ...allRedis])]) + selfCpu();
  const busy0 = machineBusyMicros();
  const ours0 = ours();
  const t0 = performance.now();
  const cpu0 = cpuMicros(pids);
  const rd0 = cpuMicros(redisPids);
  const r = await runOpenLoop(load, { origin: target.origin, rate, warmupSec: s.openWarmupSec, durationSec: s.openDurationSec, connections: s.openConnections, tmpDir: env.tmpDir });
  const cpu = cpuMicros(pids) - cpu0;
  const rd = cpuMicros(redisPids) - rd0;
  const wallUs = (performance.now() - t0) * 1000;
  const background = Math.max(0, machineBusyMicros() - busy0 - (ours() - ours0) - r.generatorCpuUs) / wallUs;
  // CPU covers the warm-up too: divide by every response.
  const answered = Object.values(r.statusCounts).reduce((a, b) => a + b, 0);
  const per = (d: number) => (answered > 0 ? d / answered : 0);
  const where = `${target.id} ${OPEN_SCENARIO} ${Math.round(rate)} req/s`;
  let errors = r.errors + r.non2xx;
  if (errors) problems.push(`${where}: ${errors} failed requests (${r.errorDetail})`);
  if (!(r.requests > 0)) {
    errors += 1;
    problems.push(`${where}: no request completed`);
  }
  if (check && before) {
    const bad = everyRequestHadSession(before, await settledStats(env.upstream.origin), '/page');
    if (bad) {
      errors += 1;
      problems.push(`${where}: ${bad}`);
    }
  }
  return {
    achievedRps: r.achievedRps,
    requests: r.requests,
    p50Ms: r.p50Ms,
    p90Ms: r.p90Ms,
    p99Ms: r.p99Ms,
    p999Ms: r.p999Ms,
    maxMs: r.maxMs,
    latenessP99Ms: r.latenessP99Ms,
    latenessMaxMs: r.latenessMaxMs,
    maxQueue: r.maxQueue,
    cpuUsPerReq: pids.length ? per(cpu) : null,
    redisCpuUsPerReq: redisPids.length ? per(rd) : null,
    generatorCpuUsPerReq: per(r.generatorCpuUs),
    backgroundCores: background,
    errors,
  };
}

/**
 * session-get-open: every open-loop target at each level (50 %, 80 %) of the reference's maximum
 * req/s, repetitions interleaved (the order rotates), each with its own warm-up at the same rate.
 */
async function runOpen(env: Env, s: Settings, targets: Target[], sessions: Map<TargetId, string[]>, rows: Row[]): Promise<OpenLoopResultSet | null> {
  const open = targets.filter((t) => OPEN_TARGETS.includes(t.id));
  if (open.length === 0) {
    notes.push(`${OPEN_SCENARIO}: none of its targets (${OPEN_TARGETS.join(', ')}) ran`);
    return null;
  }
  let baseRps: number;
  let baseFrom: string;
  const loadOf = (t: Target): SimpleLoad => ({ kind: 'simple', method: 'GET', path: '/page', cookies: sessions.get(t.id) ?? [] });
  if (s.openFixedBase > 0) {
    baseRps = s.openFixedBase;
    baseFrom = 'quick mode: a fixed tiny base';
  } else {
    // The reference's maximum, measured under the open-loop generator itself: it shares the load
    // CPU with the upstream and Redis and takes more of it than wrk, so wrk's maximum is not one
    // the reference can sustain under this generator (at 80 % of wrk's, every target queued up).
    // First wrk's (closed-loop) maximum, then the generator overdriven at 1.5× that rate: what
    // comes back is the reference's maximum under it.
    const ref = targets.find((t) => t.id === REFERENCE) ?? (open[0] as Target);
    if (ref.id !== REFERENCE) notes.push(`${OPEN_SCENARIO}: the reference did not run; the rates derive from ${TARGET_LABELS[ref.id]}`);
    const refRows = rows.filter((r) => r.scenario === 'session-get' && r.target === ref.id && (r.concurrency === 32 || r.concurrency === 128));
    let closedRps: number;
    let closedFrom: string;
    if (refRows.length > 0) {
      const best = refRows.reduce((a, b) => (b.rps > a.rps ? b : a));
      closedRps = best.rps;
      closedFrom = `its session GET median at c=${best.concurrency} in this run${refRows.length > 1 ? `, the higher of ${refRows.map((r) => `c=${r.concurrency}`).join(' and ')}` : ''}`;
    } else {
      const load = (SCENARIOS[0] as Scenario).load(sessions.get(ref.id) ?? []);
      await measure(env, ref, load, undefined, 128, 1);
      const { rep } = await measure(env, ref, load, SCENARIOS[0], 128, s.durationSec);
      closedRps = rep.rps;
      closedFrom = `a session GET run at c=128, one ${s.durationSec} s repetition (session-get was not in this run)`;
    }
    const over = Math.round(closedRps * OPEN_OVERDRIVE);
    await waitQuiet();
    const cal = await runOpenLoop(loadOf(ref), {
      origin: ref.origin,
      rate: over,
      warmupSec: s.openWarmupSec,
      durationSec: s.openCalibrateSec,
      connections: s.openConnections,
      tmpDir: env.tmpDir,
    });
    if (!(cal.achievedRps > 0)) throw new Error(`${OPEN_SCENARIO}: the calibration run of ${ref.id} answered nothing (${cal.errorDetail})`);
    if (cal.errors + cal.non2xx > 0) notes.push(`${OPEN_SCENARIO}: the calibration run (overdriven) had ${cal.errors + cal.non2xx} failed requests (${cal.errorDetail}); its rate stands`);
    baseRps = cal.achievedRps;
    baseFrom =
      `${TARGET_LABELS[ref.id]}'s maximum under the open-loop generator: its answered rate when offered ${over} req/s ` +
      `(${OPEN_OVERDRIVE}× wrk's maximum of ${Math.round(closedRps)} req/s, ${closedFrom}) for ${s.openCalibrateSec} s`;
  }
  log(`${OPEN_SCENARIO}: base ${Math.round(baseRps)} req/s from ${baseFrom}`);
  const out: OpenRow[] = [];
  for (const level of s.openLevels) {
    const rate = Math.max(1, Math.round(baseRps * level));
    const peakResettable = new Map(open.map((t) => [t.id, t.pids().length > 0 && resetPeakRss(t.pids())]));
    const reps = new Map<TargetId, OpenRep[]>(open.map((t) => [t.id, []]));
    for (let rep = 0; rep < s.openReps; rep++) {
      if (s.parallel) {
        const before = await settledStats(env.upstream.origin);
        const all = await Promise.all(open.map((t) => measureOpen(env, s, t, loadOf(t), rate, false)));
        const bad = everyRequestHadSession(before, await settledStats(env.upstream.origin), '/page');
        if (bad) problems.push(`${OPEN_SCENARIO} ${rate} req/s (all targets at once): ${bad}`);
        open.forEach((t, i) => {
          const r = all[i] as OpenRep;
          if (bad) r.errors += 1;
          reps.get(t.id)?.push(r);
        });
        log(`${OPEN_SCENARIO} ${rate} req/s: ${open.map((t, i) => `${t.id} p99 ${fmt((all[i] as OpenRep).p99Ms, 2)} ms`).join(', ')}`);
        continue;
      }
      const order = open.map((_, i) => open[(i + rep) % open.length] as Target);
      for (const t of order) {
        const r = await measureOpen(env, s, t, loadOf(t), rate, true);
        reps.get(t.id)?.push(r);
        log(
          `${OPEN_SCENARIO} ${Math.round(level * 100)}% = ${rate} req/s ${t.id}: achieved ${fmt(r.achievedRps)}, p99 ${fmt(r.p99Ms, 2)} ms, p99.9 ${fmt(r.p999Ms, 2)} ms, ` +
            `generator late p99 ${fmt(r.latenessP99Ms, 2)} ms${r.backgroundCores >= 0.1 ? `, background CPU ${r.backgroundCores.toFixed(2)} cores` : ''}${r.errors ? `, ${r.errors} ERRORS` : ''}`,
        );
      }
    }
    const levelRows = open.map((t): OpenRow => {
      const rs = reps.get(t.id) ?? [];
      const pids = t.pids();
      if (pids.length && !peakResettable.get(t.id)) notes.push(`peak RSS of ${t.id} could not be reset between scenarios: it is the process's lifetime peak`);
      return {
        scenario: OPEN_SCENARIO,
        level,
        rate,
        connections: s.openConnections,
        target: t.id,
        label: TARGET_LABELS[t.id],
        achievedRps: median(rs.map((r) => r.achievedRps)),
        p50Ms: median(rs.map((r) => r.p50Ms)),
        p90Ms: median(rs.map((r) => r.p90Ms)),
        p99Ms: median(rs.map((r) => r.p99Ms)),
        p999Ms: median(rs.map((r) => r.p999Ms)),
        maxMs: Math.max(...rs.map((r) => r.maxMs)),
        latenessP99Ms: median(rs.map((r) => r.latenessP99Ms)),
        latenessMaxMs: Math.max(...rs.map((r) => r.latenessMaxMs)),
        maxQueue: Math.max(...rs.map((r) => r.maxQueue)),
        cpuUsPerReq: medianOrNull(rs.map((r) => r.cpuUsPerReq)),
        peakRssMB: pids.length ? peakRss(pids) / 2 ** 20 : null,
        backgroundCores: Math.max(0, ...rs.map((r) => r.backgroundCores)),
        errors: rs.reduce((a, r) => a + r.errors, 0),
        vsRef: null,
        reps: rs,
      };
    });
    const ref = levelRows.find((r) => r.target === REFERENCE);
    for (const r of levelRows) if (ref && r !== ref) r.vsRef = { p99: r.p99Ms / ref.p99Ms, p999: r.p999Ms / ref.p999Ms };
    out.push(...levelRows);
  }
  return { baseRps, baseFrom, rows: out };
}

// ---------------------------------------------------------------- rounds: the session GET comparison, again

interface RoundRow {
  round: number;
  concurrency: number;
  target: TargetId;
  label: string;
  rps: number;
  p99Ms: number;
  cpuUsPerReq: number | null;
  vsRef: { rps: number; p99: number; cpu: number | null } | null;
  vsNginxLua: { rps: number; p99: number } | null;
  errors: number;
}

function roundRowsOf(round: number, rows: Row[]): RoundRow[] {
  return rows
    .filter((r) => r.scenario === 'session-get' && ROUND_TARGETS.includes(r.target))
    .map((r) => ({ round, concurrency: r.concurrency, target: r.target, label: r.label, rps: r.rps, p99Ms: r.p99Ms, cpuUsPerReq: r.cpuUsPerReq, vsRef: r.vsRef, vsNginxLua: r.vsNginxLua, errors: r.errors }));
}

/** Rounds 2..N: session GET only, for the reference(s), coatcheck and nginx + lua, interleaved as in round 1. */
async function runRounds(env: Env, s: Settings, targets: Target[], sessions: Map<TargetId, string[]>, rows: Row[]): Promise<RoundRow[]> {
  const out = roundRowsOf(1, rows);
  const ts = targets.filter((t) => ROUND_TARGETS.includes(t.id));
  const scenario = SCENARIOS[0] as Scenario;
  for (let round = 2; round <= s.rounds && ts.length > 0; round++) {
    log(`session GET, round ${round} of ${s.rounds}`);
    for (const c of s.concurrencies) out.push(...roundRowsOf(round, await runCell(env, s, ts, sessions, scenario, c)));
  }
  return out;
}

// ---------------------------------------------------------------- Redis: memory and a large keyspace

interface RedisMemory {
  /** MEMORY USAGE of a real 3-cookie session (SAMPLES 0), in bytes. */
  memoryUsage3: number;
  /** Its type and encoding (`string/raw` for coatcheck's one-string records). */
  encoding3: string;
  /** Bytes of the stored value (header and sealed record). */
  valueBytes3: number;
  /** name=value bytes of its three app cookies, as the app set them. */
  appCookieBytes3: number;
  /** Keys other than session records that sessions made (family indexes: only after a renewal). */
  otherKeys: number;
  /** The same for a session of the hot path (5 cookies, 560 bytes of name=value). */
  memoryUsageHot: number;
  encodingHot: string;
  /** INFO used_memory growth per preloaded copy of the 3-cookie session. */
  infoBytesPerSession: number | null;
  preloaded: number;
}

async function keyFacts(redis: BenchRedis, key: string): Promise<{ usage: number; encoding: string; bytes: number }> {
  const c = redis.client;
  const usage = Number(await c.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'));
  const encoding = `${await c.type(key)}/${String(await c.call('OBJECT', 'ENCODING', key))}`;
  const bytes = encoding.startsWith('string') ? await c.strlen(key) : 0;
  return { usage, encoding, bytes };
}

async function measureRedisMemory(
  redis: BenchRedis,
  upstream: Upstream,
  cc: Target,
  hotTicketCookie: string,
): Promise<{ mem: RedisMemory; sampleKey: string; storeKey: string }> {
  // A 3-cookie session created through coatcheck: a real record (hashed key, sealed value).
  const [small] = await login(cc.origin, 'small3', 1);
  const { key, storeKey } = await sessionKeyOf(redis.client, ticketOf(small as string, 'coatcheck'), COATCHECK_SECRET, COATCHECK_PREFIX);
  const f3 = await keyFacts(redis, key);
  // The app's own name=value bytes for such a login (asked directly, not through coatcheck).
  const [direct] = await login(upstream.origin, 'small3', 1);
  const appCookieBytes3 = (direct as string).split('; ').reduce((n, pair) => n + pair.length, 0);
  const hot = await sessionKeyOf(redis.client, ticketOf(hotTicketCookie, 'coatcheck'), COATCHECK_SECRET, COATCHECK_PREFIX);
  const fh = await keyFacts(redis, hot.key);
  const otherKeys = (await redis.client.keys(`${COATCHECK_PREFIX}*`)).filter((k) => !k.startsWith(`${COATCHECK_PREFIX}s:`)).length;
  return {
    sampleKey: key,
    storeKey,
    mem: {
      memoryUsage3: f3.usage,
      encoding3: f3.encoding,
      valueBytes3: f3.bytes,
      appCookieBytes3,
      otherKeys,
      memoryUsageHot: fh.usage,
      encodingHot: fh.encoding,
      infoBytesPerSession: null,
      preloaded: 0,
    },
  };
}

interface ScaleResult {
  concurrency: number;
  liveSessionsSmall: number;
  liveSessionsLarge: number;
  preloadSec: number;
  /** req/s with the small keyspace, before the preload and after removing it again (A/B/A, so drift cancels). `minimal`: the reference (engine) as a control. */
  coatcheck: { rpsSmallBefore: number; rpsLarge: number; rpsSmallAfter: number; ratio: number; p99Small: number; p99Large: number; redisUsSmall: number | null; redisUsLarge: number | null };
  minimal: { rpsSmallBefore: number; rpsLarge: number; rpsSmallAfter: number; ratio: number } | null;
}

async function runScale(
  env: Env,
  s: Settings,
  redis: BenchRedis,
  targets: Target[],
  sessions: Map<TargetId, string[]>,
  snap: Awaited<ReturnType<typeof snapshot>>,
  sample: { key: string; storeKey: string },
  mem: RedisMemory,
): Promise<ScaleResult | null> {
  const cc = targets.find((t) => t.id === 'coatcheck-redis');
  if (!cc) return null;
  const minimal = targets.find((t) => t.id === REFERENCE);
  const pair = minimal ? [cc, minimal] : [cc];
  const live = (sessions.get('coatcheck-redis') ?? []).length;
  const scenario = SCENARIOS[0] as Scenario;
  const c = s.scaleConcurrency;
  // Each phase starts with a warm-up: after a preload or a flush the pools have gone idle.
  const measurePair = async (): Promise<Map<TargetId, Rep[]>> => {
    const out = new Map<TargetId, Rep[]>(pair.map((t) => [t.id, []]));
    for (const t of pair) await measure(env, t, scenario.load(sessions.get(t.id) ?? []), undefined, c, s.warmupSec || 1);
    for (let rep = 0; rep < s.scaleReps; rep++) {
      for (const t of rep % 2 ? [...pair].reverse() : pair) {
        const { rep: r } = await measure(env, t, scenario.load(sessions.get(t.id) ?? []), scenario, c, s.durationSec);
        out.get(t.id)?.push(r);
      }
    }
    return out;
  };
  // Back to the state right after set-up: only the bench's own live sessions.
  await restore(redis.client, snap);
  log(`session scale: ${live} live coatcheck sessions in Redis, session GET at c=${c}`);
  const before = await measurePair();
  const copies = s.scaleSessions - live;
  const dump = await redis.client.dumpBuffer(sample.key);
  const base = sample.key.slice(0, sample.key.length - sample.storeKey.length);
  const m0 = await usedMemory(redis.client);
  const t0 = Date.now();
  log(`preloading ${copies} copies of a real 3-cookie session (DUMP/RESTORE, pipelined)…`);
  await preloadCopies(redis.client, base, dump, copies, 3_600_000);
  const preloadSec = (Date.now() - t0) / 1000;
  const m1 = await usedMemory(redis.client);
  mem.infoBytesPerSession = (m1 - m0) / copies;
  mem.preloaded = copies;
  log(`preloaded in ${preloadSec.toFixed(1)} s; ${Math.round(mem.infoBytesPerSession)} bytes per session (INFO used_memory); session GET at c=${c}`);
  const large = await measurePair();
  await restore(redis.client, snap);
  log(`copies removed again; session GET at c=${c}`);
  const after = await measurePair();
  const med = (m: Map<TargetId, Rep[]>, id: TargetId, f: (r: Rep) => number) => median((m.get(id) ?? []).map(f));
  const rps = (m: Map<TargetId, Rep[]>, id: TargetId) => med(m, id, (r) => r.rps);
  const facts = (id: TargetId) => {
    const a = rps(before, id);
    const b = rps(large, id);
    const z = rps(after, id);
    return { rpsSmallBefore: a, rpsLarge: b, rpsSmallAfter: z, ratio: b / ((a + z) / 2) };
  };
  const redisUs = (m: Map<TargetId, Rep[]>) => medianOrNull((m.get('coatcheck-redis') ?? []).map((r) => r.redisCpuUsPerReq));
  const result: ScaleResult = {
    concurrency: c,
    liveSessionsSmall: live,
    liveSessionsLarge: s.scaleSessions,
    preloadSec,
    coatcheck: {
      ...facts('coatcheck-redis'),
      p99Small: median([...(before.get('coatcheck-redis') ?? []), ...(after.get('coatcheck-redis') ?? [])].map((r) => r.p99Ms)),
      p99Large: med(large, 'coatcheck-redis', (r) => r.p99Ms),
      redisUsSmall: redisUs(before),
      redisUsLarge: redisUs(large),
    },
    minimal: minimal ? facts(REFERENCE) : null,
  };
  log(
    `session scale: coatcheck ${Math.round(result.coatcheck.rpsSmallBefore)} → ${Math.round(result.coatcheck.rpsLarge)} → ${Math.round(result.coatcheck.rpsSmallAfter)} req/s (×${result.coatcheck.ratio.toFixed(3)})`,
  );
  return result;
}

// ---------------------------------------------------------------- report

function fmt(n: number | null | undefined, digits = 0): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–';
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function ratio(n: number | undefined): string {
  return n === undefined || !Number.isFinite(n) ? '–' : `${n.toFixed(2)}×`;
}

/** A row of a JSON written before the engine-based reference became THE reference (version 1). */
interface LegacyRow {
  vsMinimal?: { rps: number; p99: number } | null;
  vsMinimalEngine?: { rps: number; p99: number } | null;
}
function refOf(r: Row): { rps: number; p99: number; cpu?: number | null } | null | undefined {
  return r.vsRef ?? (r as LegacyRow).vsMinimalEngine;
}

export function table(rows: Row[]): string {
  const head = ['scenario', 'conn', 'target', 'req/s', 'spread', 'p50 ms', 'p99 ms', 'CPU µs/req', 'redis µs/req', 'peak RSS MB', 'rps ÷ ref', 'p99 ÷ ref', 'CPU ÷ ref', 'rps ÷ nginx-lua', 'rps ÷ req-ref', 'rps ÷ bare'];
  const lines = rows.map((r) => [
    r.scenario,
    String(r.concurrency),
    r.label,
    fmt(r.rps),
    `±${fmt(r.spreadPct / 2, 1)}%`,
    fmt(r.p50Ms, 2),
    fmt(r.p99Ms, 2),
    fmt(r.cpuUsPerReq, 0),
    fmt(r.redisCpuUsPerReq, 0),
    fmt(r.peakRssMB, 0),
    ratio(refOf(r)?.rps),
    ratio(refOf(r)?.p99),
    ratio(refOf(r)?.cpu ?? undefined),
    ratio(r.vsNginxLua?.rps),
    ratio((r.vsMinimalRequest ?? (r as LegacyRow).vsMinimal)?.rps),
    ratio(r.vsBare?.rps),
  ]);
  return renderTable(head, lines, 3);
}

/** A Markdown table; columns from `firstNumeric` on are right-aligned. */
function renderTable(head: string[], lines: string[][], firstNumeric: number): string {
  const all = [head, ...lines];
  const widths = head.map((_, i) => Math.max(...all.map((l) => (l[i] as string).length)));
  const numeric = (i: number) => i >= firstNumeric;
  const render = (l: string[]) => `| ${l.map((c, i) => (numeric(i) ? c.padStart(widths[i] as number) : c.padEnd(widths[i] as number))).join(' | ')} |`;
  const sep = `|${widths.map((w, i) => (numeric(i) ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [render(head), sep, ...lines.map(render)].join('\n');
}

export function openTable(rows: OpenRow[]): string {
  const head = ['load', 'rate req/s', 'target', 'achieved', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'gen. late p99/max ms', 'max queue', 'CPU µs/req', 'peak RSS MB', 'p99 ÷ ref', 'p99.9 ÷ ref'];
  const lines = rows.map((r) => [
    `${Math.round(r.level * 100)}%`,
    fmt(r.rate),
    r.label,
    fmt(r.achievedRps),
    fmt(r.p50Ms, 2),
    fmt(r.p90Ms, 2),
    fmt(r.p99Ms, 2),
    fmt(r.p999Ms, 2),
    fmt(r.maxMs, 1),
    `${fmt(r.latenessP99Ms, 2)} / ${fmt(r.latenessMaxMs, 1)}`,
    fmt(r.maxQueue),
    fmt(r.cpuUsPerReq, 0),
    fmt(r.peakRssMB, 0),
    ratio(r.vsRef?.p99),
    ratio(r.vsRef?.p999),
  ]);
  return renderTable(head, lines, 3);
}

export function roundsTable(rows: RoundRow[]): string {
  const rounds = [...new Set(rows.map((r) => r.round))].sort((a, b) => a - b);
  const keys = [...new Map(rows.map((r) => [`${r.concurrency} ${r.target}`, r])).values()];
  const head = ['conn', 'target', ...rounds.map((k) => `round ${k} req/s (÷ ref)`)];
  const lines = keys.map((k) => [
    String(k.concurrency),
    k.label,
    ...rounds.map((round) => {
      const r = rows.find((x) => x.round === round && x.concurrency === k.concurrency && x.target === k.target);
      return r ? `${fmt(r.rps)}${r.vsRef ? ` (${ratio(r.vsRef.rps)})` : ''}` : '–';
    }),
  ]);
  return renderTable(head, lines, 2);
}

function verdicts(rows: Row[], scale: ScaleResult | null, mem: RedisMemory | null, open: OpenLoopResultSet | null, rounds: RoundRow[], roundsAsked: number): Verdict[] {
  const out: Verdict[] = [];
  const find = (scenario: ScenarioId, c: number, t: TargetId) => rows.find((r) => r.scenario === scenario && r.concurrency === c && r.target === t);
  const concs = [...new Set(rows.map((r) => r.concurrency))];
  const refLabel = TARGET_LABELS[REFERENCE];
  const roundNumbers = [...new Set(rounds.map((r) => r.round))].sort((a, b) => a - b);
  for (const cc of ['coatcheck-redis', 'coatcheck-memory'] as const) {
    // Session GET ≥ 1.0× the reference at c=32 and c=128, in each round.
    const cells = rounds.filter((r) => r.target === cc && r.vsRef !== null && (r.concurrency === 32 || r.concurrency === 128));
    if (cells.length > 0) {
      const failed = roundNumbers.filter((k) => cells.some((r) => r.round === k && (r.vsRef as { rps: number }).rps < 1.0));
      const complete = roundNumbers.length >= roundsAsked && [32, 128].every((c) => cells.some((r) => r.concurrency === c));
      out.push({
        id: `session-get-rounds-${cc}`,
        target: `session GET ≥ 1.0× the ${refLabel} at c=32 and c=128 ${roundsAsked === 1 ? 'in one round' : `in each of ${roundsAsked} consecutive rounds`} (${TARGET_LABELS[cc]})`,
        met: failed.length > 0 ? false : complete ? true : null,
        detail:
          (failed.length > 0 ? `not met in round ${failed.join(', ')}` : complete ? 'met in each round' : 'met where measured (not every round or concurrency ran)') +
          ': ' +
          roundNumbers.map((k) => `round ${k}: ${cells.filter((r) => r.round === k).map((r) => `c=${r.concurrency} ${ratio(r.vsRef?.rps)}`).join(', ')}`).join('; '),
      });
    }
    const lua = rounds.filter((r) => r.target === cc && r.vsNginxLua !== null);
    if (lua.length > 0) {
      const failed = roundNumbers.filter((k) => lua.some((r) => r.round === k && (r.vsNginxLua as { rps: number }).rps < 0.6));
      out.push({
        id: `nginx-lua-${cc}`,
        target: `session GET ≥ 0.6× nginx + lua + Redis (1 worker), each round (${TARGET_LABELS[cc]})`,
        met: failed.length === 0,
        detail:
          (failed.length ? `not met in round ${failed.join(', ')}` : 'met in each round') +
          ': ' +
          roundNumbers.map((k) => `round ${k}: ${lua.filter((r) => r.round === k).map((r) => `c=${r.concurrency} ${ratio(r.vsNginxLua?.rps)}`).join(', ')}`).join('; '),
      });
    }
    const cpuCells = concs.map((c) => find('session-get', c, cc)).filter((r): r is Row => r !== undefined && r.vsRef?.cpu != null);
    if (cpuCells.length > 0) {
      out.push({
        id: `cpu-${cc}`,
        target: `session GET CPU per request ≤ 1.1× the ${refLabel}'s (whole process, utime+stime, every thread) (${TARGET_LABELS[cc]})`,
        met: cpuCells.every((r) => (r.vsRef?.cpu as number) <= 1.1),
        detail: cpuCells.map((r) => `c=${r.concurrency}: ${fmt(r.cpuUsPerReq)} µs vs ${fmt((r.cpuUsPerReq as number) / (r.vsRef?.cpu as number))} = ${ratio(r.vsRef?.cpu as number)}`).join('; '),
      });
    }
    const openCells = (open?.rows ?? []).filter((r) => r.target === cc && r.vsRef !== null);
    if (openCells.length > 0) {
      out.push({
        id: `open-loop-tail-${cc}`,
        target: `open-loop session GET at 50% and 80% of the reference's maximum: p99 and p99.9 ≤ 1.2× the ${refLabel}'s (${TARGET_LABELS[cc]})`,
        met: openCells.every((r) => (r.vsRef as { p99: number }).p99 <= 1.2 && (r.vsRef as { p999: number }).p999 <= 1.2),
        detail: openCells
          .map((r) => `${Math.round(r.level * 100)}% (${fmt(r.rate)} req/s): p99 ${fmt(r.p99Ms, 2)} ms = ${ratio(r.vsRef?.p99)}, p99.9 ${fmt(r.p999Ms, 2)} ms = ${ratio(r.vsRef?.p999)}`)
          .join('; '),
      });
    }
    const upd = concs.map((c) => find('cookie-update', c, cc)).filter((r): r is Row => r !== undefined && r.vsRef?.cpu != null);
    if (upd.length > 0) {
      out.push({
        id: `cookie-update-cpu-${cc}`,
        target: `cookie update CPU per request ≤ 1.3× the ${refLabel}'s (${TARGET_LABELS[cc]})`,
        met: upd.every((r) => (r.vsRef?.cpu as number) <= 1.3),
        detail: upd.map((r) => `c=${r.concurrency}: ${fmt(r.cpuUsPerReq)} µs = ${ratio(r.vsRef?.cpu as number)}`).join('; '),
      });
    }
    const churn = concs.map((c) => find('login-churn', c, cc)).filter((r): r is Row => r !== undefined);
    if (churn.length > 0) {
      out.push({
        id: `login-churn-${cc}`,
        target: `login churn, reported (${TARGET_LABELS[cc]})`,
        met: null,
        detail: churn.map((r) => `c=${r.concurrency}: ${fmt(r.rps)} req/s (${ratio(r.vsRef?.rps)} the reference), ${fmt(r.cpuUsPerReq)} µs CPU/req (${ratio(r.vsRef?.cpu ?? undefined)})`).join('; '),
      });
    }
  }
  out.push({
    id: 'session-scale',
    target: 'throughput with 1 000 000 live sessions in Redis within 5% of 1 000',
    met: scale ? scale.coatcheck.ratio >= 0.95 : null,
    detail: scale
      ? `coatcheck (Redis) c=${scale.concurrency}: ${fmt(scale.coatcheck.rpsLarge)} req/s with ${fmt(scale.liveSessionsLarge)} sessions vs ${fmt(scale.coatcheck.rpsSmallBefore)} and ${fmt(scale.coatcheck.rpsSmallAfter)} with ${fmt(scale.liveSessionsSmall)} (before and after): ×${scale.coatcheck.ratio.toFixed(3)}` +
        (scale.minimal ? `; minimal reference as a control: ×${scale.minimal.ratio.toFixed(3)}` : '')
      : 'not measured (quick mode, a subset run without --scale, or no redis-server)',
  });
  out.push({
    id: 'redis-memory',
    target: 'Redis memory ≤ 600 bytes per 3-cookie session',
    met: mem ? mem.memoryUsage3 <= 600 && (mem.infoBytesPerSession === null || mem.infoBytesPerSession <= 600) : null,
    detail: mem
      ? `MEMORY USAGE ${mem.memoryUsage3} bytes (${mem.encoding3}, a ${mem.valueBytes3}-byte value for ${mem.appCookieBytes3} bytes of app cookies; ${mem.otherKeys} other keys)` +
        (mem.infoBytesPerSession !== null ? `; INFO used_memory ${fmt(mem.infoBytesPerSession)} bytes per session over ${fmt(mem.preloaded)} copies` : '')
      : 'not measured (no redis-server)',
  });
  // Every scenario at 128 connections, the open-loop one included (it holds 128 connections open too).
  const rss = [
    ...rows.filter((r) => r.concurrency === 128).map((r) => ({ label: r.label, target: r.target, scenario: r.scenario as string, mb: r.peakRssMB })),
    ...(open?.rows ?? []).filter((r) => r.connections === 128).map((r) => ({ label: r.label, target: r.target, scenario: `${r.scenario} ${Math.round(r.level * 100)}%`, mb: r.peakRssMB })),
  ].filter((r) => r.target.startsWith('coatcheck') && r.mb !== null);
  const worst = rss.reduce<(typeof rss)[number] | undefined>((w, r) => (!w || (r.mb as number) > (w.mb as number) ? r : w), undefined);
  out.push({
    id: 'peak-rss',
    target: 'coatcheck peak RSS ≤ 150 MB at 128 connections in every scenario',
    met: worst ? (worst.mb as number) <= 150 : null,
    detail: worst ? `highest: ${fmt(worst.mb, 1)} MB (${worst.label}, ${worst.scenario}; ${rss.length} cells)` : 'not measured at 128 connections',
  });
  return out;
}


export interface BenchResult {
  version: number;
  mode: 'full' | 'quick';
  ok: boolean;
  startedAt: string;
  elapsedSec: number;
  machine: Record<string, string | number>;
  settings: Settings;
  quietWaitSec: number;
  targetsRun: TargetId[];
  notes: string[];
  problems: string[];
  results: Row[];
  sessionScale: ScaleResult | null;
  redisMemory: RedisMemory | null;
  /** session-get-open: the open-loop session GET (null when it did not run). */
  openLoop: OpenLoopResultSet | null;
  /** The session GET comparison per round (round 1: the scenarios' own cells). */
  rounds: RoundRow[];
  goals: Verdict[];
}

/** The text report: the table, the Redis facts and the targets (also `--render FILE` for a saved JSON). */
export function renderReport(r: BenchResult): string {
  const out: string[] = [];
  out.push(`\ncoatcheck bench (${r.mode}): ${r.machine.nproc} × ${r.machine.cpuModel}, ${r.machine.memoryGiB} GiB, node ${r.machine.node}, redis ${r.machine.redis}, load from ${r.machine.generator}`);
  if (r.machine.pinning) out.push(`CPU pinning: ${r.machine.pinning}`);
  out.push(
    r.settings.parallel
      ? 'quick mode: every target loaded at the same time, once, for about a second: a smoke test of the bench, these numbers mean nothing\n'
      : `${r.settings.reps} × ${r.settings.durationSec} s per cell after ${r.settings.warmupSec} s warm-up; median of the repetitions, spread = ±half the min–max range\n`,
  );
  out.push(table(r.results));
  if (r.openLoop && r.openLoop.rows.length > 0) {
    out.push(
      `\nOpen loop (${OPEN_SCENARIO}): session GET at a fixed arrival rate, ${r.openLoop.rows[0]?.connections} keep-alive connections, latency from each request's due time; ` +
        `rates = 50% / 80% of ${fmt(r.openLoop.baseRps)} req/s (${r.openLoop.baseFrom}); ${r.settings.openReps} × ${r.settings.openDurationSec} s after ${r.settings.openWarmupSec} s warm-up, medians\n`,
    );
    out.push(openTable(r.openLoop.rows));
  }
  if (r.rounds && new Set(r.rounds.map((x) => x.round)).size > 1) {
    out.push(`\nSession GET in ${new Set(r.rounds.map((x) => x.round)).size} consecutive rounds (round 1 is the table above; ratios to the ${TARGET_LABELS[REFERENCE]} of the same round):\n`);
    out.push(roundsTable(r.rounds));
  }
  const scale = r.sessionScale;
  if (scale) {
    out.push(
      `\nLive sessions in Redis, session GET at c=${scale.concurrency}: coatcheck ${fmt(scale.coatcheck.rpsSmallBefore)} req/s with ${fmt(scale.liveSessionsSmall)}, ` +
        `${fmt(scale.coatcheck.rpsLarge)} with ${fmt(scale.liveSessionsLarge)}, ${fmt(scale.coatcheck.rpsSmallAfter)} with ${fmt(scale.liveSessionsSmall)} again (×${scale.coatcheck.ratio.toFixed(3)})` +
        (scale.minimal ? `; minimal reference ×${scale.minimal.ratio.toFixed(3)}` : ''),
    );
  }
  const mem = r.redisMemory;
  if (mem) {
    out.push(
      `Redis memory, 3-cookie session: MEMORY USAGE ${mem.memoryUsage3} bytes (${mem.encoding3})` +
        (mem.infoBytesPerSession !== null ? `, INFO used_memory ${fmt(mem.infoBytesPerSession)} bytes/session over ${fmt(mem.preloaded)} copies` : '') +
        `; hot-path 5-cookie session ${mem.memoryUsageHot} bytes (${mem.encodingHot}); keys other than session records: ${mem.otherKeys}`,
    );
  }
  out.push('\nTargets:');
  for (const g of r.goals) out.push(`  [${g.met === null ? 'n/a' : g.met ? 'met' : 'NOT met'}] ${g.target}: ${g.detail}`);
  for (const n of r.notes) out.push(`note: ${n}`);
  for (const p of r.problems) out.push(`PROBLEM: ${p}`);
  return out.join('\n');
}

// ---------------------------------------------------------------- main

interface Filters {
  scenarios: AnyScenarioId[] | undefined;
  rounds: number | undefined;
  targets: TargetId[] | undefined;
  concurrencies: number[] | undefined;
  reps: number | undefined;
  /** Run the 1 000 vs 1 000 000 sessions comparison (when coatcheck (Redis) runs). */
  scale: boolean;
  /** Anything other than the full run was asked for (it then writes subset.json, not latest.json). */
  subset: boolean;
  describe: string;
}

function listOf<T extends string>(flag: string, raw: string | undefined, known: readonly T[]): T[] | undefined {
  if (raw === undefined) return undefined;
  const items = raw
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '');
  const bad = items.filter((x) => !(known as readonly string[]).includes(x));
  if (items.length === 0 || bad.length > 0) throw new Error(`--${flag}: unknown ${bad.length ? `"${bad.join('", "')}"` : 'empty list'} (one or more of: ${known.join(', ')})`);
  return [...new Set(items)] as T[];
}

/**
 * `--scenarios`, `--targets`, `--concurrency`, `--reps` and `--[no-]scale`: run a part of the bench.
 * Without them the run is the full one. A subset skips the 1 000 000-session run unless `--scale`.
 */
function parseFilters(values: {
  scenarios?: string;
  targets?: string;
  concurrency?: string;
  reps?: string;
  rounds?: string;
  scale?: boolean;
  'no-scale'?: boolean;
  'node-args'?: string;
}): Filters {
  const scenarios = listOf<AnyScenarioId>('scenarios', values.scenarios, [...SCENARIOS.map((x) => x.id), OPEN_SCENARIO]);
  const targets = listOf('targets', values.targets, MAIN_TARGETS);
  let concurrencies: number[] | undefined;
  if (values.concurrency !== undefined) {
    const items = values.concurrency.split(',').map((x) => x.trim());
    if (items.some((x) => !/^[1-9]\d{0,4}$/.test(x))) throw new Error(`--concurrency: expected connection counts like 32,128, got "${values.concurrency}"`);
    concurrencies = [...new Set(items.map(Number))];
  }
  let reps: number | undefined;
  if (values.reps !== undefined) {
    if (!/^[1-9]\d?$/.test(values.reps.trim())) throw new Error(`--reps: expected a number of repetitions from 1 to 99, got "${values.reps}"`);
    reps = Number(values.reps.trim());
  }
  let rounds: number | undefined;
  if (values.rounds !== undefined) {
    if (!/^[1-9]$/.test(values.rounds.trim())) throw new Error(`--rounds: expected a number of rounds from 1 to 9, got "${values.rounds}"`);
    rounds = Number(values.rounds.trim());
  }
  if (values.scale && values['no-scale']) throw new Error('--scale and --no-scale contradict each other');
  const subset =
    scenarios !== undefined ||
    targets !== undefined ||
    concurrencies !== undefined ||
    reps !== undefined ||
    (rounds !== undefined && rounds !== FULL.rounds) ||
    values['no-scale'] === true ||
    values['node-args'] !== undefined;
  const scale = values.scale === true || (!subset && values['no-scale'] !== true);
  const parts: string[] = [];
  if (scenarios) parts.push(`scenarios ${scenarios.join(',')}`);
  if (targets) parts.push(`targets ${targets.join(',')}`);
  if (concurrencies) parts.push(`concurrency ${concurrencies.join(',')}`);
  if (reps !== undefined) parts.push(`${reps} repetitions`);
  if (rounds !== undefined) parts.push(`${rounds} session GET round${rounds === 1 ? '' : 's'}`);
  parts.push(scale ? 'with the 1 000 000-session run' : 'without the 1 000 000-session run');
  return { scenarios, targets, concurrencies, reps, rounds, scale, subset, describe: parts.join('; ') };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      quick: { type: 'boolean', default: false },
      out: { type: 'string' },
      generator: { type: 'string' },
      profile: { type: 'boolean', default: false },
      'profile-target': { type: 'string' },
      'no-pin': { type: 'boolean', default: false },
      render: { type: 'string' },
      scenarios: { type: 'string' },
      targets: { type: 'string' },
      concurrency: { type: 'string' },
      reps: { type: 'string' },
      rounds: { type: 'string' },
      scale: { type: 'boolean' },
      'no-scale': { type: 'boolean' },
      'node-args': { type: 'string' },
    },
  });
  if (values.render !== undefined) {
    process.stdout.write(`${renderReport(JSON.parse(readFileSync(values.render, 'utf8')) as BenchResult)}\n`);
    return 0;
  }
  const filter = parseFilters(values);
  const profileTarget = values['profile-target'];
  if (profileTarget !== undefined && !(PROFILABLE as readonly string[]).includes(profileTarget)) {
    throw new Error(`--profile-target: expected one of ${PROFILABLE.join(', ')}, got "${profileTarget}"`);
  }
  const s: Settings = { ...(values.quick ? QUICK : FULL) };
  if (filter.concurrencies) s.concurrencies = filter.concurrencies;
  if (filter.reps !== undefined) {
    s.reps = filter.reps;
    s.openReps = Math.min(s.openReps, filter.reps);
  }
  // Three consecutive rounds in the full run; a subset run does one unless --rounds says otherwise.
  s.rounds = filter.rounds ?? (filter.subset && s.mode === 'full' ? 1 : s.rounds);
  if (!filter.scale) s.scaleSessions = 0;
  // Quick mode checks that the bench works, not speed: it never waits for a quiet machine.
  if (s.mode === 'quick') quiet.budgetSec = 0;
  if (values.generator !== undefined && values.generator !== 'wrk' && values.generator !== 'autocannon') {
    throw new Error(`--generator must be wrk or autocannon, got ${values.generator}`);
  }
  const generator: GeneratorName = (values.generator as GeneratorName | undefined) ?? (onPath('wrk') ? 'wrk' : 'autocannon');
  if (generator === 'wrk' && !onPath('wrk')) throw new Error('--generator wrk: wrk is not on PATH');
  if (generator === 'autocannon' && values.generator === undefined) notes.push('wrk is not on PATH: load from autocannon (a Node process: it takes more CPU from the proxies than wrk)');
  const nproc = Number(commandOutput('nproc', []) ?? cpus().length);
  // Pinning is for measuring; quick mode loads every target at once, which one CPU could not take.
  if (!values['no-pin'] && !s.parallel && nproc >= 2 && onPath('taskset')) {
    setPinning({ proxy: String(nproc - 1), rest: nproc === 2 ? '0' : `0-${nproc - 2}` });
  } else {
    notes.push('CPU pinning off: every process may run on any CPU');
  }
  const started = Date.now();
  const tmpDir = registerTempDir(await mkdtemp(join(tmpdir(), 'coatcheck-bench-run-')));
  const info = machine(generator);
  const pin = currentPinning();
  info.pinning = pin ? `proxy under test on CPU ${pin.proxy}; load generator, upstream and Redis on CPU ${pin.rest}` : 'off';
  log(`${s.mode} mode; ${info.nproc} cores (${info.cpuModel}), node ${info.node}, redis ${info.redis}, wrk ${info.wrk}, nginx ${info.nginx}; load from ${generator}`);

  const upstream = await startUpstream();
  const hasRedis = onPath('redis-server');
  const redis = hasRedis ? await startRedis() : undefined;
  if (!redis) notes.push('redis-server is not on PATH: the minimal reference, coatcheck (Redis) and the Redis measurements are skipped');
  const env: Env = { targets: [], upstream, redis, generator, tmpDir };

  if (values.profile || profileTarget !== undefined) {
    if (!redis) throw new Error('--profile needs redis-server');
    const which = (profileTarget ?? 'coatcheck-redis') as Profilable;
    const text = await profile(env, which);
    process.stdout.write(text);
    await rm(tmpDir, { recursive: true, force: true });
    return 0;
  }

  const want = (id: TargetId) => filter.targets === undefined || filter.targets.includes(id);
  const targets: Target[] = [];
  if (want('direct')) targets.push(directTarget(upstream));
  if (want('bare')) targets.push(await startBare(upstream));
  if (redis && want('minimal')) targets.push(await startMinimal(upstream, redis.url));
  if (redis && want('minimal-engine')) targets.push(await startMinimal(upstream, redis.url, 'coatcheck'));
  // --node-args: options for coatcheck's node process (e.g. V8 flags), the bench's other processes keep theirs.
  const ccArgs = values['node-args']?.split(/\s+/).filter((a) => a !== '') ?? [];
  if (ccArgs.length > 0) notes.push(`coatcheck ran as node ${ccArgs.join(' ')} dist/cli.js`);
  if (want('coatcheck-memory')) targets.push(await startCoatcheck(upstream, { kind: 'memory' }, ccArgs));
  // Quick mode loads every target at once on a machine that may be running other tests: a store
  // round trip can then take longer than production's 250 ms, and a 503 would fail the smoke test
  // for what is the machine's load, not a fault of the bench.
  const storeTimeout = s.mode === 'quick' ? { timeout: '5s' } : {};
  if (redis && want('coatcheck-redis')) targets.push(await startCoatcheck(upstream, { kind: 'redis', url: redis.url, ...storeTimeout }, ccArgs));
  if (want('nginx')) {
    if (onPath('nginx')) targets.push(await startNginx(upstream));
    else notes.push('nginx is not on PATH: its row is skipped');
  }
  if (want('nginx-lua')) {
    const support = onPath('nginx') ? nginxLuaSupport(commandOutput('nginx', ['-V'], true) ?? '') : ({ ok: false, reason: 'nginx is not on PATH' } as const);
    if (!redis) notes.push('nginx + lua is skipped: it needs redis-server');
    else if (!support.ok) notes.push(`nginx + lua is skipped: ${support.reason}`);
    else targets.push(await startNginxLua(upstream, redis.url, support));
  }
  if (filter.subset) notes.push(`a subset run: ${filter.describe}`);
  env.targets = targets;
  log(`targets: ${targets.map((t) => `${t.id} ${t.origin}`).join(', ')}`);

  // Real sessions, created through each target (a login whose response sets the app's 5 cookies).
  const sessions = new Map<TargetId, string[]>();
  for (const t of targets) sessions.set(t.id, await login(t.origin, 'hot', s.sessions));
  log(`${s.sessions} sessions created through each target`);

  let mem: RedisMemory | null = null;
  let sample: { key: string; storeKey: string } | undefined;
  const ccRedis = targets.find((t) => t.id === 'coatcheck-redis');
  if (redis && ccRedis) {
    const m = await measureRedisMemory(redis, upstream, ccRedis, (sessions.get('coatcheck-redis') as string[])[0] as string);
    mem = m.mem;
    sample = { key: m.sampleKey, storeKey: m.storeKey };
    log(`Redis memory: a 3-cookie session takes ${mem.memoryUsage3} bytes (MEMORY USAGE, ${mem.encoding3})`);
  }
  const snap = redis ? await snapshot(redis.client) : undefined;

  if (s.initialWarmupSec > 0) {
    const hot = SCENARIOS[0] as Scenario;
    for (const t of targets) await measure(env, t, hot.load(sessions.get(t.id) ?? []), undefined, s.concurrencies[0] as number, s.initialWarmupSec);
  }

  const rows: Row[] = [];
  for (const scenario of SCENARIOS) {
    if (filter.scenarios && !filter.scenarios.includes(scenario.id)) continue;
    for (const c of s.concurrencies) rows.push(...(await runCell(env, s, targets, sessions, scenario, c)));
  }
  const open = !filter.scenarios || filter.scenarios.includes(OPEN_SCENARIO) ? await runOpen(env, s, targets, sessions, rows) : null;
  // Rounds 2..N of the session GET comparison (round 1 is the session-get cells above).
  const ranSessionGet = rows.some((r) => r.scenario === 'session-get');
  if (filter.rounds !== undefined && s.rounds > 1 && !ranSessionGet) notes.push(`--rounds ${s.rounds}: session-get was not in this run, so no rounds were measured`);
  const rounds = ranSessionGet ? await runRounds(env, s, targets, sessions, rows) : [];

  let scale: ScaleResult | null = null;
  if (redis && snap && sample && mem) {
    if (s.scaleSessions > 0) scale = await runScale(env, s, redis, targets, sessions, snap, sample, mem);
    else if (s.memoryPreload > 0) {
      // Quick mode: no throughput comparison, but the preload path and the INFO delta still run.
      const dump = await redis.client.dumpBuffer(sample.key);
      const m0 = await usedMemory(redis.client);
      await preloadCopies(redis.client, sample.key.slice(0, sample.key.length - sample.storeKey.length), dump, s.memoryPreload, 3_600_000);
      mem.infoBytesPerSession = ((await usedMemory(redis.client)) - m0) / s.memoryPreload;
      mem.preloaded = s.memoryPreload;
    }
  }

  // Every measured cell: the closed-loop ones (round 1), the open-loop ones.
  const cells = [...rows, ...(open?.rows ?? [])];
  const disturbed = cells.filter((r) => r.backgroundCores >= 0.1);
  if (disturbed.length > 0) {
    const worst = Math.max(...disturbed.map((r) => r.backgroundCores));
    notes.push(
      `other processes on the machine used ≥ 0.1 CPU during ${disturbed.length} of ${cells.length} cells (at most ${worst.toFixed(2)} CPUs): those numbers are less reliable (see backgroundCores in the JSON)`,
    );
  }
  const goals = verdicts(rows, scale, mem, open, rounds, ranSessionGet ? s.rounds : 0);
  const result: BenchResult = {
    version: 2,
    mode: s.mode,
    ok: problems.length === 0,
    startedAt: new Date(started).toISOString(),
    elapsedSec: Math.round((Date.now() - started) / 100) / 10,
    machine: info,
    settings: s,
    quietWaitSec: Math.round(quiet.waitedSec * 10) / 10,
    targetsRun: targets.map((t) => t.id),
    notes: [...new Set(notes)],
    problems,
    results: rows,
    sessionScale: scale,
    redisMemory: mem,
    openLoop: open,
    rounds,
    goals,
  };

  // A subset run never replaces latest.json (the full run quoted in bench/README.md).
  const defaultOut = s.mode === 'quick' ? 'quick.json' : filter.subset ? 'subset.json' : 'latest.json';
  const outFile = values.out ? resolve(values.out) : join(REPO_ROOT, 'bench', 'results', defaultOut);
  await mkdir(dirname(outFile), { recursive: true });
  await writeFile(outFile, `${JSON.stringify(result, null, 2)}\n`);
  if (!values.out && s.mode === 'full' && !filter.subset) {
    await writeFile(join(REPO_ROOT, 'bench', 'results', `bench-${new Date(started).toISOString().replace(/[:.]/g, '-')}.json`), `${JSON.stringify(result, null, 2)}\n`);
  }

  const out = [renderReport(result)];
  out.push(`\nJSON: ${outFile} (${result.elapsedSec} s)`);
  process.stdout.write(`${out.join('\n')}\n`);
  await rm(tmpDir, { recursive: true, force: true });
  return problems.length === 0 ? 0 : 1;
}

/** What `--profile` can run under the profiler (the Node proxies). */
const PROFILABLE = ['coatcheck-redis', 'coatcheck-memory', 'minimal-engine', 'minimal', 'bare'] as const;
type Profilable = (typeof PROFILABLE)[number];

/**
 * `--profile [TARGET]`: one Node proxy (coatcheck (Redis) unless named) under the session GET
 * load with --cpu-prof; prints the top self-time functions. Profiling a reference the same way
 * shows what coatcheck does that it does not.
 */
async function profile(env: Env, which: Profilable): Promise<string> {
  const redis = env.redis as BenchRedis;
  const dir = join(env.tmpDir, 'prof');
  await mkdir(dir, { recursive: true });
  const args = ['--cpu-prof', `--cpu-prof-dir=${dir}`];
  const target =
    which === 'coatcheck-redis'
      ? await startCoatcheck(env.upstream, { kind: 'redis', url: redis.url }, args)
      : which === 'coatcheck-memory'
        ? await startCoatcheck(env.upstream, { kind: 'memory' }, args)
        : which === 'bare'
          ? await startBare(env.upstream, args)
          : await startMinimal(env.upstream, redis.url, which === 'minimal' ? 'request' : 'coatcheck', args);
  env.targets = [target];
  const sessions = await login(target.origin, 'hot', 1000);
  const load = (SCENARIOS[0] as Scenario).load(sessions);
  await measure(env, target, load, undefined, 128, 3);
  const { rep } = await measure(env, target, load, SCENARIOS[0], 128, 10);
  await target.stop();
  const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile'));
  if (files.length === 0) throw new Error(`${TARGET_LABELS[which]} wrote no CPU profile`);
  const json = readFileSync(join(dir, files[0] as string), 'utf8');
  const kept = join(REPO_ROOT, 'bench', 'results', `${which}-session-get.cpuprofile`);
  await mkdir(dirname(kept), { recursive: true });
  await writeFile(kept, json);
  const text = profileSummary(json, REPO_ROOT, 25);
  return (
    `${TARGET_LABELS[which]}, session GET, 128 connections, 10 s (the profile also covers start-up, 1 000 logins and a 3 s warm-up): ` +
    `${fmt(rep.rps)} req/s, ${fmt(rep.cpuUsPerReq)} µs CPU/req under the profiler\n${text}\nprofile kept in ${kept} (open it in Chrome DevTools)\n`
  );
}

let stopping: Promise<void> | undefined;
let exitCode: number | undefined;
/** Stops everything the bench started, then exits; the first caller's status wins (Ctrl-C: 130). */
async function shutdown(code: number): Promise<never> {
  exitCode ??= code;
  stopping ??= stopAll().catch(() => undefined);
  await stopping;
  process.exit(exitCode);
}
process.on('SIGINT', () => void shutdown(130));
process.on('SIGTERM', () => void shutdown(143));

main().then(
  (code) => shutdown(code),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${(err as Error)?.stack ?? String(err)}\n`);
    void shutdown(1);
  },
);
