// `npm run bench`: coatcheck side by side with what a user would pick instead, in one run.
// See bench/README.md for what is measured, how, and the latest results.
//
//   node build/bench/run.js [--quick] [--out FILE] [--generator wrk|autocannon] [--profile [--profile-target T]]
//                           [--scenarios LIST] [--targets LIST] [--concurrency LIST] [--reps N] [--[no-]scale]
//                           [--node-args "ARGS"]
//
// Everything runs on 127.0.0.1, each load for a bounded time, and every process started here
// is stopped at the end (and on an error or Ctrl-C). Exit status: 0 when every target started
// and no request failed; 1 otherwise (the table and the JSON are written either way).
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { cpus, totalmem, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runLoad, type GeneratorName, type Load, type LoadResult } from './lib/loadgen.js';
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
  REPO_ROOT,
  startBare,
  startCoatcheck,
  startMinimal,
  startNginx,
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
};

type ScenarioId = 'session-get' | 'anonymous-get' | 'cookie-update' | 'login-churn';

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
  vsMinimal: { rps: number; p99: number } | null;
  /** The same against the minimal reference built on coatcheck's own forwarding engine. */
  vsMinimalEngine: { rps: number; p99: number } | null;
  vsBare: { rps: number; p99: number } | null;
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
    vsMinimal: null,
    vsMinimalEngine: null,
    vsBare: null,
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
  const minimal = rows.find((r) => r.target === 'minimal');
  const minimalEngine = rows.find((r) => r.target === 'minimal-engine');
  const bare = rows.find((r) => r.target === 'bare');
  for (const r of rows) {
    if (minimal && r !== minimal) r.vsMinimal = { rps: r.rps / minimal.rps, p99: r.p99Ms / minimal.p99Ms };
    if (minimalEngine && r !== minimalEngine) r.vsMinimalEngine = { rps: r.rps / minimalEngine.rps, p99: r.p99Ms / minimalEngine.p99Ms };
    if (bare && r !== bare) r.vsBare = { rps: r.rps / bare.rps, p99: r.p99Ms / bare.p99Ms };
  }
  return rows;
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
  /** The same for a session of the hot path (4 cookies, ~500 bytes of name=value). */
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
  /** req/s with the small keyspace, before the preload and after removing it again (A/B/A, so drift cancels). */
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
  const minimal = targets.find((t) => t.id === 'minimal');
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
    minimal: minimal ? facts('minimal') : null,
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

