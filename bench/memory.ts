// `npm run bench:memory`: what one session costs in memory, with many distinct logins of a
// five-cookie jar (~560 bytes of cookie name=value, as a typical legacy app sets at login):
//   Redis store   Redis's used_memory per login (INFO memory delta), MEMORY USAGE of one
//                 session key and of one log-id key, the sealed payload (the value minus its
//                 `L<version>:` header) and the ratio, the keys one login writes by type;
//                 coatcheck's RSS before, after N logins and after `--plateau` logins (VmRSS,
//                 VmHWM), so that a per-process cache that grows with the sessions shows;
//   memory store  coatcheck's RSS (and V8 heap, from its /metrics) before and after N logins:
//                 bytes per session, overall and between the last two checkpoints (the marginal
//                 cost, once the bounded caches are full).
// Redis, coatcheck and the app are processes of their own; the app is a tiny server inside this
// script (POST /login sets the five cookies), the logins are made from this process over 32
// keep-alive connections.
//
//   node build/bench/memory.js [--quick] [--sessions N] [--plateau M] [--only redis|memory] [--out FILE]
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Redis } from 'ioredis';
import { Pool } from 'undici';
import { currentRss, freePort, peakRss, registerTempDir, startChild, stopAll, waitForPort, type Child } from './lib/proc.js';
import { startRedis } from './lib/redis.js';
import { sessionKeyOf, ticketOf, usedMemory } from './lib/session.js';
import { COATCHECK_PREFIX, COATCHECK_SECRET, coatcheckConfig, REPO_ROOT } from './lib/targets.js';

function log(msg: string): void {
  process.stderr.write(`[bench:memory] ${msg}\n`);
}

const MB = 1024 * 1024;
const CONNECTIONS = 32;
const TICKET = 'coatcheck';

// ---- the app: five cookies at login ----

const COMMON = 'Path=/; SameSite=Lax';
/** The five Set-Cookie values of one login: ~560 bytes of name=value. */
function loginCookies(): string[] {
  return [
    `app_session=${randomBytes(300).toString('base64url')}; ${COMMON}; HttpOnly`,
    `csrf_token=${randomBytes(32).toString('base64url')}; ${COMMON}`,
    `remember_me=${randomBytes(30).toString('base64url')}; ${COMMON}; HttpOnly; Max-Age=2592000`,
    `prefs=theme.dark-lang.en-tz.utc; ${COMMON}; Max-Age=31536000`,
    `lang=en; ${COMMON}`,
  ];
}
/** Bytes of cookie name=value one login sets. */
const JAR_BYTES = loginCookies().reduce((n, c) => n + (c.split(';')[0] as string).length, 0);

async function startApp(): Promise<{ origin: string; server: Server }> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.method === 'POST' && req.url?.startsWith('/login')) res.setHeader('set-cookie', loginCookies());
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '3' });
      res.end('ok\n');
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

// ---- coatcheck ----

interface Coatcheck {
  origin: string;
  admin: string;
  child: Child;
  stop(): Promise<void>;
}

type Store = { kind: 'redis'; url: string } | { kind: 'memory'; maxSessions: number };

async function startCoatcheck(upstream: string, store: Store): Promise<Coatcheck> {
  const dir = registerTempDir(await mkdtemp(join(tmpdir(), 'coatcheck-bench-mem-')));
  const port = await freePort();
  const adminPort = await freePort();
  let yaml = coatcheckConfig(upstream, port, store.kind === 'redis' ? { kind: 'redis', url: store.url } : { kind: 'memory' });
  if (store.kind === 'memory') yaml = yaml.replace('  kind: memory\n', `  kind: memory\n  maxSessions: ${store.maxSessions}\n`);
  yaml += `admin:\n  listen: "127.0.0.1:${adminPort}"\n`;
  const file = join(dir, `coatcheck-${store.kind}.yaml`);
  await writeFile(file, yaml);
  const child = startChild(`coatcheck-${store.kind}`, process.execPath, [join(REPO_ROOT, 'dist/cli.js'), '--config', file], { cwd: dir, role: 'proxy' });
  await waitForPort(port, 15_000, () => child.isRunning());
  await waitForPort(adminPort, 15_000, () => child.isRunning());
  return { origin: `http://127.0.0.1:${port}`, admin: `http://127.0.0.1:${adminPort}`, child, stop: () => child.stop('SIGTERM', 15_000) };
}

