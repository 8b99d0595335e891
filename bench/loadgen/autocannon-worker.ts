// The fallback load generator (and the one for the churn scenario, whose per-connection
// login → requests → logout sequence wrk cannot express): autocannon in its own process.
//   node autocannon-worker.js <spec.json>
// Prints one line "ACJSON {...}" with the run's counts and latency percentiles. Latencies are
// taken from autocannon's per-response event (fractional ms), not from its histogram, whose
// resolution is 1 ms.
import { readFileSync } from 'node:fs';
import autocannon, { type AutocannonRequest } from 'autocannon';

export interface WorkerRequest {
  method: string;
  path: string;
  headers?: Record<string, string>;
  /** Keep the name=value pairs of this response's Set-Cookies for the next requests of the connection. */
  capture?: boolean;
  /** Send the captured cookies. */
  useCaptured?: boolean;
}

export interface WorkerSpec {
  origin: string;
  connections: number;
  durationSec: number;
  timeoutSec: number;
  requests: WorkerRequest[];
  /**
   * The requests differ only in their cookie (one per session): start each connection at its
   * own place in the list. autocannon starts every connection at the first request and they
   * advance in step, so without this all connections use the same session at the same moment
   * (every cookie update then races every other one on one record).
   */
  spread?: boolean;
}

export interface WorkerResult {
  requests: number;
  durationSec: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  statusCounts: Record<string, number>;
}

function setCookiePairs(headers: Record<string, string | string[]>): string | undefined {
  const pairs: string[] = [];
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() !== 'set-cookie') continue;
    for (const sc of Array.isArray(v) ? v : [v]) {
      const pair = sc.split(';')[0]?.trim() ?? '';
      const eq = pair.indexOf('=');
      if (eq > 0 && eq < pair.length - 1) pairs.push(pair);
    }
  }
  return pairs.length > 0 ? pairs.join('; ') : undefined;
}

function toRequest(r: WorkerRequest): AutocannonRequest {
  const out: AutocannonRequest = { method: r.method, path: r.path, headers: { ...(r.headers ?? {}) } };
  if (r.method === 'POST') {
    out.headers = { ...out.headers, 'content-type': 'application/x-www-form-urlencoded' };
    out.body = '';
  }
  if (r.capture) {
    out.onResponse = (_status, _body, context, headers) => {
      const c = setCookiePairs(headers);
      if (c !== undefined) context.cookie = c;
    };
  }
  if (r.useCaptured) {
    out.setupRequest = (req, context) => {
      const cookie = context.cookie;
      return typeof cookie === 'string' ? { ...req, headers: { ...(req.headers ?? {}), cookie } } : req;
    };
  }
  return out;
}

/** The requests with per-connection starting places (see WorkerSpec.spread). */
function spread(requests: AutocannonRequest[], connections: number): AutocannonRequest[] {
  const n = requests.length;
  const stride = Math.max(1, Math.floor(n / Math.max(1, connections)));
  const cookies = requests.map((r) => (r.headers as Record<string, string> | undefined)?.cookie);
  let starts = 0;
  return requests.map((r, i) => ({
    ...r,
    // autocannon gives each connection a fresh context at the start of every pass over the
    // list: the pass's offset is chosen then, a different one for each pass that starts.
    setupRequest: (req, context) => {
      if (typeof context.offset !== 'number') context.offset = (starts++ * stride) % n;
      const cookie = cookies[(i + (context.offset as number)) % n];
      return cookie === undefined ? req : { ...req, headers: { ...(req.headers ?? {}), cookie } };
    },
  }));
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

async function main(): Promise<void> {
  const specPath = process.argv[2];
  if (!specPath) throw new Error('usage: autocannon-worker.js <spec.json>');
  const spec = JSON.parse(readFileSync(specPath, 'utf8')) as WorkerSpec;
  let lat = new Float64Array(1 << 16);
  let n = 0;
  const instance = autocannon({
    url: spec.origin,
    connections: spec.connections,
    duration: spec.durationSec,
    timeout: spec.timeoutSec,
    requests: spec.spread ? spread(spec.requests.map(toRequest), spec.connections) : spec.requests.map(toRequest),
  });
  instance.on('response', (_client: unknown, _status: number, _bytes: number, ms: number) => {
    if (n === lat.length) {
      const next = new Float64Array(lat.length * 2);
      next.set(lat);
      lat = next;
    }
    lat[n++] = ms;
  });
  const r = await instance;
  const sorted = lat.subarray(0, n).sort();
  const statusCounts: Record<string, number> = {};
  for (const [code, s] of Object.entries(r.statusCodeStats ?? {})) statusCounts[code] = s.count;
  const result: WorkerResult = {
    // Responses seen (the aggregated result has no flat count; this matches the latency samples).
    requests: n,
    durationSec: r.duration,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    errors: r.errors,
    timeouts: r.timeouts,
    non2xx: r.non2xx,
    statusCounts,
  };
  process.stdout.write(`ACJSON ${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`autocannon-worker: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
