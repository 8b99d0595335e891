// The forwarding engine against real sockets: an app server, the engine, and a client response to
// send the body to.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Writable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { UndiciEngine, type Forwarding, type UpstreamResponse } from '../../src/proxy/engine.js';
import { mapUpstreamError } from '../../src/proxy/error-map.js';

async function app(handler: (req: IncomingMessage, res: ServerResponse) => void, opts: { timeout?: number; connections?: number } = {}) {
  const server = createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const engine = new UndiciEngine({ origin, timeout: opts.timeout ?? 5000, connections: opts.connections ?? 128 });
  return {
    engine,
    async close() {
      // The app's connections first: a request still running then fails, and close() does not wait for it.
      server.closeAllConnections();
      server.close();
      await engine.close();
    },
  };
}

/** A client response of a real server, to send an upstream body to; resolves with what the client read. */
async function relay(upstream: UpstreamResponse): Promise<{ status: number; body: Buffer; errors: Error[] }> {
  const errors: Error[] = [];
  const server = createServer((_req, res) => {
    res.writeHead(upstream.status);
    upstream.body.sendTo(res, (err, list: Error[]) => list.push(err), errors);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      httpRequest(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, resolve).on('error', reject).end();
    });
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    return { status: res.statusCode as number, body: Buffer.concat(chunks), errors };
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

test('engine: status, raw headers in order (values as latin1) and the body come through', async (t) => {
  const a = await app((_req, res) => {
    res.writeHead(201, [
      ['X-One', 'a'],
      ['Set-Cookie', 'a=1'],
      ['Set-Cookie', 'b=2'],
      ['X-Latin', Buffer.from('caf\xe9', 'latin1').toString('latin1')],
    ].flat() as unknown as string[]);
    res.end('hello');
  });
  t.after(() => a.close());
  const f = a.engine.forward({ method: 'GET', path: '/x', headers: ['x-test', '1'], body: null });
  const r = await f.response;
  assert.equal(r.status, 201);
  const names = r.headers.filter((_, i) => i % 2 === 0);
  assert.deepEqual(names.slice(0, 4), ['X-One', 'Set-Cookie', 'Set-Cookie', 'X-Latin']);
  assert.equal(r.headers[7], 'caf\xe9');
  const got = await relay(r);
  assert.equal(got.body.toString(), 'hello');
  assert.deepEqual(got.errors, []);
});

test('engine: a body larger than what is kept before sendTo() streams completely, in order', async (t) => {
  const chunk = Buffer.alloc(64 * 1024);
  const heldBack = deferred<void>();
  const a = await app((_req, res) => {
    res.writeHead(200, { 'content-length': String(chunk.length * 40) });
    let i = 0;
    const more = () => {
      while (i < 40) {
        const c = Buffer.from(chunk);
        c.writeUInt32BE(i++, 0);
        if (!res.write(c)) {
          heldBack.resolve();
          return void res.once('drain', more);
        }
      }
      res.end();
    };
    more();
  });
  t.after(() => a.close());
  const r = await a.engine.forward({ method: 'GET', path: '/big', headers: [], body: null }).response;
  // The response stages may take a while; the app's socket waits meanwhile.
  await heldBack.promise;
  const got = await relay(r);
  assert.equal(got.body.length, chunk.length * 40);
  for (let i = 0; i < 40; i++) assert.equal(got.body.readUInt32BE(i * chunk.length), i);
});

test('engine: abort() before the answer rejects quietly with an abort error; discard() of a large body closes the exchange', async (t) => {
  let answer: (() => void) | undefined;
  const arrived = deferred<void>();
  const a = await app((req, res) => {
    if (req.url === '/slow') {
      answer = () => res.end('late');
      arrived.resolve();
      return;
    }
    res.writeHead(200);
    res.end(Buffer.alloc(1024 * 1024));
  });
  t.after(() => a.close());
  const slow = a.engine.forward({ method: 'GET', path: '/slow', headers: [], body: null });
  await arrived.promise;
  slow.abort();
  await assert.rejects(slow.response, (err: Error & { code?: string }) => err.name === 'AbortError' && err.code === 'UND_ERR_ABORTED');
  answer?.();
  const big = await a.engine.forward({ method: 'GET', path: '/big', headers: [], body: null }).response;
  big.body.discard();
  big.body.discard();
  // The pool still works afterwards.
  const again = await a.engine.forward({ method: 'GET', path: '/big', headers: [], body: null }).response;
  const got = await relay(again);
  assert.equal(got.body.length, 1024 * 1024);
  assert.throws(() => again.body.sendTo({} as ServerResponse, () => undefined, undefined), /already consumed/);
});

test('engine: abort() right after forward(), before the request went out: rejects with an abort error, and the app never sees it', async (t) => {
  const seen: string[] = [];
  const a = await app((req, res) => {
    seen.push(req.url as string);
    res.end('ok');
  });
  t.after(() => a.close());
  const f = a.engine.forward({ method: 'GET', path: '/never', headers: [], body: null });
  f.abort();
  await assert.rejects(f.response, (err: Error & { code?: string }) => err.name === 'AbortError' && err.code === 'UND_ERR_ABORTED');
  const got = await relay(await a.engine.forward({ method: 'GET', path: '/after', headers: [], body: null }).response);
  assert.equal(got.body.toString(), 'ok');
  assert.deepEqual(seen, ['/after']);
});

test('engine: an app that dies mid-body: the error reaches sendTo()\'s callback and the client connection is cut', async (t) => {
  const a = await app((_req, res) => {
    res.writeHead(200, { 'content-length': '100000' });
    res.write(Buffer.alloc(1000), () => res.socket?.destroy());
  });
  t.after(() => a.close());
  const r = await a.engine.forward({ method: 'GET', path: '/dies', headers: [], body: null }).response;
  const got = await relay(r).catch((err: Error) => ({ status: 0, body: Buffer.alloc(0), errors: [err] }));
  assert.ok(got.errors.length >= 1, 'the failure is reported');
});

function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((ok) => (resolve = ok));
  return { promise, resolve };
}

