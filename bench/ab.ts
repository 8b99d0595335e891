// `node build/bench/ab.js`: an A/B comparison of builds of coatcheck (or of node options), for
// changes whose effect is smaller than the noise between two separate bench runs.
//
//   node build/bench/ab.js --build A=/path/to/old/dist --build B=dist [--node-args B="--flag"]
//                          [--env B=NAME=VALUE] [--store redis|memory] [--path /page|/update] [--concurrency 128]
//                          [--reps 8] [--duration 3] [--reference]
//
// Every build runs as its own process against the same upstream and Redis, pinned like the bench
// (the proxy on the last CPU, the rest on the others). The repetitions alternate between the
// builds (the order flips every time), each after its own 1 s warm-up, so drift of the machine
// hits them alike. It prints, per build, the medians, and per repetition the ratio of each build's
// CPU time per request to the first build's: the figure to trust on a noisy machine. A `dist`
// outside the repository needs the repository's node_modules next to it (copy it under build/).
import { mkdtemp, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runLoad, type GeneratorName, type Load } from './lib/loadgen.js';
import { commandOutput, cpuMicros, freePort, onPath, peakRss, registerTempDir, resetPeakRss, setPinning, startChild, stopAll, waitForPort } from './lib/proc.js';
import { startRedis } from './lib/redis.js';
import { login } from './lib/session.js';
import { coatcheckConfig, REPO_ROOT, startMinimal, startUpstream } from './lib/targets.js';

interface Contender {
  name: string;
  origin: string;
  pid: number;
  sessions: string[];
  reps: Array<{ cpuUs: number; rps: number; p99Ms: number; peakMb: number }>;
}

