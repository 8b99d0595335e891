// coatcheck is a real reverse proxy: bodies stream both ways without being buffered, the
// connection to the app is kept alive, X-Forwarded-* and hop-by-hop headers are handled as
// RFC 9110 asks, upstream failures map to 502/504 with plain pages, a client that goes away
// aborts the upstream request, and everything else (query strings, HEAD, 204/304, status
// codes, repeated headers) passes through unchanged.
//
// Every wait is on an event (a request reaching the app, a socket closing, a log line); the
// only timers are deadlines that turn a hang into a readable failure.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once, type EventEmitter } from 'node:events';
import { Agent, request, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createNetServer, Socket, type AddressInfo, type Server as NetServer } from 'node:net';
import { send } from '../helpers/client.js';
import { startCoatcheck, type Harness } from '../helpers/coatcheck.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const MB = 1024 * 1024;
const BIG = 100 * MB;
const CHUNK = 64 * 1024;
/** RSS may grow by this much while 100 MB go through: a buffering proxy would need > 100 MB. */
const MAX_RSS_GROWTH = 60 * MB;

/**
 * The bytes of a big transfer: 64 distinct random chunks, replayed in a scrambled order. Reusing
 * them keeps the test's own garbage out of the RSS measurement; the order makes a dropped,
 * repeated or reordered chunk change the hash.
 */
const POOL = Array.from({ length: 64 }, () => randomBytes(CHUNK));
function chunkAt(i: number, maxBytes: number): Buffer {
  const c = POOL[(i * 37 + (i >> 6)) % POOL.length] as Buffer;
  return maxBytes < c.length ? c.subarray(0, maxBytes) : c;
}

/** Rejects with `message` if `p` has not settled within `ms`: a hang becomes a clear failure. */
function within<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Peak resident set size, sampled on a timer and whenever a transfer loop calls sample(). */
function rssWatch(): { sample(): void; stop(): number; readonly baseline: number } {
  const baseline = process.memoryUsage.rss();
  let peak = baseline;
  const sample = () => {
    const r = process.memoryUsage.rss();
    if (r > peak) peak = r;
  };
  const timer = setInterval(sample, 20);
  return {
    baseline,
    sample,
    stop() {
      clearInterval(timer);
      sample();
      return peak - baseline;
    },
  };
}

function readAll(res: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => resolve(Buffer.concat(chunks)));
    res.on('error', reject);
  });
}

/** Writes with backpressure; resolves once the chunk is accepted. */
async function writeChunk(stream: NodeJS.WritableStream & { write(c: Buffer): boolean }, chunk: Buffer): Promise<void> {
  if (!stream.write(chunk)) await once(stream as unknown as EventEmitter, 'drain');
}

/** Resolves on 'drain' or 'close', whichever comes first, leaving no listener behind. */
function drainOrClose(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** A request whose response (or error) is awaited separately from writing its body. */
function open(port: number, path: string, opts: { method?: string; headers?: Record<string, string>; agent?: Agent | false } = {}) {
  const req = request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers: opts.headers ?? {}, agent: opts.agent ?? false });
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.on('response', resolve);
    req.on('error', reject);
  });
  return { req, response };
}

function rawNames(raw: readonly string[]): string[] {
  return raw.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
}

function rawValues(raw: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if ((raw[i] as string).toLowerCase() === name) out.push(raw[i + 1] as string);
  return out;
}

/** An error page coatcheck wrote itself: plain text, no stack, no upstream address. */
function assertPlainErrorPage(res: { status: number; headers: Record<string, unknown>; body: string }, status: number, upstreamPort: number): void {
  assert.equal(res.status, status);
  assert.match(String(res.headers['content-type']), /^text\/plain/);
  assert.ok(res.body.startsWith(`${status} `), `body starts with the status: ${JSON.stringify(res.body)}`);
  for (const leak of [`:${upstreamPort}`, '127.0.0.1', 'ECONNREFUSED', 'ECONNRESET', 'UND_ERR', 'undici', 'Error:', '    at ', '.js:', '.ts:']) {
    assert.ok(!res.body.includes(leak), `error page leaks ${JSON.stringify(leak)}: ${JSON.stringify(res.body)}`);
  }
  for (const [name, value] of Object.entries(res.headers)) {
    assert.ok(!String(value).includes(`:${upstreamPort}`), `header ${name} leaks the upstream address`);
  }
}