/** Resolves when `res` can take more, or is gone. */
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

/**
 * A client-facing server that sends one upstream response as the pipeline's handler does:
 * writeHead with a raw header list, sendTo(), and abort() of the forwarding when the client goes
 * away before the response is complete.
 */
async function front(t: TestContext, forwarding: Forwarding, upstream: UpstreamResponse, headers: string[] = []) {
  const errors: Error[] = [];
  const served = deferred<ServerResponse>();
  const server = createServer((_req, res) => {
    res.on('close', () => {
      if (!res.writableFinished) forwarding.abort();
    });
    res.writeHead(upstream.status, headers);
    upstream.body.sendTo(res, (err, list: Error[]) => list.push(err), errors);
    served.resolve(res);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  return {
    errors,
    served: served.promise,
    get(): { req: ReturnType<typeof httpRequest>; response: Promise<IncomingMessage> } {
      const req = httpRequest(`http://127.0.0.1:${port}/`);
      const response = new Promise<IncomingMessage>((resolve, reject) => req.on('response', resolve).on('error', reject));
      req.end();
      return { req, response };
    },
  };
}

/** Hop-by-hop and framing headers, which the response stages drop or Node sets itself. */
const FRAMING = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'date']);

test('engine: repeated Set-Cookie headers stay separate and in order, and every header name keeps its case, up to the client', async (t) => {
  const sent = [
    'X-MiXeD-Case', '1',
    'set-cookie', 'a=1; Path=/',
    'Content-Type', 'text/plain',
    'Set-Cookie', 'b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT',
    'SET-COOKIE', 'c=3; HttpOnly',
    'x-lower', 'l',
    'Set-Cookie', 'a=4',
    'X-UPPER', 'U',
  ];
  const a = await app((_req, res) => {
    res.writeHead(200, sent);
    res.end('ok');
  });
  t.after(() => a.close());
  const f = a.engine.forward({ method: 'GET', path: '/cookies', headers: [], body: null });
  const r = await f.response;
  assert.deepEqual(r.headers.slice(0, sent.length), sent, 'the engine gives the list as the app sent it');
  const forwarded: string[] = [];
  for (let i = 0; i < r.headers.length; i += 2) {
    if (!FRAMING.has((r.headers[i] as string).toLowerCase())) forwarded.push(r.headers[i] as string, r.headers[i + 1] as string);
  }
  assert.deepEqual(forwarded, sent);
  const fr = await front(t, f, r, forwarded);
  const res = await fr.get().response;
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  assert.equal(Buffer.concat(chunks).toString(), 'ok');
  assert.deepEqual(res.rawHeaders.slice(0, sent.length), sent, 'the client gets the same names, case, order and values');
  assert.deepEqual(res.headers['set-cookie'], ['a=1; Path=/', 'b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT', 'c=3; HttpOnly', 'a=4']);
});