export function table(rows: Row[]): string {
  const head = ['scenario', 'conn', 'target', 'req/s', 'spread', 'p50 ms', 'p99 ms', 'CPU µs/req', 'redis µs/req', 'peak RSS MB', 'rps ÷ min', 'p99 ÷ min', 'rps ÷ min-e', 'p99 ÷ min-e', 'rps ÷ bare'];
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
    ratio(r.vsMinimal?.rps),
    ratio(r.vsMinimal?.p99),
    ratio(r.vsMinimalEngine?.rps),
    ratio(r.vsMinimalEngine?.p99),
    ratio(r.vsBare?.rps),
  ]);
  const all = [head, ...lines];
  const widths = head.map((_, i) => Math.max(...all.map((l) => (l[i] as string).length)));
  const numeric = (i: number) => i >= 3;
  const render = (l: string[]) => `| ${l.map((c, i) => (numeric(i) ? c.padStart(widths[i] as number) : c.padEnd(widths[i] as number))).join(' | ')} |`;
  const sep = `|${widths.map((w, i) => (numeric(i) ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [render(head), sep, ...lines.map(render)].join('\n');
}

function verdicts(rows: Row[], scale: ScaleResult | null, mem: RedisMemory | null): Verdict[] {
  const out: Verdict[] = [];
  const find = (scenario: ScenarioId, c: number, t: TargetId) => rows.find((r) => r.scenario === scenario && r.concurrency === c && r.target === t);
  const concs = [...new Set(rows.map((r) => r.concurrency))];
  // Against each minimal reference that ran: the one written as a user would (undici's
  // request() API) and the one on coatcheck's own engine (what the session features cost alone).
  const refs = [
    { name: 'minimal reference', pick: (r: Row) => r.vsMinimal },
    { name: "minimal reference on coatcheck's engine", pick: (r: Row) => r.vsMinimalEngine },
  ];
  for (const cc of ['coatcheck-redis', 'coatcheck-memory'] as const) {
    for (const ref of refs) {
      const tp = concs.map((c) => find('session-get', c, cc)).filter((r): r is Row => r !== undefined && ref.pick(r) !== null);
      if (tp.length === 0) continue;
      const vs = (r: Row) => ref.pick(r) as { rps: number; p99: number };
      out.push({
        id: `throughput-${cc}${ref.pick === refs[1]?.pick ? '-engine' : ''}`,
        target: `session GET throughput ≥ 0.9× the ${ref.name} at every concurrency (${TARGET_LABELS[cc]})`,
        met: tp.every((r) => vs(r).rps >= 0.9),
        detail: tp.map((r) => `c=${r.concurrency}: ${fmt(r.rps)} vs ${fmt(r.rps / vs(r).rps)} req/s = ${ratio(vs(r).rps)}`).join('; '),
      });
      out.push({
        id: `p99-${cc}${ref.pick === refs[1]?.pick ? '-engine' : ''}`,
        target: `session GET p99 ≤ 1.2× the ${ref.name}'s (${TARGET_LABELS[cc]})`,
        met: tp.every((r) => vs(r).p99 <= 1.2),
        detail: tp.map((r) => `c=${r.concurrency}: ${fmt(r.p99Ms, 2)} ms = ${ratio(vs(r).p99)}`).join('; '),
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
  const rss = rows.filter((r) => r.concurrency === 128 && r.target.startsWith('coatcheck') && r.peakRssMB !== null);
  const worst = rss.reduce<Row | undefined>((w, r) => (!w || (r.peakRssMB as number) > (w.peakRssMB as number) ? r : w), undefined);
  out.push({
    id: 'peak-rss',
    target: 'proxy peak RSS ≤ 150 MB at 128 connections',
    met: worst ? (worst.peakRssMB as number) <= 150 : null,
    detail: worst ? `highest: ${fmt(worst.peakRssMB, 1)} MB (${worst.label}, ${worst.scenario})` : 'not measured at 128 connections',
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
        `; hot-path 4-cookie session ${mem.memoryUsageHot} bytes (${mem.encodingHot}); keys other than session records: ${mem.otherKeys}`,
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
  scenarios: ScenarioId[] | undefined;
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
  scale?: boolean;
  'no-scale'?: boolean;
  'node-args'?: string;
}): Filters {
  const scenarios = listOf('scenarios', values.scenarios, SCENARIOS.map((x) => x.id));
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
  if (values.scale && values['no-scale']) throw new Error('--scale and --no-scale contradict each other');
  const subset =
    scenarios !== undefined || targets !== undefined || concurrencies !== undefined || reps !== undefined || values['no-scale'] === true || values['node-args'] !== undefined;
  const scale = values.scale === true || (!subset && values['no-scale'] !== true);
  const parts: string[] = [];
  if (scenarios) parts.push(`scenarios ${scenarios.join(',')}`);
  if (targets) parts.push(`targets ${targets.join(',')}`);
  if (concurrencies) parts.push(`concurrency ${concurrencies.join(',')}`);
  if (reps !== undefined) parts.push(`${reps} repetitions`);
  parts.push(scale ? 'with the 1 000 000-session run' : 'without the 1 000 000-session run');
  return { scenarios, targets, concurrencies, reps, scale, subset, describe: parts.join('; ') };
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
  if (filter.reps !== undefined) s.reps = filter.reps;
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
  if (filter.subset) notes.push(`a subset run: ${filter.describe}`);
  env.targets = targets;
  log(`targets: ${targets.map((t) => `${t.id} ${t.origin}`).join(', ')}`);

  // Real sessions, created through each target (a login whose response sets 4 app cookies).
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

  const disturbed = rows.filter((r) => r.backgroundCores >= 0.1);
  if (disturbed.length > 0) {
    const worst = Math.max(...disturbed.map((r) => r.backgroundCores));
    notes.push(
      `other processes on the machine used ≥ 0.1 CPU during ${disturbed.length} of ${rows.length} cells (at most ${worst.toFixed(2)} CPUs): those numbers are less reliable (see backgroundCores in the JSON)`,
    );
  }
  const goals = verdicts(rows, scale, mem);
  const result: BenchResult = {
    version: 1,
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
