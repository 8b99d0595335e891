// The processes under test. Each runs on its own (spawned), so that the load generator never
// shares its thread and its CPU time and peak RSS can be read from /proc.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, processTree, registerTempDir, startChild, waitForPort, type Child } from './proc.js';

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SERVERS = fileURLToPath(new URL('../servers/', import.meta.url));

export type TargetId =
  | 'direct'
  | 'bare'
  | 'minimal'
  | 'minimal-engine'
  | 'coatcheck-memory'
  | 'coatcheck-redis'
  | 'nginx'
  // Only in the scale-out run (bench/scale-out.ts):
  | 'coatcheck-redis-2w'
  | 'coatcheck-cluster';

/** The targets of the main run (bench/run.ts), in its order. */
export const MAIN_TARGETS: readonly TargetId[] = ['direct', 'bare', 'minimal', 'minimal-engine', 'coatcheck-memory', 'coatcheck-redis', 'nginx'];

export const TARGET_LABELS: Record<TargetId, string> = {
  direct: 'direct (no proxy)',
  bare: 'bare forwarder (undici)',
  minimal: 'minimal reference (Redis)',
  'minimal-engine': "minimal ref., coatcheck's engine",
  'coatcheck-memory': 'coatcheck (memory)',
  'coatcheck-redis': 'coatcheck (Redis)',
  nginx: 'nginx proxy_pass',
  'coatcheck-redis-2w': 'coatcheck (Redis), 2 workers',
  'coatcheck-cluster': 'coatcheck (3-master cluster)',
};

