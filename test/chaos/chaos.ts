// Chaos under load (issue 13): simulated users (login → requests that read and update cookies →
// logout → replays of the logged-out ticket, and now and then a cookie of the app sent directly)
// through two coatcheck instances on one Redis (AOF, fsync always), while faults are injected on
// a seeded schedule: Redis frozen (SIGSTOP/SIGCONT), Redis killed and restarted, the app killed
// mid-response and restarted, client connections reset mid-request and mid-response, slow
// clients, the app answering past upstreamTimeout. Invariants are checked over the whole run,
// from the app's own request log (chaos-app.ts, over IPC) and from what the clients saw:
//   managedSetCookie    responses to a client carrying a Set-Cookie other than the ticket
//   revokedReachedApp   requests that reached the app with the jar of a session whose logout
//                       the client had received before the request began
//   clientCookieReachedApp  requests that reached the app with a cookie the client sent itself
//   replayAccepted      replays of a logged-out ticket answered 200
//   lostUpdates         cookie updates the client received an answer for, missing from a later
//                       answer of the same session
//   unexpectedStatus    answers other than success, 401 (a replay), 503 (store down), 502/504
//                       (app down or slow)
//   hung                requests unanswered past every timeout
// Process crashes: coatcheck runs in this process; one would end the run. RSS is reported
// before, at peak and after (with a GC).
import { fork, type ChildProcess } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { pino } from 'pino';
import { createCoatcheck, type Coatcheck } from '../../src/app.js';
import { configSchema } from '../../src/config/schema.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import type { AppSeen } from './chaos-app.js';

export interface ChaosOptions {
  /** How long users run, in ms (faults go on all that time). */
  durationMs: number;
  seed: number;
  users: number;
  /** Ms between faults (on average). */
  faultEveryMs: number;
  /** Progress lines on stdout. */
  verbose?: boolean;
  /** Redis without AOF (default: with, fsync always): a restart then forgets every session and tombstone. */
  noAof?: boolean;
}

export interface ChaosReport {
  seed: number;
  durationMs: number;
  requests: number;
  byStatus: Record<string, number>;
  logins: number;
  logouts: number;
  replays: number;
  updatesAcknowledged: number;
  faults: Record<string, number>;
  invariants: {
    managedSetCookie: number;
    revokedReachedApp: number;
    clientCookieReachedApp: number;
    replayAccepted: number;
    lostUpdates: number;
    unexpectedStatus: number;
    hung: number;
  };
  /** Examples of violations, for the report. */
  examples: string[];
  rss: { baselineMb: number; peakMb: number; afterMb: number };
  /** The JS heap in use before and after the run (each after a GC): what a leak would grow. */
  heap: { baselineMb: number; afterMb: number };
}

const TICKET = 'coatcheck';
const UPSTREAM_TIMEOUT_MS = 800;
const STORE_TIMEOUT_MS = 250;
/** A request unanswered after this long is hung: past every timeout coatcheck has. */
const HANG_MS = UPSTREAM_TIMEOUT_MS + 4 * STORE_TIMEOUT_MS + 3000;

/** mulberry32: a small seeded PRNG, so that a run's schedule is the seed's. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Sent {
  seq: string;
  began: number;
  user: string;
  /** The login this request belongs to (app_session value), when it carries a ticket. */
  label: string | undefined;
}

interface Reply {
  status: number;
  setCookies: string[];
  body: string;
}

/** The app process, restartable on the same port. */
class AppProcess {
  port = 0;
  private proc: ChildProcess | undefined;
  constructor(private readonly onSeen: (seen: AppSeen) => void) {}

