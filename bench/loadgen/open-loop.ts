// The open-loop load generator: requests arrive at a fixed rate whatever the server does, and
// each one's latency counts from the moment it was DUE, not the moment it was sent.
//   node open-loop.js <spec.json>
// Prints one line "OLJSON {...}" (see OpenLoopResult) and exits.
//
// Schedule: request i is due at t0 + i / rate. A timer wakes the generator when the next
// request is due; it takes every request whose time has come, and writes each on an idle
// keep-alive connection, or queues it (in due order) when every connection is busy; a
// connection that finishes a response takes the oldest queued request. Latency = time the
// response ended − due time, so a stall of the server shows in full in every request that was
// due during it (a closed-loop generator would send fewer requests then and record only the
// few that waited: coordinated omission).
//
// The generator's own lateness: for each request, the time between its due time and the moment
// the generator's event loop got to it (sent or queued). It is part of every latency (for every
// target alike); its p99 and max say whether the generator kept up (a late generator would hide
// a server's stalls as well as add its own).
//
// Keep-alive: a server closes a connection left idle too long (Node's default keep-alive
// timeout is 5 s), and a request written just as that close is on its way fails. With 128
// connections taken last-in first-out, the ones at the bottom of the idle stack sit unused for
// seconds at moderate rates; so, as a browser or undici does, the generator retires a connection
// idle for IDLE_RETIRE_MS (below any server's timeout) and opens a fresh one in the background.
//
// Raw HTTP/1.1 on net sockets, one request at a time per connection, prebuilt request buffers
// (one per session cookie, cycled round robin like the wrk script): a few µs of CPU per
// request. Responses are framed by Content-Length or chunked encoding.
import { readFileSync } from 'node:fs';
import { Socket } from 'node:net';

export interface OpenLoopSpec {
  host: string;
  port: number;
  /** Requests per second. */
  rate: number;
  /** Not recorded: the same rate first, for this long. */
  warmupSec: number;
  durationSec: number;
  connections: number;
  timeoutSec: number;
  method: string;
  path: string;
  /** Cookie headers, one per request in turn; empty: none. */
  cookies: string[];
}

export interface OpenLoopResult {
  targetRps: number;
  /** Recorded responses / recorded window (from its first due time to its last response). */
  achievedRps: number;
  scheduled: number;
  requests: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  statusCounts: Record<string, number>;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  /** How late the generator's loop got to requests after their due time (recorded part). */
  latenessP50Ms: number;
  latenessP99Ms: number;
  latenessMaxMs: number;
  /** Requests that found every connection busy, and the longest queue. */
  queued: number;
  maxQueue: number;
  connections: number;
  /** Idle connections replaced before the server's keep-alive timeout, and idle ones the server closed anyway. */
  retiredIdle: number;
  serverClosedIdle: number;
}

interface Conn {
  socket: Socket;
  buf: Buffer | null;
  /** Index of the request in flight, -1 when idle. */
  inFlight: number;
  /** When it was written (the timeout counts from there: a queued request's wait is not the server's fault alone). */
  sentAt: number;
  alive: boolean;
  /** When it last became idle. */
  idleSince: number;
}

/** A connection idle this long is replaced (servers close idle keep-alive connections: see above). */
const IDLE_RETIRE_MS = 2000;

const spec = JSON.parse(readFileSync(process.argv[2] as string, 'utf8')) as OpenLoopSpec;
const requests = (spec.cookies.length ? spec.cookies : [undefined]).map((c) =>
  Buffer.from(`${spec.method} ${spec.path} HTTP/1.1\r\nHost: ${spec.host}:${spec.port}\r\n${c === undefined ? '' : `Cookie: ${c}\r\n`}\r\n`, 'latin1'),
);
const warmN = Math.round(spec.rate * spec.warmupSec);
const total = warmN + Math.round(spec.rate * spec.durationSec);
const intervalMs = 1000 / spec.rate;
// Per request (warm-up included): due time offset is i * intervalMs; latency and lateness in ms.
const latency = new Float64Array(total).fill(NaN);
const lateness = new Float64Array(total);
const queue = new Int32Array(total);
let qHead = 0;
let qTail = 0;
let maxQueue = 0;
let queued = 0;
let next = 0;
let done = 0;
let errors = 0;
let timeouts = 0;
let non2xx = 0;
let lastEnd = 0;
let retiredIdle = 0;
let serverClosedIdle = 0;
const statusCounts: Record<string, number> = {};
const idle: Conn[] = [];
const conns: Conn[] = [];
let t0 = 0;
let finished = false;