/** The V8 heap in use, from coatcheck's /metrics (NaN when not there). */
async function heapUsed(admin: string): Promise<number> {
  try {
    const text = await (await fetch(`${admin}/metrics`)).text();
    const m = /^coatcheck_nodejs_heap_size_used_bytes (\S+)$/m.exec(text);
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

interface Reading {
  sessions: number;
  rssMB: number;
  peakMB: number;
  heapUsedMB: number;
}

async function read(cc: Coatcheck, sessions: number): Promise<Reading> {
  // A moment for the last responses' garbage to be collected by the idle process.
  await new Promise((r) => setTimeout(r, 500));
  const round = (n: number) => Math.round((n / MB) * 10) / 10;
  return { sessions, rssMB: round(currentRss([cc.child.pid])), peakMB: round(peakRss([cc.child.pid])), heapUsedMB: round(await heapUsed(cc.admin)) };
}

/** `count` distinct logins through coatcheck over 32 connections; returns one ticket cookie ("coatcheck=…"). */
async function logins(origin: string, count: number): Promise<string> {
  const pool = new Pool(origin, { connections: CONNECTIONS, pipelining: 1 });
  let next = 0;
  let sample = '';
  const worker = async () => {
    while (next < count) {
      next += 1;
      const r = await pool.request({ method: 'POST', path: '/login', headers: { 'content-length': '0' }, body: '' });
      await r.body.dump();
      const set = r.headers['set-cookie'];
      const list = set === undefined ? [] : Array.isArray(set) ? set : [set];
      const ticket = list.find((c) => c.startsWith(`${TICKET}=`));
      if (r.statusCode !== 200 || ticket === undefined) throw new Error(`login answered ${r.statusCode} without a ticket`);
      sample ||= ticket.split(';')[0] as string;
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(CONNECTIONS, count) }, worker));
  } finally {
    await pool.close();
  }
  return sample;
}

/** Keys by type (the letter after the prefix: s session, l log id, f family, u user, p fingerprint). */
async function keysByType(redis: Redis): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'COUNT', 10_000);
    cursor = next;
    for (const k of batch) {
      const rest = k.startsWith(COATCHECK_PREFIX) ? k.slice(COATCHECK_PREFIX.length) : k;
      const type = /^([a-z]):/.exec(rest)?.[1] ?? rest;
      out[type] = (out[type] ?? 0) + 1;
    }
  } while (cursor !== '0');
  return out;
}