function fail(message: string): never {
  process.stderr.write(`ab: ${message}\n`);
  process.exit(2);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

function namedList(values: string[] | undefined, flag: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const v of values ?? []) {
    const eq = v.indexOf('=');
    if (eq < 1) fail(`${flag}: expected NAME=VALUE, got "${v}"`);
    out.set(v.slice(0, eq), v.slice(eq + 1));
  }
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      build: { type: 'string', multiple: true },
      'node-args': { type: 'string', multiple: true },
      env: { type: 'string', multiple: true },
      store: { type: 'string', default: 'redis' },
      path: { type: 'string', default: '/page' },
      concurrency: { type: 'string', default: '128' },
      reps: { type: 'string', default: '8' },
      duration: { type: 'string', default: '3' },
      reference: { type: 'boolean', default: false },
    },
  });
  const builds = namedList(values.build, '--build');
  if (builds.size < 1) fail('give at least one --build NAME=DIST (a dist directory with cli.js)');
  const nodeArgs = namedList(values['node-args'], '--node-args');
  for (const name of nodeArgs.keys()) if (!builds.has(name)) fail(`--node-args names "${name}", which is not a --build`);
  // --env B=COATCHECK_HEAP_GROWING_PERCENT=50: an environment variable for one build's process.
  const envs = new Map<string, Record<string, string>>();
  for (const [name, assignment] of namedList(values.env, '--env')) {
    if (!builds.has(name)) fail(`--env names "${name}", which is not a --build`);
    const eq = assignment.indexOf('=');
    if (eq < 1) fail(`--env: expected NAME=VARIABLE=VALUE, got "${name}=${assignment}"`);
    envs.set(name, { ...envs.get(name), [assignment.slice(0, eq)]: assignment.slice(eq + 1) });
  }
  if (values.store !== 'redis' && values.store !== 'memory') fail(`--store must be redis or memory, got "${values.store}"`);
  if (values.path !== '/page' && values.path !== '/update') fail(`--path must be /page (session GET) or /update (cookie update), got "${values.path}"`);
  const connections = Number(values.concurrency);
  const reps = Number(values.reps);
  const duration = Number(values.duration);
  if (!Number.isInteger(connections) || connections < 1 || connections > 10_000) fail(`--concurrency: expected 1-10000, got "${values.concurrency}"`);
  if (!Number.isInteger(reps) || reps < 1 || reps > 99) fail(`--reps: expected 1-99, got "${values.reps}"`);
  if (!Number.isFinite(duration) || duration < 1 || duration > 60) fail(`--duration: expected 1-60 seconds, got "${values.duration}"`);
  if (!onPath('redis-server')) fail('redis-server is not on PATH');
  const generator: GeneratorName = onPath('wrk') ? 'wrk' : 'autocannon';
  const nproc = Number(commandOutput('nproc', []) ?? cpus().length);
  if (nproc >= 2 && onPath('taskset')) setPinning({ proxy: String(nproc - 1), rest: nproc === 2 ? '0' : `0-${nproc - 2}` });

  const tmp = registerTempDir(await mkdtemp(join(tmpdir(), 'coatcheck-ab-')));
  const upstream = await startUpstream();
  const redis = await startRedis();
  const contenders: Contender[] = [];
  for (const [name, dir] of builds) {
    const dist = isAbsolute(dir) ? dir : resolve(REPO_ROOT, dir);
    const port = await freePort();
    const file = join(tmp, `${name}.yaml`);
    await writeFile(file, coatcheckConfig(upstream.origin, port, values.store === 'memory' ? { kind: 'memory' } : { kind: 'redis', url: redis.url }));
    const extra = nodeArgs.get(name)?.split(/\s+/).filter((a) => a !== '') ?? [];
    const env = envs.has(name) ? { ...process.env, ...envs.get(name) } : process.env;
    const child = startChild(name, process.execPath, [...extra, join(dist, 'cli.js'), '--config', file], { cwd: tmp, role: 'proxy', env });
    try {
      await waitForPort(port, 15_000, () => child.isRunning());
    } catch (err) {
      fail(`${name} (${dist}) did not start: ${(err as Error).message}\n${child.tail()}`);
    }
    contenders.push({ name, origin: `http://127.0.0.1:${port}`, pid: child.pid, sessions: [], reps: [] });
  }
  if (values.reference) {
    const ref = await startMinimal(upstream, redis.url, 'coatcheck');
    contenders.push({ name: 'minimal-engine', origin: ref.origin, pid: ref.pids()[0] as number, sessions: [], reps: [] });
  }
  for (const c of contenders) c.sessions = await login(c.origin, 'hot', 1000);
  const loadOf = (c: Contender): Load => ({ kind: 'simple', method: 'GET', path: values.path as string, cookies: c.sessions });

  for (let rep = 0; rep < reps; rep++) {
    const order = rep % 2 === 0 ? contenders : [...contenders].reverse();
    for (const c of order) {
      await runLoad(loadOf(c), { origin: c.origin, connections, durationSec: 1, generator, tmpDir: tmp });
      resetPeakRss([c.pid]);
      const cpu0 = cpuMicros([c.pid]);
      const r = await runLoad(loadOf(c), { origin: c.origin, connections, durationSec: duration, generator, tmpDir: tmp });
      if (r.errors > 0 || r.requests === 0) fail(`${c.name}: ${r.errors} failed requests (${r.errorDetail})`);
      c.reps.push({ cpuUs: (cpuMicros([c.pid]) - cpu0) / r.requests, rps: r.rps, p99Ms: r.p99Ms, peakMb: peakRss([c.pid]) / 2 ** 20 });
    }
    process.stderr.write(`rep ${rep + 1}/${reps}: ${contenders.map((c) => `${c.name} ${(c.reps.at(-1)?.cpuUs ?? 0).toFixed(1)} µs/req`).join(', ')}\n`);
  }

  const first = contenders[0] as Contender;
  process.stdout.write(`${values.store} store, GET ${values.path}, ${connections} connections, ${reps} × ${duration} s each (after a 1 s warm-up), load from ${generator}\n`);
  for (const c of contenders) {
    const ratios = c.reps.map((r, i) => r.cpuUs / ((first.reps[i] as { cpuUs: number }).cpuUs));
    process.stdout.write(
      `${c.name.padEnd(16)} CPU ${median(c.reps.map((r) => r.cpuUs)).toFixed(1)} µs/req (min ${Math.min(...c.reps.map((r) => r.cpuUs)).toFixed(1)}), ` +
        `${Math.round(median(c.reps.map((r) => r.rps)))} req/s, p99 ${median(c.reps.map((r) => r.p99Ms)).toFixed(1)} ms, ` +
        `peak RSS ${Math.max(...c.reps.map((r) => r.peakMb)).toFixed(0)} MB` +
        (c === first ? '' : `; CPU ÷ ${first.name} per repetition: median ${median(ratios).toFixed(3)} [${ratios.map((x) => x.toFixed(2)).join(' ')}]`) +
        '\n',
    );
  }
}

process.on('SIGINT', () => void stopAll().then(() => process.exit(130)));
process.on('SIGTERM', () => void stopAll().then(() => process.exit(143)));

main().then(
  () => stopAll().then(() => process.exit(0)),
  (err: unknown) => {
    process.stderr.write(`ab failed: ${(err as Error)?.stack ?? String(err)}\n`);
    void stopAll().then(() => process.exit(1));
  },
);