const now = () => performance.now();
const dueOf = (i: number) => t0 + i * intervalMs;

function complete(i: number, status: number): void {
  const end = now();
  latency[i] = end - dueOf(i);
  lastEnd = end;
  statusCounts[status] = (statusCounts[status] ?? 0) + 1;
  if (status < 200 || status > 299) non2xx += 1;
  done += 1;
}

function fail(i: number, timedOut: boolean): void {
  if (timedOut) timeouts += 1;
  errors += 1;
  done += 1;
  if (i >= warmN) lastEnd = now();
}

function send(c: Conn, i: number): void {
  c.inFlight = i;
  c.sentAt = now();
  c.socket.write(requests[i % requests.length] as Buffer);
}

function release(c: Conn): void {
  c.inFlight = -1;
  if (qHead < qTail) send(c, queue[qHead++] as number);
  else {
    c.idleSince = now();
    idle.push(c);
  }
  if (done === total) finish();
}

/** Completes every response fully buffered on the connection (one request in flight at a time). */
function tryResponse(c: Conn): void {
  for (;;) {
    const buf = c.buf;
    if (buf === null || c.inFlight < 0) return;
    const headEnd = buf.indexOf('\r\n\r\n');
    if (headEnd === -1) return;
    const head = buf.toString('latin1', 0, headEnd);
    const status = Number(head.slice(9, 12));
    const lower = head.toLowerCase();
    let end: number;
    const cl = /\r\ncontent-length:\s*(\d+)/.exec(lower);
    if (cl) {
      end = headEnd + 4 + Number(cl[1]);
      if (buf.length < end) return;
    } else if (/\r\ntransfer-encoding:[^\r]*chunked/.test(lower)) {
      let p = headEnd + 4;
      for (;;) {
        const eol = buf.indexOf('\r\n', p);
        if (eol === -1) return;
        const size = parseInt(buf.toString('latin1', p, eol), 16);
        if (size === 0) {
          const fin = buf.indexOf('\r\n\r\n', eol);
          if (fin === -1) return;
          end = fin + 4;
          break;
        }
        p = eol + 2 + size + 2;
        if (buf.length < p) return;
      }
    } else {
      end = headEnd + 4; // 204/304: no body
    }
    c.buf = buf.length > end ? buf.subarray(end) : null;
    const i = c.inFlight;
    complete(i, status);
    if (/\r\nconnection:\s*close/.test(lower)) {
      c.inFlight = -1;
      reconnect(c);
      if (done === total) finish();
      return;
    }
    release(c);
  }
}

function connect(): Conn {
  const socket = new Socket();
  const c: Conn = { socket, buf: null, inFlight: -1, sentAt: 0, alive: true, idleSince: 0 };
  socket.setNoDelay(true);
  socket.on('data', (chunk: Buffer) => {
    c.buf = c.buf === null ? chunk : Buffer.concat([c.buf, chunk]);
    tryResponse(c);
  });
  const lost = () => {
    if (!c.alive) return;
    c.alive = false;
    const i = c.inFlight;
    c.inFlight = -1;
    const k = idle.indexOf(c);
    if (k !== -1) idle.splice(k, 1);
    if (i >= 0) fail(i, false);
    else if (!finished) serverClosedIdle += 1;
    if (!finished) reconnect(c);
    if (done === total) finish();
  };
  socket.on('error', lost);
  socket.on('close', lost);
  socket.connect(spec.port, spec.host);
  return c;
}

