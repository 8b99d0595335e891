// `npm run bench:websocket`: WebSockets through coatcheck, measured side by side with the app
// reached directly, in one run:
//   messages/s    N clients, each keeping W echo messages in flight for D seconds, through
//                 coatcheck (Redis store) and directly to the app; CPU µs per message of the proxy;
//   logout→close  a session with a socket on instance A and one on instance B (same Redis):
//                 the time from sending the logout to A until each socket sees its close (1008);
//   1 000 sockets coatcheck's RSS idle, with 1 000 sockets open (and one message each), after they
//                 closed, and after a second round of 1 000: the second round must not grow it.
// The app (servers/ws-upstream.ts), Redis and both coatcheck instances are processes of their
// own; the clients run in this process (the same for both rows).
//
//   node build/bench/websocket.js [--quick] [--out FILE]
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { WebSocket } from 'ws';
import { commandOutput, cpuMicros, currentRss, onPath, stopAll } from './lib/proc.js';
import { startRedis } from './lib/redis.js';
import { REPO_ROOT, startCoatcheck, startWsUpstream, type Target } from './lib/targets.js';

function log(msg: string): void {
  process.stderr.write(`[bench:websocket] ${msg}\n`);
}

const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '—');
const MB = 1024 * 1024;
/** Rounds of opening and closing the many sockets. */
const ROUNDS = 4;

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? (s[(n - 1) / 2] as number) : ((s[n / 2 - 1] as number) + (s[n / 2] as number)) / 2;
}

/** Logs in through `origin`: the ticket cookie ("coatcheck=…"). */
async function login(origin: string): Promise<string> {
  const r = await fetch(`${origin}/login`, { method: 'POST' });
  await r.arrayBuffer();
  const cookie = r.headers.getSetCookie().find((c) => c.startsWith('coatcheck='));
  if (cookie === undefined) throw new Error(`no ticket from ${origin}/login (status ${r.status})`);
  return cookie.split(';')[0] as string;
}