test('engine: a large body to a slow reader streams completely while the proxy buffers a bounded amount (backpressure)', { timeout: 60_000 }, async (t) => {
  const CHUNK = 64 * 1024;
  const TOTAL = 48 * 1024 * 1024;
  const sentHash = createHash('sha256');
  const a = await app(async (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(TOTAL) });
    for (let i = 0; i < TOTAL / CHUNK && !res.destroyed; i++) {
      const c = Buffer.alloc(CHUNK, i & 0xff);
      c.writeUInt32BE(i, 0);
      sentHash.update(c);
      if (!res.write(c)) await drainOrClose(res);
    }
    res.end();
  });
  t.after(() => a.close());
  const f = a.engine.forward({ method: 'GET', path: '/large', headers: [], body: null });
  const r = await f.response;
  const fr = await front(t, f, r);
  const res = await fr.get().response;
  const served = await fr.served;
  // The proxy's own buffer is what the client has not taken yet: without backpressure from the
  // client's socket to the app's it would grow towards the whole body.
  let maxBuffered = 0;
  let received = 0;
  const gotHash = createHash('sha256');
  // A slow reader: one chunk per turn of the event loop, while the app writes as fast as it may.
  const reader = new Writable({
    highWaterMark: 16 * 1024,
    write(chunk: Buffer, _enc, done) {
      received += chunk.length;
      gotHash.update(chunk);
      maxBuffered = Math.max(maxBuffered, served.writableLength);
      setImmediate(done);
    },
  });
  res.pipe(reader);
  await once(reader, 'finish');
  assert.equal(received, TOTAL);
  assert.equal(gotHash.digest('hex'), sentHash.digest('hex'), 'every byte, in order');
  assert.deepEqual(fr.errors, []);
  assert.ok(maxBuffered <= 1024 * 1024, `the proxy buffered up to ${maxBuffered} bytes for a slow client`);
});

test('engine: a client that goes away mid-body cancels the upstream request (the app sees its response close), quietly', { timeout: 30_000 }, async (t) => {
  const appRes = deferred<ServerResponse>();
  const a = await app(async (req, res) => {
    if (req.url === '/small') return void res.end('still here');
    appRes.resolve(res);
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    while (!res.destroyed) if (!res.write(chunk)) await drainOrClose(res);
  }, { timeout: 600_000 }); // only the cancel can end the exchange within the test's time, not undici's body timeout
  t.after(() => a.close());
  const f = a.engine.forward({ method: 'GET', path: '/endless', headers: [], body: null });
  const r = await f.response;
  const upstream = await appRes.promise;
  const upstreamClosed = once(upstream, 'close');
  const fr = await front(t, f, r);
  const { req, response } = fr.get();
  const res = await response;
  res.on('error', () => undefined); // the client cuts its own connection
  await once(res, 'data');
  req.destroy();
  await upstreamClosed;
  assert.equal(upstream.writableFinished, false, 'the app did not finish: its response was cut');
  assert.deepEqual(fr.errors, [], 'a client that went away is not a body failure');
  const again = await relay(await a.engine.forward({ method: 'GET', path: '/small', headers: [], body: null }).response);
  assert.equal(again.body.toString(), 'still here');
});