function reconnect(old: Conn): void {
  old.alive = false;
  old.socket.destroy();
  const k = conns.indexOf(old);
  const c = connect();
  if (k !== -1) conns[k] = c;
  c.socket.once('connect', () => release(c));
}

let timer: NodeJS.Timeout | undefined;
/** Takes every request that is due, then sleeps until the next one is. */
function tick(): void {
  const t = now();
  while (next < total && dueOf(next) <= t) {
    const i = next++;
    lateness[i] = t - dueOf(i);
    const c = idle.pop();
    if (c) send(c, i);
    else {
      queue[qTail++] = i;
      queued += 1;
      if (qTail - qHead > maxQueue) maxQueue = qTail - qHead;
    }
  }
  if (next < total) timer = setTimeout(tick, Math.max(0, dueOf(next) - now()));
}

/**
 * A request unanswered `timeoutSec` after it was written fails (its connection is replaced), and
 * so does one still queued `timeoutSec` after its due time (it is not sent any more).
 */
const watchdog = setInterval(() => {
  const limit = now() - spec.timeoutSec * 1000;
  for (const c of conns) {
    if (c.alive && c.inFlight >= 0 && c.sentAt < limit) {
      const i = c.inFlight;
      c.inFlight = -1;
      fail(i, true);
      reconnect(c);
    }
  }
  while (qHead < qTail && dueOf(queue[qHead] as number) < limit) {
    fail(queue[qHead++] as number, true);
  }
  // The stack's bottom holds the longest idle.
  const stale = now() - IDLE_RETIRE_MS;
  while (!finished && idle.length > 0 && (idle[0] as Conn).idleSince < stale) {
    retiredIdle += 1;
    reconnect(idle.shift() as Conn);
  }
  if (done === total) finish();
}, 100);

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

function finish(): void {
  if (finished) return;
  finished = true;
  clearTimeout(timer);
  clearInterval(watchdog);
  for (const c of conns) {
    c.alive = false;
    c.socket.destroy();
  }
  const rec = latency.subarray(warmN).filter((x) => !Number.isNaN(x)).sort();
  const late = lateness.subarray(warmN).slice().sort();
  const windowMs = lastEnd - dueOf(warmN);
  const result: OpenLoopResult = {
    targetRps: spec.rate,
    achievedRps: windowMs > 0 ? rec.length / (windowMs / 1000) : 0,
    scheduled: total - warmN,
    requests: rec.length,
    errors,
    timeouts,
    non2xx,
    statusCounts,
    p50Ms: percentile(rec, 50),
    p90Ms: percentile(rec, 90),
    p99Ms: percentile(rec, 99),
    p999Ms: percentile(rec, 99.9),
    maxMs: rec.length ? (rec[rec.length - 1] as number) : NaN,
    latenessP50Ms: percentile(late, 50),
    latenessP99Ms: percentile(late, 99),
    latenessMaxMs: late.length ? (late[late.length - 1] as number) : NaN,
    queued,
    maxQueue,
    connections: spec.connections,
    retiredIdle,
    serverClosedIdle,
  };
  process.stdout.write(`OLJSON ${JSON.stringify(result)}\n`, () => process.exit(0));
}

// Open every connection first, then start the clock.
let connected = 0;
for (let k = 0; k < spec.connections; k++) {
  const c = connect();
  conns.push(c);
  c.socket.once('connect', () => {
    c.idleSince = now();
    idle.push(c);
    connected += 1;
    if (connected === spec.connections) {
      t0 = now() + 5;
      timer = setTimeout(tick, 5);
    }
  });
}
setTimeout(() => {
  if (connected < spec.connections) {
    process.stderr.write(`open-loop: only ${connected} of ${spec.connections} connections opened\n`);
    process.exit(2);
  }
}, 10_000).unref();