async function startPair(t: { after(fn: () => Promise<void>): void }, overrides: Parameters<typeof startCoatcheck>[1] = {}) {
  const up = await startUpstream();
  const cc = await startCoatcheck(up.origin, { shutdownTimeout: '2s', ...overrides });
  t.after(async () => {
    await up.close();
    await cc.close();
  });
  return { up, cc };
}

/** A TCP "app" that does something broken with every connection. */
async function brokenApp(t: { after(fn: () => Promise<void>): void }, onSocket: (s: Socket) => void): Promise<{ origin: string; port: number }> {
  const sockets = new Set<Socket>();
  const server: NetServer = createNetServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    onSocket(s);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { origin: `http://127.0.0.1:${port}`, port };
}

describe('forwarding', () => {
  let up: Upstream;
  let cc: Harness;

  before(async () => {
    up = await startUpstream();
    cc = await startCoatcheck(up.origin, { shutdownTimeout: '2s', session: { passthrough: ['pt_*'] } });
  });
  after(async () => {
    await up?.close();
    await cc?.close();
  });

  describe('streaming bodies', () => {
    // The first megabytes through a fresh process grow V8's young generation and the allocator's
    // arenas once; move 32 MB each way first, so the measurements below see only per-transfer growth.
    before(async () => {
      up.route('/warm-up', async (req, res) => {
        if (req.method === 'POST') {
          let n = 0;
          for await (const c of req) n += (c as Buffer).length;
          res.end(String(n));
          return;
        }
        for (let i = 0; i < 512; i++) await writeChunk(res, chunkAt(i, CHUNK));
        res.end();
      });
      const { req, response } = open(cc.port, '/warm-up', { method: 'POST' });
      response.catch(() => undefined);
      for (let i = 0; i < 512; i++) await writeChunk(req, chunkAt(i, CHUNK));
      req.end();
      assert.equal((await readAll(await response)).toString(), String(512 * CHUNK));
      const down = open(cc.port, '/warm-up');
      down.req.end();
      let n = 0;
      for await (const c of await down.response) n += (c as Buffer).length;
      assert.equal(n, 512 * CHUNK);
    });

    test('a 100 MB upload streams to the app (app sees bytes before the upload ends); hash and size match; RSS stays flat', { timeout: 120_000 }, async (t) => {
      const firstBytes = deferred();
      up.route('/upload', (req, res) => {
        const hash = createHash('sha256');
        let n = 0;
        req.on('data', (c: Buffer) => {
          if (n === 0) firstBytes.resolve();
          n += c.length;
          hash.update(c);
        });
        req.on('end', () => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ bytes: n, sha256: hash.digest('hex') }));
        });
      });

      const mem = rssWatch();
      const { req, response } = open(cc.port, '/upload', { method: 'POST', headers: { 'content-type': 'application/octet-stream' } });
      response.catch(() => undefined); // awaited below; an early failure must not be unhandled
      const hash = createHash('sha256');
      let sent = 0;
      let chunks = 0;
      const pump = async (until: number) => {
        while (sent < until) {
          const c = chunkAt(chunks++, until - sent);
          hash.update(c);
          sent += c.length;
          if (chunks % 16 === 0) mem.sample();
          await writeChunk(req, c);
        }
      };
      await pump(MB);
      // A proxy that buffered the body would hold it until the end: the app would see nothing yet.
      await within(firstBytes.promise, 30_000, 'the app saw no byte of the upload while the client was still sending: the request body is buffered');
      await pump(BIG);
      req.end();
      const res = await response;
      const body = JSON.parse((await readAll(res)).toString('utf8')) as { bytes: number; sha256: string };
      const growth = mem.stop();
      assert.equal(res.statusCode, 200);
      assert.equal(body.bytes, BIG);
      assert.equal(body.sha256, hash.digest('hex'));
      t.diagnostic(`RSS growth during the upload: ${(growth / MB).toFixed(1)} MB`);
      assert.ok(growth < MAX_RSS_GROWTH, `RSS grew by ${(growth / MB).toFixed(1)} MB while uploading 100 MB`);
    });

    test('a 100 MB download streams to the client (client sees bytes before the app finishes); hash and size match; RSS stays flat', { timeout: 120_000 }, async (t) => {
      const clientGotBytes = deferred();
      const upstreamHash = deferred<string>();
      up.route('/download', async (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(BIG) });
        const hash = createHash('sha256');
        let sent = 0;
        let chunks = 0;
        const pump = async (until: number) => {
          while (sent < until && !res.destroyed) {
            const c = chunkAt(chunks++, until - sent);
            hash.update(c);
            sent += c.length;
            await writeChunk(res, c);
          }
        };
        await pump(MB);
        // The rest only once the client has seen bytes: a buffering proxy never lets that happen.
        await clientGotBytes.promise;
        await pump(BIG);
        res.end();
        upstreamHash.resolve(hash.digest('hex'));
      });

      const mem = rssWatch();
      const { req, response } = open(cc.port, '/download');
      req.end();
      const res = await within(response, 30_000, 'no response headers while the app was still sending: the response is buffered');
      assert.equal(res.statusCode, 200);
      assert.equal(res.headers['content-length'], String(BIG));
      const hash = createHash('sha256');
      let received = 0;
      let chunks = 0;
      const done = new Promise<void>((resolve, reject) => {
        res.on('data', (c: Buffer) => {
          if (received === 0) clientGotBytes.resolve();
          received += c.length;
          hash.update(c);
          if (++chunks % 16 === 0) mem.sample();
        });
        res.on('end', resolve);
        res.on('error', reject);
      });
      await within(clientGotBytes.promise, 30_000, 'the client got no byte while the app was still sending: the response body is buffered');
      await done;
      const growth = mem.stop();
      assert.equal(received, BIG);
      assert.equal(hash.digest('hex'), await upstreamHash.promise);
      t.diagnostic(`RSS growth during the download: ${(growth / MB).toFixed(1)} MB`);
      assert.ok(growth < MAX_RSS_GROWTH, `RSS grew by ${(growth / MB).toFixed(1)} MB while downloading 100 MB`);
    });

    test('Expect: 100-continue: the client gets 100 Continue, then its body reaches the app (the Expect header does not)', async () => {
      const seen = up.nextRequest('/continue');
      up.route('/continue', async (req, res) => {
        const body = await readAll(req);
        res.end(body.toString('utf8').toUpperCase());
      });
      const payload = 'continue me '.repeat(1000);
      const { req, response } = open(cc.port, '/continue', {
        method: 'POST',
        headers: { expect: '100-continue', 'content-type': 'text/plain', 'content-length': String(payload.length) },
      });
      response.catch(() => undefined);
      req.flushHeaders();
      await within(once(req, 'continue'), 10_000, 'no 100 Continue came back');
      req.end(payload);
      const res = await response;
      assert.equal(res.statusCode, 200);
      assert.equal((await readAll(res)).toString('utf8'), payload.toUpperCase());
      const rec = await seen;
      assert.equal(rec.headers.expect, undefined);
    });

    test('a client Trailer header (with real trailers) neither crashes the proxy nor reaches the app', async () => {
      const seen = up.nextRequest('/trailer');
      up.route('/trailer', async (req, res) => {
        const body = await readAll(req);
        res.end(`got ${body.length}`);
      });
      const { req, response } = open(cc.port, '/trailer', { method: 'POST', headers: { trailer: 'X-Checksum', 'transfer-encoding': 'chunked' } });
      req.write('hello ');
      req.write('world');
      req.addTrailers({ 'X-Checksum': 'abc123' });
      req.end();
      const res = await response;
      assert.equal(res.statusCode, 200);
      assert.equal((await readAll(res)).toString(), 'got 11');
      assert.equal((await seen).headers.trailer, undefined);

      // A Trailer header on a request without a body, too (http-proxy 1.18.1 crashed on it).
      // Node's client refuses to send that, so it goes raw.
      const plain = await sendRaw(cc.port, 'GET /echo HTTP/1.1\r\nHost: h\r\nTrailer: Expires\r\nConnection: close\r\n\r\n');
      assert.match(plain, /^HTTP\/1\.1 200 /);
      assert.equal((await send(cc.port, '/echo')).status, 200);
    });
  });

  describe('connection to the app', () => {
    test('sequential requests reuse one keep-alive connection to the app', async (t) => {
      const { up: app, cc: proxy } = await startPair(t);
      let connections = 0;
      app.server.on('connection', () => connections++);
      app.route('/socket', (req, res) => {
        res.end(String(req.socket.remotePort));
      });
      const ports: string[] = [];
      for (let i = 0; i < 6; i++) {
        const r = await send(proxy.port, '/socket');
        assert.equal(r.status, 200);
        ports.push(r.body);
      }
      assert.equal(connections, 1, `the app saw ${connections} connections for 6 sequential requests`);
      assert.equal(new Set(ports).size, 1, `requests came from several client ports: ${ports.join(', ')}`);
    });
  });

  describe('request headers', () => {
    test('X-Forwarded-* are set by coatcheck; client-sent ones (and Forwarded) are ignored when trustProxy is false; Host is kept', async () => {
      const seen = up.nextRequest('/echo');
      const r = await send(cc.port, '/echo', {
        headers: {
          host: 'app.example.test:8443',
          'x-forwarded-for': '203.0.113.9',
          'x-forwarded-proto': 'https',
          'x-forwarded-host': 'evil.example',
          forwarded: 'for=203.0.113.9;proto=https;host=evil.example',
        },
      });
      assert.equal(r.status, 200);
      const rec = await seen;
      assert.deepEqual(rawValues(rec.rawHeaders, 'x-forwarded-for'), ['127.0.0.1']);
      assert.deepEqual(rawValues(rec.rawHeaders, 'x-forwarded-proto'), ['http']);
      assert.deepEqual(rawValues(rec.rawHeaders, 'x-forwarded-host'), ['app.example.test:8443']);
      assert.deepEqual(rawValues(rec.rawHeaders, 'host'), ['app.example.test:8443']);
      assert.deepEqual(rawValues(rec.rawHeaders, 'forwarded'), []);
    });

    test('with trustProxy: true the client X-Forwarded-For chain is kept and extended, proto and host are taken over', async (t) => {
      const { up: app, cc: proxy } = await startPair(t, { trustProxy: true });
      const seen = app.nextRequest('/echo');
      // Two X-Forwarded-For lines: both are kept, in order (RFC 9110 list semantics).
      const r = await sendRaw(
        proxy.port,
        'GET /echo HTTP/1.1\r\nHost: internal:8080\r\nX-Forwarded-For: 203.0.113.9, 198.51.100.7\r\nX-Forwarded-For: 192.0.2.1\r\n' +
          'X-Forwarded-Proto: https\r\nX-Forwarded-Host: public.example\r\nConnection: close\r\n\r\n',
      );
      assert.match(r, /^HTTP\/1\.1 200 /);
      const rec = await seen;
      assert.deepEqual(rawValues(rec.rawHeaders, 'x-forwarded-for'), ['203.0.113.9, 198.51.100.7, 192.0.2.1, 127.0.0.1']);
      assert.deepEqual(rawValues(rec.rawHeaders, 'x-forwarded-proto'), ['https']);
      assert.deepEqual(rawValues(rec.rawHeaders, 'x-forwarded-host'), ['public.example']);
      assert.deepEqual(rawValues(rec.rawHeaders, 'host'), ['internal:8080']);
    });

    test('hop-by-hop request headers, and every header named in Connection, never reach the app', async () => {
      const seen = up.nextRequest('/echo');
      // Raw, because Node's client will not send a Trailer header without a chunked body.
      const r = await sendRaw(
        cc.port,
        [
          'GET /echo HTTP/1.1',
          'Host: h.example',
          'Connection: close, X-Secret-Hop, x-other-hop',
          'Keep-Alive: timeout=5, max=100',
          'TE: trailers',
          'Trailer: X-Checksum',
          'Upgrade: websocket',
          'Proxy-Authorization: Basic Zm9vOmJhcg==',
          'Proxy-Connection: keep-alive',
          'X-Secret-Hop: must not pass',
          'X-Other-Hop: must not pass either',
          'X-Kept: yes',
          '',
          '',
        ].join('\r\n'),
      );
      assert.match(r, /^HTTP\/1\.1 200 /);
      const rec = await seen;
      const names = rawNames(rec.rawHeaders);
      for (const hop of ['keep-alive', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-connection', 'x-secret-hop', 'x-other-hop']) {
        assert.ok(!names.includes(hop), `"${hop}" reached the app`);
      }
      assert.equal(rec.headers['x-kept'], 'yes');
      // The app may see the proxy's own Connection header, never the client's.
      for (const v of rawValues(rec.rawHeaders, 'connection')) assert.ok(!/hop/i.test(v), `client Connection value reached the app: ${v}`);
    });

    test('query strings and paths reach the app byte for byte', async () => {
      const targets = [
        '/echo?a=1&b=2&a=3',
        '/echo?x=%2F%3F%26%3D&y=a+b%20c',
        '/echo?%zz=%&empty=&flag&&',
        '/echo?',
        '/echo?q=caf%C3%A9&semi=a;b&slash=/x/../y&q2=%7e~',
        '/echo/%2e%2E/a%2Fb/./c//d?z=%00',
      ];
      for (const target of targets) {
        const seen = up.nextRequest(target.split('?')[0] as string);
        const r = await send(cc.port, target);
        assert.equal(r.status, 200, target);
        assert.equal((await seen).url, target);
      }
    });
  });

  describe('responses', () => {
    test('hop-by-hop response headers, and every header the app names in Connection, never reach the client', async () => {
      up.route('/hop-response', (_req, res) => {
        res.writeHead(200, [
          'Content-Type', 'text/plain',
          'Connection', 'X-Internal-Hop',
          'X-Internal-Hop', 'secret',
          'Keep-Alive', 'timeout=99',
          'Proxy-Authenticate', 'Basic realm="app"',
          'Upgrade', 'foo/2',
          'Trailer', 'X-Trail',
          'X-Kept', 'yes',
        ]);
        res.write('chunk one ');
        res.addTrailers({ 'X-Trail': 'end' });
        res.end('chunk two');
      });
      const r = await send(cc.port, '/hop-response');
      assert.equal(r.status, 200);
      assert.equal(r.body, 'chunk one chunk two');
      for (const hop of ['x-internal-hop', 'keep-alive', 'proxy-authenticate', 'upgrade', 'trailer']) {
        assert.equal(r.headers[hop], undefined, `"${hop}" reached the client`);
      }
      assert.equal(r.headers['x-kept'], 'yes');
      assert.equal(r.headers.connection, 'close'); // coatcheck's own, for this Connection: close client
    });

    test('status codes, bodies and repeated response headers pass through unchanged, in order', async () => {
      const codes = [200, 201, 202, 203, 206, 301, 302, 303, 307, 308, 400, 401, 403, 404, 409, 410, 418, 422, 429, 451, 500, 501, 502, 503, 504, 599];
      for (const code of codes) {
        up.route(`/status/${code}`, (_req, res) => {
          const headers = [
            'Content-Type', 'text/plain',
            'X-Multi', 'a',
            'Link', '</a.css>; rel=preload',
            'X-Multi', 'b, c',
            'Link', '</b.js>; rel=preload',
            'Vary', 'Accept',
            'Vary', 'Accept-Language',
            'Set-Cookie', 'pt_a=1; Path=/',
            'Set-Cookie', 'pt_b=2; Path=/; HttpOnly',
            'WWW-Authenticate', 'Basic realm="one"',
            'WWW-Authenticate', 'Bearer realm="two"',
          ];
          if (code >= 300 && code < 400) headers.push('Location', '/elsewhere?x=1');
          res.writeHead(code, headers);
          res.end(`app says ${code}`);
        });
      }
      for (const code of codes) {
        const { req, response } = open(cc.port, `/status/${code}`);
        req.end();
        const res = await response;
        const body = (await readAll(res)).toString();
        assert.equal(res.statusCode, code);
        assert.equal(body, `app says ${code}`, `body of ${code}`);
        assert.deepEqual(rawValues(res.rawHeaders, 'x-multi'), ['a', 'b, c'], `X-Multi of ${code}`);
        assert.deepEqual(rawValues(res.rawHeaders, 'link'), ['</a.css>; rel=preload', '</b.js>; rel=preload']);
        assert.deepEqual(rawValues(res.rawHeaders, 'vary'), ['Accept', 'Accept-Language']);
        assert.deepEqual(rawValues(res.rawHeaders, 'www-authenticate'), ['Basic realm="one"', 'Bearer realm="two"']);
        assert.deepEqual(rawValues(res.rawHeaders, 'set-cookie'), ['pt_a=1; Path=/', 'pt_b=2; Path=/; HttpOnly']);
        if (code >= 300 && code < 400) assert.equal(res.headers.location, '/elsewhere?x=1');
      }
    });

    test('HEAD, 204 and 304 answer with headers only, and the client connection stays usable for the next request', async (t) => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      t.after(() => agent.destroy());
      up.route('/head', (req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1234', 'x-head': 'yes' });
        res.end(req.method === 'HEAD' ? undefined : 'x'.repeat(1234));
      });
      up.route('/nocontent', (_req, res) => {
        res.writeHead(204, { 'x-no': 'content' });
        res.end();
      });
      up.route('/cached', (req, res) => {
        if (req.headers['if-none-match'] === '"v1"') {
          res.writeHead(304, { etag: '"v1"', 'cache-control': 'max-age=60' });
          res.end();
        } else {
          res.writeHead(200, { etag: '"v1"', 'content-type': 'text/plain' });
          res.end('fresh');
        }
      });
      const go = async (path: string, method = 'GET', headers: Record<string, string> = {}) => {
        const { req, response } = open(cc.port, path, { method, headers, agent });
        req.end();
        const res = await response;
        return { res, body: (await readAll(res)).toString(), reused: req.reusedSocket };
      };

      const headSeen = up.nextRequest('/head');
      const head = await go('/head', 'HEAD');
      assert.equal(head.res.statusCode, 200);
      assert.equal(head.res.headers['content-length'], '1234');
      assert.equal(head.res.headers['x-head'], 'yes');
      assert.equal(head.body, '');
      assert.equal((await headSeen).method, 'HEAD');

      const get = await go('/head');
      assert.equal(get.body.length, 1234);
      assert.equal(get.reused, true, 'the connection was not reused after HEAD');

      const none = await go('/nocontent', 'POST');
      assert.equal(none.res.statusCode, 204);
      assert.equal(none.res.headers['x-no'], 'content');
      assert.equal(none.body, '');

      const fresh = await go('/cached');
      assert.equal(fresh.res.statusCode, 200);
      assert.equal(fresh.body, 'fresh');
      const notModified = await go('/cached', 'GET', { 'if-none-match': '"v1"' });
      assert.equal(notModified.res.statusCode, 304);
      assert.equal(notModified.res.headers.etag, '"v1"');
      assert.equal(notModified.body, '');

      const after = await go('/echo');
      assert.equal(after.res.statusCode, 200);
      assert.equal(after.reused, true, 'the connection was not reused after 204/304');
      assert.equal((JSON.parse(after.body) as { url: string }).url, '/echo');
    });
  });

  describe('upstream failures', () => {
    test('app down (nothing listening) → 502, a plain page without internals', async (t) => {
      const dead = await startUpstream();
      const deadPort = dead.port;
      await dead.close();
      const proxy = await startCoatcheck(dead.origin, { shutdownTimeout: '2s' });
      t.after(() => proxy.close());
      const r = await send(proxy.port, '/anything?x=1');
      assertPlainErrorPage(r, 502, deadPort);
      const logged = await proxy.logs.waitFor((l) => l.event === 'request.failed');
      assert.equal(logged.status, 502);
    });

    test('app drops the connection without answering → 502', async (t) => {
      const app = await brokenApp(t, (s) => s.once('data', () => s.destroy()));
      const proxy = await startCoatcheck(app.origin, { shutdownTimeout: '2s' });
      t.after(() => proxy.close());
      assertPlainErrorPage(await send(proxy.port, '/'), 502, app.port);
      assert.equal((await send(proxy.port, '/again')).status, 502, 'still answering after a failure');
    });

    test('app answers garbage instead of HTTP → 502', async (t) => {
      const app = await brokenApp(t, (s) => s.once('data', () => s.end('SPEAK FRIEND AND ENTER\r\n\r\n')));
      const proxy = await startCoatcheck(app.origin, { shutdownTimeout: '2s' });
      t.after(() => proxy.close());
      assertPlainErrorPage(await send(proxy.port, '/'), 502, app.port);
    });

    test('app too slow (no answer within upstreamTimeout 300ms) → 504 within a bounded time', { timeout: 30_000 }, async (t) => {
      const { up: app, cc: proxy } = await startPair(t, { upstreamTimeout: '300ms' });
      const arrived = app.nextRequest('/never');
      app.route('/never', () => {
        // never answers; the socket is destroyed when the app closes
      });
      const started = performance.now();
      const r = await send(proxy.port, '/never');
      const elapsed = performance.now() - started;
      await arrived;
      assertPlainErrorPage(r, 504, app.port);
      assert.ok(elapsed >= 250, `504 came after ${elapsed.toFixed(0)}ms, before the timeout`);
      assert.ok(elapsed < 10_000, `504 took ${elapsed.toFixed(0)}ms`);
    });

    test('client gone while the app thinks → the upstream request is aborted (the app sees its connection close)', { timeout: 30_000 }, async (t) => {
      const { up: app, cc: proxy } = await startPair(t);
      const arrived = deferred<ServerResponse>();
      app.route('/think', (_req, res) => arrived.resolve(res));
      const { req, response } = open(proxy.port, '/think');
      response.catch(() => undefined); // the client hangs up itself: "socket hang up" is expected
      req.end();
      const res = await arrived.promise;
      const closed = once(res, 'close');
      req.destroy();
      await within(closed, 10_000, 'the app never saw the request go away: the upstream request was not aborted');
      assert.equal(res.writableFinished, false);
      await within(proxy.logs.waitFor((l) => l.event === 'client.aborted'), 10_000, 'no client.aborted log line');
      const access = await within(proxy.logs.waitFor((l) => l.event === 'access' && l.path === '/think'), 10_000, 'no access line');
      assert.equal(access.incomplete, 'client');
      assert.equal((await send(proxy.port, '/echo')).status, 200, 'still serving');
    });

    // The app's body failing mid-way is an upstream failure: coatcheck cuts the client's
    // response itself, and must not report that as the client going away.
    const bodyFailures: Array<[name: string, overrides: Parameters<typeof startCoatcheck>[1], fail: (res: ServerResponse) => void]> = [
      ['the app drops its connection mid-body', {}, (res) => res.socket?.destroy()],
      ['the app stalls mid-body past upstreamTimeout', { upstreamTimeout: '300ms' }, () => undefined],
    ];
    for (const [name, overrides, breakBody] of bodyFailures) {
      test(`${name} → logged as upstream.body_failed, never client.aborted; the client's response is cut`, { timeout: 30_000 }, async (t) => {
        const { up: app, cc: proxy } = await startPair(t, overrides);
        const appRes = deferred<ServerResponse>();
        app.route('/half', (_req, res) => {
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(4 * CHUNK) });
          res.write(Buffer.alloc(CHUNK, 0x61));
          appRes.resolve(res);
        });
        const { req, response } = open(proxy.port, '/half');
        req.end();
        const clientRes = await within(response, 10_000, 'no response headers');
        clientRes.on('error', () => undefined);
        await once(clientRes, 'data');
        // Not events.once: the 'error' (aborted) that comes with the cut would reject it.
        const clientGone = new Promise<void>((resolve) => clientRes.on('close', resolve));
        breakBody(await appRes.promise);
        await within(clientGone, 10_000, "the client's response was not cut");
        assert.equal(clientRes.complete, false, 'the client saw a complete body');
        const access = await within(proxy.logs.waitFor((l) => l.event === 'access' && l.path === '/half'), 10_000, 'no access line');
        assert.equal(access.incomplete, 'upstream');
        assert.equal(proxy.logs.events('upstream.body_failed').length, 1);
        assert.deepEqual(proxy.logs.events('client.aborted'), [], 'an upstream failure was logged as a client abort');
      });
    }

    test('client gone mid-upload → the app sees its request aborted', { timeout: 30_000 }, async (t) => {
      const { up: app, cc: proxy } = await startPair(t);
      const gotData = deferred<IncomingMessage>();
      const appRes = deferred<ServerResponse>();
      app.route('/sink', (req, res) => {
        appRes.resolve(res);
        req.once('data', () => gotData.resolve(req));
        req.resume();
      });
      const { req, response } = open(proxy.port, '/sink', { method: 'POST', headers: { 'transfer-encoding': 'chunked' } });
      response.catch(() => undefined);
      req.write(randomBytes(CHUNK));
      const appReq = await within(gotData.promise, 10_000, 'the app got no upload bytes');
      const res = await appRes.promise;
      const closed = once(res, 'close');
      req.destroy();
      await within(closed, 10_000, 'the app never saw the upload go away');
      assert.equal(appReq.complete, false, 'the app saw a complete body, not an aborted one');
    });

    test('client gone mid-download → the app sees its response connection close', { timeout: 30_000 }, async (t) => {
      const { up: app, cc: proxy } = await startPair(t);
      const appRes = deferred<ServerResponse>();
      app.route('/endless', async (_req, res) => {
        appRes.resolve(res);
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        const chunk = Buffer.alloc(CHUNK, 0x61);
        while (!res.destroyed) if (!res.write(chunk)) await drainOrClose(res);
      });
      const { req, response } = open(proxy.port, '/endless');
      req.end();
      const clientRes = await response;
      await once(clientRes, 'data');
      const res = await appRes.promise;
      const closed: Promise<unknown> = res.destroyed ? Promise.resolve() : once(res, 'close');
      req.destroy();
      await within(closed, 10_000, 'the app kept streaming to nobody: the upstream response was not cancelled');
      assert.equal(res.writableFinished, false);
    });
  });
});

/** Sends raw bytes (ask for Connection: close), reads until the server closes, returns the response as latin1. */
function sendRaw(port: number, data: string | Buffer): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = new Socket();
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => undefined); // what arrived before a reset is still the answer
    s.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    s.connect(port, '127.0.0.1', () => s.write(data));
  });
}