test('engine: an app connection reset mid-body reaches sendTo()\'s callback as a 502 failure, and the client connection is cut', { timeout: 30_000 }, async (t) => {
  const appRes = deferred<ServerResponse>();
  const a = await app((_req, res) => {
    res.writeHead(200, { 'content-length': String(10 * 1024 * 1024) });
    res.write(Buffer.alloc(64 * 1024, 0x62));
    appRes.resolve(res);
  });
  t.after(() => a.close());
  const f = a.engine.forward({ method: 'GET', path: '/reset', headers: [], body: null });
  const r = await f.response;
  const fr = await front(t, f, r);
  const res = await fr.get().response;
  let received = 0;
  const ended = new Promise<Error | 'end'>((resolve) => {
    res.on('data', (c: Buffer) => {
      received += c.length;
    });
    res.on('end', () => resolve('end'));
    res.on('error', resolve);
  });
  await once(res, 'data');
  ((await appRes.promise).socket as Socket).resetAndDestroy();
  const outcome = await ended;
  assert.ok(outcome instanceof Error, 'the client sees a cut connection, not a complete body');
  assert.ok(received < 10 * 1024 * 1024);
  assert.equal(fr.errors.length, 1, 'the failure is reported once');
  assert.equal(mapUpstreamError(fr.errors[0]).status, 502, `mapped from ${(fr.errors[0] as Error & { code?: string }).code}`);
});

test('engine: an app too slow with its headers, or between two body chunks, maps to 504', { timeout: 30_000 }, async (t) => {
  const a = await app((req, res) => {
    if (req.url === '/no-answer') return;
    res.writeHead(200, { 'content-length': '100000' });
    res.write(Buffer.alloc(1000));
  }, { timeout: 300 });
  t.after(() => a.close());
  const silent = a.engine.forward({ method: 'GET', path: '/no-answer', headers: [], body: null });
  const err = await silent.response.then(
    () => assert.fail('a response without headers resolved'),
    (e: unknown) => e,
  );
  assert.equal((err as { code?: string }).code, 'UND_ERR_HEADERS_TIMEOUT');
  assert.equal(mapUpstreamError(err).status, 504);
  const stalls = a.engine.forward({ method: 'GET', path: '/stalls', headers: [], body: null });
  const fr = await front(t, stalls, await stalls.response);
  const res = await fr.get().response;
  const cut = new Promise<unknown>((resolve) => res.on('error', resolve).on('end', resolve));
  res.resume();
  assert.ok((await cut) instanceof Error, 'the client connection is cut');
  assert.equal(fr.errors.length, 1);
  const bodyErr = fr.errors[0] as Error & { code?: string };
  assert.equal(bodyErr.code, 'UND_ERR_BODY_TIMEOUT');
  assert.equal(mapUpstreamError(bodyErr).status, 504);
});

test('engine: discard() of a small body keeps the app connection for the next request; of a large one closes it', async (t) => {
  const sockets: Socket[] = [];
  const a = await app((req, res) => {
    sockets.push(req.socket);
    res.writeHead(200);
    res.end(Buffer.alloc(req.url === '/large' ? 4 * 1024 * 1024 : 1024));
  }, { connections: 1 }); // one connection: the next request waits for it, or for a new one when it was closed
  t.after(() => a.close());
  const small = await a.engine.forward({ method: 'GET', path: '/small', headers: [], body: null }).response;
  small.body.discard();
  await relay(await a.engine.forward({ method: 'GET', path: '/next', headers: [], body: null }).response);
  assert.equal(sockets.length, 2);
  assert.equal(sockets[1], sockets[0], 'the second request came on the same connection');
  const large = await a.engine.forward({ method: 'GET', path: '/large', headers: [], body: null }).response;
  const socket = sockets[2] as Socket;
  // (not events.once: the app's socket may see a reset, and an 'error' would reject it)
  const closed = new Promise((resolve) => (socket.destroyed ? resolve(undefined) : socket.once('close', resolve)));
  large.body.discard();
  await closed;
});