async function oneKeyOf(redis: Redis, type: string): Promise<string | undefined> {
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${COATCHECK_PREFIX}${type}:*`, 'COUNT', 1000);
    cursor = next;
    if (batch.length > 0) return batch[0];
  } while (cursor !== '0');
  return undefined;
}

async function memoryUsage(redis: Redis, key: string): Promise<number> {
  return Number(await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'));
}

const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100;

async function measureRedis(origin: string, redisUrl: string, client: Redis, sessions: number, plateau: number) {
  const cc = await startCoatcheck(origin, { kind: 'redis', url: redisUrl });
  const rssRedis: Reading[] = [await read(cc, 0)];
  const usedBefore = await usedMemory(client);
  const sample = await logins(cc.origin, sessions);
  const usedAfter = await usedMemory(client);
  rssRedis.push(await read(cc, sessions));
  const keys = await keysByType(client);
  const { key: sessionKey } = await sessionKeyOf(client, ticketOf(sample, TICKET), COATCHECK_SECRET, COATCHECK_PREFIX);
  const value = (await client.getBuffer(sessionKey)) as Buffer;
  const header = value.indexOf(0x3a) + 1;
  const payload = value.length - header;
  const sessionKeyUsage = await memoryUsage(client, sessionKey);
  const logKey = await oneKeyOf(client, 'l');
  const logValue = logKey === undefined ? null : await client.getBuffer(logKey);
  const logKeyUsage = logKey === undefined ? 0 : await memoryUsage(client, logKey);
  const totalKeys = Object.values(keys).reduce((a, b) => a + b, 0);
  const perLogin = (usedAfter - usedBefore) / sessions;
  log(`redis: ${Math.round(perLogin)} bytes per login (used_memory), session key ${sessionKeyUsage} bytes (MEMORY USAGE) for a ${payload}-byte sealed payload, log-id key ${logKeyUsage} bytes`);
  for (let done = sessions; done < plateau; ) {
    const n = Math.min(sessions, plateau - done);
    await logins(cc.origin, n);
    done += n;
    rssRedis.push(await read(cc, done));
    log(`redis store: coatcheck RSS ${rssRedis.at(-1)?.rssMB} MB after ${done} logins`);
  }
  await cc.stop();
  await client.flushall();

  return {
    rss: rssRedis,
    redis: {
      usedMemoryBefore: usedBefore,
      usedMemoryAfter: usedAfter,
      bytesPerLogin: Math.round(perLogin),
      bytesPerKey: Math.round((usedAfter - usedBefore) / totalKeys),
      keysPerLogin: Object.fromEntries(Object.entries(keys).map(([t, n]) => [t, Math.round((n / sessions) * 100) / 100])),
      sessionKey: { memoryUsage: sessionKeyUsage, valueBytes: value.length, headerBytes: header, sealedPayloadBytes: payload },
      logIdKey: { memoryUsage: logKeyUsage, valueBytes: logValue?.length ?? 0, keyBytes: logKey?.length ?? 0 },
      ratio: {
        sessionKeyToPayload: ratio(sessionKeyUsage, payload),
        perLoginToPayload: ratio(perLogin, payload),
        perLoginWithoutLogIdToPayload: ratio(perLogin - (logKeyUsage * (keys.l ?? 0)) / sessions, payload),
      },
    },
  };
}

async function measureMemory(origin: string, sessions: number) {
  const mem = await startCoatcheck(origin, { kind: 'memory', maxSessions: sessions + 1000 });
  await logins(mem.origin, 200); // warm: code compiled, pools made
  const rssMemory: Reading[] = [await read(mem, 0)];
  const steps = 4;
  for (let i = 1; i <= steps; i++) {
    await logins(mem.origin, Math.round((sessions * i) / steps) - Math.round((sessions * (i - 1)) / steps));
    rssMemory.push(await read(mem, Math.round((sessions * i) / steps)));
    log(`memory store: RSS ${rssMemory.at(-1)?.rssMB} MB after ${rssMemory.at(-1)?.sessions} sessions`);
  }
  await mem.stop();
  const first = rssMemory[0] as Reading;
  const last = rssMemory.at(-1) as Reading;
  const prev = rssMemory.at(-2) as Reading;
  const perSession = (a: Reading, b: Reading, f: 'rssMB' | 'heapUsedMB') => Math.round(((b[f] - a[f]) * MB) / (b.sessions - a.sessions));

  return {
    readings: rssMemory,
    bytesPerSession: perSession(first, last, 'rssMB'),
    marginalBytesPerSession: perSession(prev, last, 'rssMB'),
    heapBytesPerSession: perSession(first, last, 'heapUsedMB'),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      sessions: { type: 'string' },
      plateau: { type: 'string' },
      out: { type: 'string' },
      only: { type: 'string' },
    },
  });
  const only = values.only;
  if (only !== undefined && only !== 'redis' && only !== 'memory') throw new Error('--only takes redis or memory');
  const sessions = Number(values.sessions ?? (values.quick ? 2000 : 100_000));
  const plateau = Number(values.plateau ?? sessions * 3);
  if (!Number.isSafeInteger(sessions) || sessions < 100 || !Number.isSafeInteger(plateau) || plateau < sessions) {
    throw new Error('--sessions must be at least 100 and --plateau at least --sessions');
  }
  const outFile = resolve(values.out ?? join(REPO_ROOT, 'bench', 'results', 'memory.json'));
  const started = Date.now();
  log(`${sessions} logins (plateau ${plateau}) of a five-cookie jar (${JAR_BYTES} bytes of name=value), ${CONNECTIONS} connections`);

  const app = await startApp();
  const redis = await startRedis();
  const client = redis.client;

  const redisPart = only === 'memory' ? undefined : await measureRedis(app.origin, redis.url, client, sessions, plateau);

  const memoryPart = only === 'redis' ? undefined : await measureMemory(app.origin, sessions);

  const result = {
    mode: values.quick ? 'quick' : 'full',
    started: new Date(started).toISOString(),
    sessions,
    plateau,
    connections: CONNECTIONS,
    jar: { cookies: 5, nameValueBytes: JAR_BYTES },
    redis: redisPart?.redis ?? null,
    coatcheckRedisRss: redisPart?.rss ?? null,
    memoryStore: memoryPart ?? null,
  };
  await mkdir(dirname(outFile), { recursive: true });
  await writeFile(outFile, `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  log(`wrote ${outFile}`);
  await redis.stop();
  const closed = new Promise<void>((r) => app.server.close(() => r()));
  app.server.closeAllConnections();
  await closed;
}

main()
  .then(() => stopAll())
  .catch(async (err: unknown) => {
    log(`failed: ${(err as Error).stack ?? String(err)}`);
    await stopAll();
    process.exitCode = 1;
  });