  async start(): Promise<void> {
    const file = fileURLToPath(new URL('./chaos-app.js', import.meta.url));
    for (let attempt = 0; ; attempt++) {
      const proc = fork(file, [], { env: { ...process.env, CHAOS_APP_PORT: String(this.port), CHAOS_SLOW_MS: String(UPSTREAM_TIMEOUT_MS * 3) }, stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
      const listening = await new Promise<number | undefined>((resolve) => {
        proc.on('message', (m: { seen?: AppSeen; listening?: number }) => {
          if (m.seen) this.onSeen(m.seen);
          if (m.listening !== undefined) resolve(m.listening);
        });
        proc.once('exit', () => resolve(undefined));
      });
      if (listening !== undefined) {
        this.port = listening;
        this.proc = proc;
        return;
      }
      // The port of the killed app may take a moment to free.
      if (attempt > 100) throw new Error('the chaos app did not start');
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async kill(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGKILL');
    await exited;
  }
}

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const random = prng(options.seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const log = (msg: string) => {
    if (options.verbose) console.log(`[chaos +${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
  };
  let t0 = Date.now();

  const report: ChaosReport = {
    seed: options.seed,
    durationMs: options.durationMs,
    requests: 0,
    byStatus: {},
    logins: 0,
    logouts: 0,
    replays: 0,
    updatesAcknowledged: 0,
    faults: {},
    invariants: { managedSetCookie: 0, revokedReachedApp: 0, clientCookieReachedApp: 0, replayAccepted: 0, lostUpdates: 0, unexpectedStatus: 0, hung: 0 },
    examples: [],
    rss: { baselineMb: 0, peakMb: 0, afterMb: 0 },
    heap: { baselineMb: 0, afterMb: 0 },
  };
  const violation = (kind: keyof ChaosReport['invariants'], example: string) => {
    report.invariants[kind] += 1;
    if (report.examples.length < 20) report.examples.push(`${kind}: ${example}`);
  };
  const fault = (kind: string) => {
    report.faults[kind] = (report.faults[kind] ?? 0) + 1;
    log(`fault: ${kind}`);
  };

  const seenByApp: AppSeen[] = [];
  const sent = new Map<string, Sent>();
  /** When the client received each login's logout answer. */
  const loggedOutAt = new Map<string, number>();

  const redis: RedisServer = await startRedis({ aof: !options.noAof });
  const app = new AppProcess((s) => seenByApp.push(s));
  const instances: Coatcheck[] = [];
  let seq = 0;
  try {
    await app.start();
    const config = configSchema.parse({
      listen: '127.0.0.1:0',
      upstream: `http://127.0.0.1:${app.port}`,
      upstreamTimeout: UPSTREAM_TIMEOUT_MS,
      secrets: ['chaos-secret-0123456789-abcdefghijklmnopqrstuvwxyz'],
      cookie: { name: TICKET, secure: false },
      store: { kind: 'redis', url: redis.url, prefix: 'chaos:', timeout: STORE_TIMEOUT_MS, connectTimeout: 5000 },
      logout: [{ path: '/logout' }],
      login: [{ path: '/login', methods: ['POST'] }],
      shutdownTimeout: 2000,
      log: { level: 'silent' },
    });
    const ports: number[] = [];
    for (let i = 0; i < 2; i++) {
      const cc = createCoatcheck({ config, logger: pino({ level: 'silent' }) });
      instances.push(cc);
      ports.push((await cc.start()).port);
    }

    const gc = (() => {
      setFlagsFromString('--expose-gc');
      return runInNewContext('gc') as () => void;
    })();
    gc();
    const mb = () => Math.round(process.memoryUsage().rss / 1048576);
    const heapMb = () => Math.round(process.memoryUsage().heapUsed / 1048576);
    report.rss.baselineMb = mb();
    report.heap.baselineMb = heapMb();
    const rssTimer = setInterval(() => (report.rss.peakMb = Math.max(report.rss.peakMb, mb())), 100);

    /** One request: through a random instance, with the ticket if any, timed and classified. */
    const call = async (user: string, label: string | undefined, method: string, path: string, ticket: string | undefined, extraCookie?: string, how: 'normal' | 'reset-request' | 'reset-response' | 'slow-reader' = 'normal'): Promise<Reply | undefined> => {
      const id = `s${++seq}`;
      const began = Date.now();
      sent.set(id, { seq: id, began, user, label });
      report.requests += 1;
      const port = pick(ports);
      const cookies = [ticket ? `${TICKET}=${ticket}` : '', extraCookie ?? ''].filter(Boolean).join('; ');
      const headers: Record<string, string> = { 'x-chaos-seq': id, ...(cookies ? { cookie: cookies } : {}) };
      if (how === 'reset-request') {
        // Half a request, then the connection is reset.
        await new Promise<void>((resolve) => {
          const s = connect(port, '127.0.0.1', () => {
            s.write(`POST ${path} HTTP/1.1\r\nHost: app.example\r\nx-chaos-seq: ${id}\r\n${cookies ? `Cookie: ${cookies}\r\n` : ''}Content-Length: 100\r\n\r\nhalf`);
            setTimeout(() => {
              s.resetAndDestroy();
              resolve();
            }, 20);
          });
          s.on('error', () => resolve());
        });
        return undefined;
      }
      return new Promise<Reply | undefined>((resolve) => {
        let settled = false;
        const done = (r: Reply | undefined) => {
          if (settled) return;
          settled = true;
          clearTimeout(hang);
          resolve(r);
        };
        const hang = setTimeout(() => {
          violation('hung', `${method} ${path} (${id}) unanswered after ${HANG_MS} ms`);
          req.destroy();
          done(undefined);
        }, HANG_MS);
        const req = httpRequest({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
          const status = res.statusCode ?? 0;
          report.byStatus[status] = (report.byStatus[status] ?? 0) + 1;
          const setCookies = res.headers['set-cookie'] ?? [];
          for (const sc of setCookies) {
            if (!sc.startsWith(`${TICKET}=`)) violation('managedSetCookie', `${method} ${path} (${id}) → Set-Cookie ${sc.split(';')[0]}`);
          }
          if (![200, 401, 503, 502, 504].includes(status)) violation('unexpectedStatus', `${method} ${path} (${id}) → ${status}`);
          if (how === 'reset-response') {
            res.socket.resetAndDestroy();
            done(undefined);
            return;
          }
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => {
            chunks.push(c);
            if (how === 'slow-reader') {
              res.pause();
              setTimeout(() => res.resume(), 30);
            }
          });
          res.on('error', () => done(undefined));
          res.on('end', () => done({ status, setCookies, body: Buffer.concat(chunks).toString('utf8') }));
        });
        req.on('error', () => done(undefined));
        req.end();
      });
    };

    const ticketOf = (r: Reply): string | undefined => {
      for (const sc of r.setCookies) {
        const m = new RegExp(`^${TICKET}=([^;]*)`).exec(sc);
        if (m) return m[1] === '' ? undefined : m[1];
      }
      return undefined;
    };

    let running = true;
    const user = async (name: string): Promise<void> => {
      let logins = 0;
      while (running) {
        const label = `${name}-${++logins}`;
        const login = await call(name, undefined, 'POST', `/login?user=${name}&n=${logins}`, undefined);
        const ticket = login?.status === 200 ? ticketOf(login) : undefined;
        if (!ticket) continue;
        report.logins += 1;
        let acked = 0;
        let sentValue = 0;
        const steps = 3 + Math.floor(random() * 8);
        for (let i = 0; i < steps && running; i++) {
          const r = random();
          if (r < 0.45) {
            const page = await call(name, label, 'GET', '/page', ticket, random() < 0.1 ? 'app_session=forged-by-client; counter=999999' : undefined);
            if (page?.status === 200) {
              const seen = (JSON.parse(page.body) as { cookie: string }).cookie;
              const counter = Number(/(?:^|; )counter=(\d+)/.exec(seen)?.[1] ?? '0');
              if (counter < acked) violation('lostUpdates', `${label}: the app saw counter=${counter} after ${acked} was acknowledged`);
              if (!seen.includes(`app_session=${label}`)) violation('lostUpdates', `${label}: the app saw ${JSON.stringify(seen)} without its session cookie`);
            }
          } else if (r < 0.8) {
            const v = ++sentValue;
            const update = await call(name, label, 'POST', `/update?v=${v}`, ticket);
            if (update?.status === 200) {
              acked = v;
              report.updatesAcknowledged += 1;
            }
          } else if (r < 0.85) {
            await call(name, label, 'GET', '/slow', ticket);
          } else if (r < 0.9) {
            await call(name, label, 'POST', '/update?v=0', ticket, undefined, 'reset-request');
          } else if (r < 0.95) {
            await call(name, label, 'GET', '/stream', ticket, undefined, pick(['reset-response', 'slow-reader'] as const));
          } else {
            await call(name, label, 'GET', '/stream', ticket);
          }
        }
        // Logout, until it is acknowledged: 503 while the store is down, 502/504 when the app failed
        // after the logout rule had revoked the session (the rule acts before forwarding), and then
        // the next try gets 401: that too says the session is revoked.
        for (let tries = 0; tries < 50; tries++) {
          const out = await call(name, label, 'GET', '/logout', ticket);
          if (out?.status === 200 || out?.status === 401) {
            loggedOutAt.set(label, Date.now());
            report.logouts += 1;
            break;
          }
          await new Promise((r) => setTimeout(r, 50));
        }
        if (!loggedOutAt.has(label)) continue;
        // The copied ticket, replayed.
        for (let i = 0; i < 2; i++) {
          report.replays += 1;
          const replay = await call(name, label, 'GET', '/page', ticket);
          if (replay?.status === 200) violation('replayAccepted', `${label}: a replay after logout was answered 200`);
        }
      }
    };

    const faults = async (): Promise<void> => {
      const kinds = ['redis-pause', 'redis-kill', 'app-kill'] as const;
      while (running) {
        await new Promise((r) => setTimeout(r, options.faultEveryMs * (0.5 + random())));
        if (!running) break;
        const kind = pick(kinds);
        fault(kind);
        if (kind === 'redis-pause') {
          await redis.pause();
          await new Promise((r) => setTimeout(r, 300 + random() * 700));
          await redis.resume();
        } else if (kind === 'redis-kill') {
          await redis.kill();
          await new Promise((r) => setTimeout(r, 100 + random() * 400));
          await redis.restart();
        } else {
          await app.kill();
          await new Promise((r) => setTimeout(r, 100 + random() * 400));
          await app.start();
        }
      }
    };

    t0 = Date.now();
    log(`start: ${options.users} users, seed ${options.seed}`);
    const users = Array.from({ length: options.users }, (_, i) => user(`u${i}`));
    const faulting = faults();
    await new Promise((r) => setTimeout(r, options.durationMs));
    running = false;
    await faulting;
    await Promise.all(users);
    clearInterval(rssTimer);

    // The app's log, against what the clients knew when each request began.
    for (const s of seenByApp) {
      const cookie = s.cookie ?? '';
      if (/forged-by-client|counter=999999/.test(cookie)) violation('clientCookieReachedApp', `${s.path} (${s.seq}) with ${JSON.stringify(cookie)}`);
      const session = /(?:^|; )app_session=([^;]+)/.exec(cookie)?.[1];
      const request = s.seq !== undefined ? sent.get(s.seq) : undefined;
      if (session === undefined || request === undefined) continue;
      const out = loggedOutAt.get(session);
      if (out !== undefined && request.began > out) violation('revokedReachedApp', `${s.path} (${s.seq}) carried the jar of ${session}, logged out ${request.began - out} ms before it began`);
    }
    // What the run held is let go: the sockets closed, the users' state dropped.
    sent.clear();
    seenByApp.length = 0;
    await new Promise((r) => setTimeout(r, 200));
    gc();
    report.rss.afterMb = mb();
    report.heap.afterMb = heapMb();
    log('done');
    return report;
  } finally {
    await Promise.all(instances.map((cc) => cc.close()));
    await app.kill();
    await redis.stop();
  }
}

/** The report as text. */
export function formatReport(r: ChaosReport): string {
  const lines = [
    `chaos run: seed ${r.seed}, ${Math.round(r.durationMs / 1000)} s`,
    `requests ${r.requests} (${Object.entries(r.byStatus)
      .map(([s, n]) => `${s}: ${n}`)
      .join(', ')}); logins ${r.logins}, logouts ${r.logouts}, replays ${r.replays}, updates acknowledged ${r.updatesAcknowledged}`,
    `faults: ${Object.entries(r.faults)
      .map(([k, n]) => `${k} ${n}`)
      .join(', ') || 'none'} (and client resets, slow readers, slow app answers from the users)`,
    'invariants (each must be 0):',
    ...Object.entries(r.invariants).map(([k, n]) => `  ${k.padEnd(24)} ${n}`),
    `RSS: ${r.rss.baselineMb} MB before, ${r.rss.peakMb} MB at peak, ${r.rss.afterMb} MB after (GC); JS heap in use: ${r.heap.baselineMb} MB before, ${r.heap.afterMb} MB after`,
    ...r.examples.map((e) => `  example: ${e}`),
  ];
  return lines.join('\n');
}