export interface Target {
  readonly id: TargetId;
  readonly origin: string;
  /** The proxy's process and its descendants; empty for `direct`. */
  pids(): number[];
  readonly usesRedis: boolean;
  /** The last lines the proxy printed (its warnings and errors), when it is a process of ours. */
  tail?(): string;
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 15_000;

function readyPort(line: string): number | undefined {
  try {
    const o = JSON.parse(line) as { event?: string; port?: number };
    return o.event === 'ready' && typeof o.port === 'number' ? o.port : undefined;
  } catch {
    return undefined;
  }
}

/** A bench server of ours (upstream, bare forwarder, minimal reference). */
async function startNodeServer(
  name: string,
  script: string,
  args: string[],
  role: 'proxy' | 'rest',
  nodeArgs: string[] = [],
): Promise<{ child: Child; port: number }> {
  const child = startChild(name, process.execPath, [...nodeArgs, join(SERVERS, script), ...args], { cwd: REPO_ROOT, role });
  const port = await child.waitLine(readyPort, READY_TIMEOUT_MS);
  return { child, port };
}

export interface Upstream {
  readonly origin: string;
  readonly child: Child;
  stop(): Promise<void>;
}

export async function startUpstream(): Promise<Upstream> {
  const { child, port } = await startNodeServer('upstream', 'upstream.js', [], 'rest');
  return { origin: `http://127.0.0.1:${port}`, child, stop: () => child.stop() };
}

/** The WebSocket bench's app (servers/ws-upstream.ts): a login, a logout, a WebSocket echo. */
export async function startWsUpstream(): Promise<Upstream> {
  const { child, port } = await startNodeServer('ws upstream', 'ws-upstream.js', [], 'rest');
  return { origin: `http://127.0.0.1:${port}`, child, stop: () => child.stop() };
}

export function directTarget(upstream: Upstream): Target {
  return { id: 'direct', origin: upstream.origin, pids: () => [], usesRedis: false, stop: async () => undefined };
}

export async function startBare(upstream: Upstream, nodeArgs: string[] = []): Promise<Target> {
  const { child, port } = await startNodeServer('bare forwarder', 'bare-forwarder.js', [upstream.origin], 'proxy', nodeArgs);
  return { id: 'bare', origin: `http://127.0.0.1:${port}`, pids: () => [child.pid], usesRedis: false, stop: () => child.stop() };
}

/**
 * The minimal reference, forwarding with undici's `request()` (as a user would write it), or
 * with `engine: 'coatcheck'` through coatcheck's own engine (src/proxy/engine.ts), so that
 * coatcheck's ratio to it is what the session features alone cost. `nodeArgs` go before the
 * script (e.g. --cpu-prof).
 */
export async function startMinimal(
  upstream: Upstream,
  redisUrl: string,
  engine: 'request' | 'coatcheck' = 'request',
  nodeArgs: string[] = [],
): Promise<Target> {
  const name = engine === 'request' ? 'minimal reference' : "minimal reference (coatcheck's engine)";
  const { child, port } = await startNodeServer(name, 'minimal-proxy.js', [upstream.origin, redisUrl, engine], 'proxy', nodeArgs);
  const id: TargetId = engine === 'request' ? 'minimal' : 'minimal-engine';
  return { id, origin: `http://127.0.0.1:${port}`, pids: () => [child.pid], usesRedis: true, stop: () => child.stop() };
}

export const COATCHECK_SECRET = randomBytes(36).toString('base64url');
export const COATCHECK_PREFIX = 'coatcheck:';

export type BenchStore =
  | { kind: 'memory' }
  | { kind: 'redis'; url: string; /** store.timeout; default 250ms, as in production. */ timeout?: string }
  /** A Redis Cluster: its masters' "host:port". */
  | { kind: 'cluster'; nodes: readonly string[]; timeout?: string };

function storeYaml(store: BenchStore): string {
  switch (store.kind) {
    case 'memory':
      return 'store:\n  kind: memory\n';
    case 'redis':
      return `store:\n  kind: redis\n  url: "${store.url}"\n  prefix: "${COATCHECK_PREFIX}"\n  timeout: ${store.timeout ?? '250ms'}\n`;
    case 'cluster':
      return `store:\n  kind: redis\n  cluster:\n    nodes: [${store.nodes.map((n) => `"${n}"`).join(', ')}]\n  prefix: "${COATCHECK_PREFIX}"\n  timeout: ${store.timeout ?? '250ms'}\n`;
  }
}

/** coatcheck's configuration for the bench: a realistic one, minus per-request access logs. */
export function coatcheckConfig(upstreamOrigin: string, port: number, store: BenchStore, workers = 1): string {
  return `# generated by bench/run.ts
listen: "127.0.0.1:${port}"
upstream: "${upstreamOrigin}"
workers: ${workers}
${storeYaml(store)}secrets:
  - "${COATCHECK_SECRET}"
cookie:
  name: coatcheck
  secure: false
  sameSite: lax
session:
  idleTimeout: 30m
  absoluteTimeout: 12h
  managed: "*"
  passthrough: ["_ga*"]
logout:
  - path: /logout
    methods: [GET, POST]
login:
  - path: /login
    methods: [POST]
invalidSession:
  revoked: reject
  expired: anonymous
log:
  level: warn
  access: false
`;
}

/**
 * coatcheck itself: `node dist/cli.js --config <generated yaml>`. With log level warn its
 * "listening" line is not printed, so the bench picks the port and waits until it accepts.
 * `nodeArgs` go before the script (e.g. --cpu-prof).
 */
export async function startCoatcheck(
  upstream: Upstream,
  store: BenchStore,
  nodeArgs: string[] = [],
  /** Processes sharing the listener (the config's `workers`). */
  workers = 1,
): Promise<Target> {
  const dir = registerTempDir(await mkdtemp(join(tmpdir(), 'coatcheck-bench-cc-')));
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const file = join(dir, `coatcheck-${store.kind}.yaml`);
    await writeFile(file, coatcheckConfig(upstream.origin, port, store, workers));
    const id: TargetId =
      store.kind === 'memory' ? 'coatcheck-memory' : store.kind === 'cluster' ? 'coatcheck-cluster' : workers > 1 ? 'coatcheck-redis-2w' : 'coatcheck-redis';
    const child = startChild(id, process.execPath, [...nodeArgs, join(REPO_ROOT, 'dist/cli.js'), '--config', file], { cwd: dir, role: 'proxy' });
    try {
      await waitForPort(port, READY_TIMEOUT_MS, () => child.isRunning());
    } catch (err) {
      lastError = err;
      await child.stop('SIGKILL');
      if (/EADDRINUSE/.test(child.tail())) continue;
      await rm(dir, { recursive: true, force: true });
      throw new Error(`${id} did not start: ${(err as Error).message}\n${child.tail()}`, { cause: err });
    }
    return {
      id,
      origin: `http://127.0.0.1:${port}`,
      // With workers, the primary and its worker processes.
      pids: () => (workers > 1 ? processTree(child.pid) : [child.pid]),
      usesRedis: store.kind !== 'memory',
      tail: () => child.tail(),
      async stop() {
        await child.stop('SIGTERM', 15_000);
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(`coatcheck did not start: ${(lastError as Error)?.message}`);
}

/** nginx as a plain reverse proxy: one worker (the Node proxies are single-threaded too), keep-alive both ways. */
export async function startNginx(upstream: Upstream): Promise<Target> {
  const dir = registerTempDir(await mkdtemp(join(tmpdir(), 'coatcheck-bench-nginx-')));
  const upstreamHost = new URL(upstream.origin).host;
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
    const conf = `# generated by bench/run.ts
${asRoot ? 'user root;\n' : ''}worker_processes 1;
error_log stderr warn;
pid ${join(dir, 'nginx.pid')};
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${join(dir, 'body')};
  proxy_temp_path ${join(dir, 'proxy')};
  fastcgi_temp_path ${join(dir, 'fastcgi')};
  uwsgi_temp_path ${join(dir, 'uwsgi')};
  scgi_temp_path ${join(dir, 'scgi')};
  keepalive_requests 1000000;
  keepalive_timeout 65s;
  upstream app {
    server ${upstreamHost};
    keepalive 128;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
    }
  }
}
`;
    const file = join(dir, 'nginx.conf');
    await writeFile(file, conf);
    const child = startChild('nginx', 'nginx', ['-p', dir, '-c', file, '-e', 'stderr', '-g', 'daemon off;'], { role: 'proxy' });
    try {
      await waitForPort(port, READY_TIMEOUT_MS, () => child.isRunning());
    } catch (err) {
      lastError = err;
      await child.stop('SIGKILL');
      if (/Address already in use/i.test(child.tail())) continue;
      await rm(dir, { recursive: true, force: true });
      throw new Error(`nginx did not start: ${(err as Error).message}\n${child.tail()}`, { cause: err });
    }
    return {
      id: 'nginx',
      origin: `http://127.0.0.1:${port}`,
      pids: () => processTree(child.pid),
      usesRedis: false,
      async stop() {
        await child.stop('SIGQUIT', 5000);
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(`nginx did not start: ${(lastError as Error)?.message}`);
}