function open(origin: string, cookie: string | undefined): Promise<WebSocket> {
  const ws = new WebSocket(`${origin.replace(/^http/, 'ws')}/ws`, { headers: cookie ? { cookie } : {}, perMessageDeflate: false });
  return new Promise((resolveOpen, reject) => {
    ws.once('open', () => resolveOpen(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
  });
}

function closedAt(ws: WebSocket): Promise<{ code: number; at: number }> {
  return new Promise((resolveClose) => ws.once('close', (code: number) => resolveClose({ code, at: performance.now() })));
}

interface Throughput {
  target: string;
  messagesPerSec: number;
  proxyCpuUsPerMsg: number | null;
  errors: number;
  /** messages/s of every repetition (the row is their median). */
  reps?: number[];
}

/** `clients` sockets, each keeping `window` messages of `size` bytes in flight for `ms`. */
async function echoLoad(target: string, origin: string, cookie: string | undefined, pids: () => number[], clients: number, window: number, size: number, ms: number): Promise<Throughput> {
  const sockets = await Promise.all(Array.from({ length: clients }, () => open(origin, cookie)));
  const payload = Buffer.alloc(size, 0x61);
  let count = 0;
  let errors = 0;
  let running = true;
  for (const ws of sockets) {
    ws.on('error', () => (errors += 1));
    ws.on('message', () => {
      count += 1;
      if (running) ws.send(payload);
    });
  }
  const cpu0 = cpuMicros(pids());
  const start = performance.now();
  for (const ws of sockets) for (let i = 0; i < window; i++) ws.send(payload);
  await new Promise((r) => setTimeout(r, ms));
  running = false;
  const elapsed = (performance.now() - start) / 1000;
  const got = count;
  const cpu = cpuMicros(pids()) - cpu0;
  await Promise.all(sockets.map((ws) => {
    const done = closedAt(ws);
    ws.close();
    return done;
  }));
  return { target, messagesPerSec: got / elapsed, proxyCpuUsPerMsg: pids().length > 0 ? cpu / got : null, errors };
}

interface CloseTrial {
  sameInstanceMs: number;
  otherInstanceMs: number;
  codes: number[];
}

async function logoutToClose(a: Target, b: Target): Promise<CloseTrial> {
  const cookie = await login(a.origin);
  const onA = await open(a.origin, cookie);
  const onB = await open(b.origin, cookie);
  const closeA = closedAt(onA);
  const closeB = closedAt(onB);
  const start = performance.now();
  const r = await fetch(`${a.origin}/logout`, { headers: { cookie } });
  await r.arrayBuffer();
  const [ca, cb] = await Promise.all([closeA, closeB]);
  return { sameInstanceMs: ca.at - start, otherInstanceMs: cb.at - start, codes: [ca.code, cb.code] };
}

interface Rss {
  sockets: number;
  idleMB: number;
  /** Per round of `sockets` opened (one message each), then closed: coatcheck's RSS with them open, and after they closed. */
  rounds: Array<{ openMB: number; afterCloseMB: number }>;
  /** Bytes of coatcheck RSS per open socket in the first round: (open − idle) / sockets. */
  bytesPerSocket: number;
}

/**
 * `n` sockets on `sessions` sessions, opened, used and closed, ROUNDS rounds in a row. A leak
 * shows as an RSS after close that keeps climbing round after round; V8 keeping the heap it grew
 * once does not (it plateaus).
 */
async function manySockets(target: Target, n: number, sessions: number): Promise<Rss> {
  const cookies = await Promise.all(Array.from({ length: sessions }, () => login(target.origin)));
  const rss = () => currentRss(target.pids()) / MB;
  const round = async (): Promise<{ openMB: number; afterCloseMB: number }> => {
    const sockets: WebSocket[] = [];
    // In batches, so that the accept queue never overflows on a small machine.
    for (let i = 0; i < n; i += 100) {
      sockets.push(...(await Promise.all(Array.from({ length: Math.min(100, n - i) }, (_, j) => open(target.origin, cookies[(i + j) % sessions])))));
    }
    await Promise.all(
      sockets.map(
        (ws) =>
          new Promise<void>((r) => {
            ws.once('message', () => r());
            ws.send('hello');
          }),
      ),
    );
    const openMB = rss();
    await Promise.all(
      sockets.map((ws) => {
        const done = closedAt(ws);
        ws.close();
        return done;
      }),
    );
    return { openMB, afterCloseMB: rss() };
  };
  const idleMB = rss();
  const rounds = [];
  for (let i = 0; i < ROUNDS; i++) rounds.push(await round());
  const first = rounds[0] as { openMB: number };
  return { sockets: n, idleMB, rounds, bytesPerSocket: ((first.openMB - idleMB) * MB) / n };
}

async function main(): Promise<number> {
  const { values } = parseArgs({ args: process.argv.slice(2), options: { quick: { type: 'boolean', default: false }, out: { type: 'string' } } });
  if (!onPath('redis-server')) throw new Error('the WebSocket bench needs redis-server on PATH');
  const quick = values.quick === true;
  const clients = quick ? 4 : 32;
  const window = quick ? 2 : 8;
  const durationMs = quick ? 500 : 5000;
  const trials = quick ? 3 : 20;
  const sockets = quick ? 100 : 1000;
  const reps = quick ? 1 : 3;

  const redis = await startRedis();
  const upstream = await startWsUpstream();
  const a = await startCoatcheck(upstream, { kind: 'redis', url: redis.url });
  const b = await startCoatcheck(upstream, { kind: 'redis', url: redis.url });
  log(`app ${upstream.origin}, coatcheck A ${a.origin}, B ${b.origin}, Redis ${redis.url}`);

  const throughput: Throughput[] = [];
  const ticket = await login(a.origin);
  // Interleaved repetitions, the median kept (every repetition is in the JSON): the machine's
  // drift hits both rows alike.
  const runs: Record<string, Throughput[]> = { direct: [], coatcheck: [] };
  for (let rep = 0; rep < reps; rep++) {
    runs.direct?.push(await echoLoad('direct (no proxy)', upstream.origin, undefined, () => [], clients, window, 64, durationMs));
    runs.coatcheck?.push(await echoLoad('coatcheck (Redis)', a.origin, ticket, () => a.pids(), clients, window, 64, durationMs));
  }
  for (const rows of Object.values(runs)) {
    const sorted = [...rows].sort((x, y) => x.messagesPerSec - y.messagesPerSec);
    const mid = sorted[Math.floor(sorted.length / 2)] as Throughput;
    throughput.push({ ...mid, reps: rows.map((r) => Math.round(r.messagesPerSec)) });
  }

  const closes: CloseTrial[] = [];
  for (let i = 0; i < trials; i++) closes.push(await logoutToClose(a, b));
  const rss = await manySockets(a, sockets, Math.min(50, sockets));

  const problems: string[] = [];
  for (const t of throughput) if (t.errors > 0) problems.push(`${t.target}: ${t.errors} socket errors`);
  for (const c of closes) if (c.codes.some((code) => code !== 1008)) problems.push(`a logout closed a socket with ${c.codes.join('/')} instead of 1008`);
  const maxClose = Math.max(...closes.flatMap((c) => [c.sameInstanceMs, c.otherInstanceMs]));
  if (maxClose >= 1000) problems.push(`a logout took ${maxClose.toFixed(0)} ms to close a socket (bound: 1 s)`);

  const result = {
    version: 1,
    mode: quick ? 'quick' : 'full',
    ok: problems.length === 0,
    problems,
    machine: { nproc: cpus().length, cpuModel: cpus()[0]?.model ?? '', node: process.version, redis: commandOutput('redis-server', ['--version'])?.trim() ?? '' },
    load: { clients, window, messageBytes: 64, durationMs },
    throughput,
    logoutToClose: {
      trials,
      sameInstanceMedianMs: median(closes.map((c) => c.sameInstanceMs)),
      sameInstanceMaxMs: Math.max(...closes.map((c) => c.sameInstanceMs)),
      otherInstanceMedianMs: median(closes.map((c) => c.otherInstanceMs)),
      otherInstanceMaxMs: Math.max(...closes.map((c) => c.otherInstanceMs)),
    },
    rss,
  };

  const direct = throughput[0] as Throughput;
  const cc = throughput[1] as Throughput;
  const lc = result.logoutToClose;
  process.stdout.write(
    [
      `WebSocket echo, ${clients} clients × ${window} in flight, 64-byte messages, ${durationMs / 1000} s (median of ${reps}, interleaved):`,
      `| target | messages/s | proxy CPU µs/msg |`,
      `|---|---:|---:|`,
      `| ${direct.target} | ${fmt(direct.messagesPerSec)} (${(direct.reps ?? []).map((x) => fmt(x)).join(' / ')}) | — |`,
      `| ${cc.target} | ${fmt(cc.messagesPerSec)} (${(cc.reps ?? []).map((x) => fmt(x)).join(' / ')}; ×${fmt(cc.messagesPerSec / direct.messagesPerSec, 2)}) | ${fmt(cc.proxyCpuUsPerMsg ?? NaN, 1)} |`,
      '',
      `logout → close (${trials} trials): same instance median ${fmt(lc.sameInstanceMedianMs, 1)} ms (max ${fmt(lc.sameInstanceMaxMs, 1)}), other instance over Redis median ${fmt(lc.otherInstanceMedianMs, 1)} ms (max ${fmt(lc.otherInstanceMaxMs, 1)})`,
      `${rss.sockets} sockets: coatcheck RSS ${fmt(rss.idleMB, 1)} MB idle; ${rss.rounds.map((r, i) => `round ${i + 1}: ${fmt(r.openMB, 1)} MB open, ${fmt(r.afterCloseMB, 1)} MB after close`).join('; ')} (${fmt(rss.bytesPerSocket / 1024, 1)} KB/socket in round 1)`,
      problems.length > 0 ? `problems: ${problems.join('; ')}` : 'no problems',
      '',
    ].join('\n'),
  );
  const out = values.out !== undefined ? resolve(values.out) : join(REPO_ROOT, 'bench/results/websocket.json');
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, `${JSON.stringify(result, null, 2)}\n`);
  log(`wrote ${out}`);
  return result.ok ? 0 : 1;
}

main()
  .then(
    (code) => code,
    (err: unknown) => {
      log(`failed: ${(err as Error)?.stack ?? String(err)}`);
      return 1;
    },
  )
  .then(async (code) => {
    await stopAll();
    process.exit(code);
  });
