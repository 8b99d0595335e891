// The forwarding engine against real sockets: an app server, the engine, and a client response to
// send the body to.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { UndiciEngine, type UpstreamResponse } from '../../src/proxy/engine.js';

async function app(handler: (req: IncomingMessage, res: ServerResponse) => void) {
  const server = createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const engine = new UndiciEngine({ origin, timeout: 5000 });
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
  const a = await app((_req, res) => {
    res.writeHead(200, { 'content-length': String(chunk.length * 40) });
    let i = 0;
    const more = () => {
      while (i < 40) {
        const c = Buffer.from(chunk);
        c.writeUInt32BE(i++, 0);
        if (!res.write(c)) return void res.once('drain', more);
      }
      res.end();
    };
    more();
  });
  t.after(() => a.close());
  const r = await a.engine.forward({ method: 'GET', path: '/big', headers: [], body: null }).response;
  // The response stages may take a while; the app's socket waits meanwhile.
  await new Promise((ok) => setTimeout(ok, 50));
  const got = await relay(r);
  assert.equal(got.body.length, chunk.length * 40);
  for (let i = 0; i < 40; i++) assert.equal(got.body.readUInt32BE(i * chunk.length), i);
});

test('engine: abort() before the answer rejects quietly with an abort error; discard() of a large body closes the exchange', async (t) => {
  let answer: (() => void) | undefined;
  const a = await app((req, res) => {
    if (req.url === '/slow') {
      answer = () => res.end('late');
      return;
    }
    res.writeHead(200);
    res.end(Buffer.alloc(1024 * 1024));
  });
  t.after(() => a.close());
  const slow = a.engine.forward({ method: 'GET', path: '/slow', headers: [], body: null });
  await new Promise((ok) => setTimeout(ok, 50));
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

test('engine: an app that dies mid-body: the error reaches sendTo()\'s callback and the client connection is cut', async (t) => {
  const a = await app((_req, res) => {
    res.writeHead(200, { 'content-length': '100000' });
    res.write(Buffer.alloc(1000));
    setTimeout(() => res.socket?.destroy(), 20);
  });
  t.after(() => a.close());
  const r = await a.engine.forward({ method: 'GET', path: '/dies', headers: [], body: null }).response;
  const got = await relay(r).catch((err: Error) => ({ status: 0, body: Buffer.alloc(0), errors: [err] }));
  assert.ok(got.errors.length >= 1, 'the failure is reported');
});
