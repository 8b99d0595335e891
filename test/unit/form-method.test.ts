// The bounded `_method` read and the body forwarded after it, on real sockets: every way a body
// can end (within the bound, past it, a client gone before or after the read) settles.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { FormBody, mayCarryMethodField, methodFieldsOf, readBodyStart, type BodyStart } from '../../src/pipeline/form-method.js';

/** A server whose handler gets each request; and a client request to it, headers sent. */
async function serve(t: { after(fn: () => unknown): void }) {
  const requests: IncomingMessage[] = [];
  const waiting: Array<(req: IncomingMessage) => void> = [];
  const server = createServer((req) => {
    const w = waiting.shift();
    if (w) w(req);
    else requests.push(req);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  return {
    open(headers: Record<string, string>): { client: ClientRequest; req: Promise<IncomingMessage> } {
      const client = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/', headers, agent: false });
      client.on('error', () => undefined);
      client.flushHeaders();
      const req = new Promise<IncomingMessage>((resolve) => {
        const r = requests.shift();
        if (r) resolve(r);
        else waiting.push(resolve);
      });
      return { client, req };
    },
  };
}

async function drain(body: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** A chunked POST whose first 10 bytes were read past a 4-byte bound: the client, its request, the FormBody. */
async function readPastBound(s: Awaited<ReturnType<typeof serve>>): Promise<{ client: ClientRequest; incoming: IncomingMessage; body: FormBody }> {
  const { client, req } = s.open({ 'transfer-encoding': 'chunked' });
  const incoming = await req;
  const reading = readBodyStart(incoming, 4);
  client.write('0123456789');
  const start = await reading;
  assert.equal(start.kind, 'partial');
  return { client, incoming, body: new FormBody((start as Extract<BodyStart, { kind: 'partial' }>).chunks, incoming) };
}

test('mayCarryMethodField: a small urlencoded (or untyped) POST body only', () => {
  const table: Array<[Record<string, string>, boolean]> = [
    [{ 'content-length': '10', 'content-type': 'application/x-www-form-urlencoded' }, true],
    [{ 'content-length': '10', 'content-type': 'Application/X-WWW-Form-Urlencoded; charset=UTF-8' }, true],
    [{ 'content-length': '10' }, true],
    [{ 'transfer-encoding': 'chunked', 'content-type': 'application/x-www-form-urlencoded' }, true],
    [{ 'content-length': '0', 'content-type': 'application/x-www-form-urlencoded' }, false],
    [{ 'content-length': String(16 * 1024 + 1), 'content-type': 'application/x-www-form-urlencoded' }, false],
    [{ 'content-type': 'application/x-www-form-urlencoded' }, false],
    [{ 'content-length': '10', 'content-type': 'application/json' }, false],
    [{ 'content-length': '10', 'content-type': 'multipart/form-data; boundary=x' }, false],
  ];
  for (const [headers, want] of table) {
    assert.equal(mayCarryMethodField({ headers } as unknown as IncomingMessage), want, JSON.stringify(headers));
  }
});

test('readBodyStart: a body that ends within the bound is whole', async (t) => {
  const s = await serve(t);
  const { client, req } = s.open({ 'transfer-encoding': 'chunked' });
  client.write('_method=');
  client.end('delete');
  const start = await readBodyStart(await req, 64);
  assert.equal(start.kind, 'whole');
  assert.equal(Buffer.concat((start as Extract<BodyStart, { kind: 'whole' }>).chunks).toString(), '_method=delete');
  assert.equal(await drain(new FormBody((start as Extract<BodyStart, { kind: 'whole' }>).chunks, undefined)).then(String), '_method=delete');
});

test('readBodyStart + FormBody: past the bound the request is paused, then forwarded whole, in order', async (t) => {
  const s = await serve(t);
  const { client, req } = s.open({ 'transfer-encoding': 'chunked' });
  const incoming = await req;
  const reading = readBodyStart(incoming, 8);
  client.write('0123456789');
  const start = await reading;
  assert.equal(start.kind, 'partial');
  const body = new FormBody((start as Extract<BodyStart, { kind: 'partial' }>).chunks, incoming);
  const all = drain(body);
  client.write('abc');
  client.end('def');
  assert.equal(String(await all), '0123456789abcdef');
});

test('readBodyStart: a client gone mid-body settles as aborted (and one gone before the read too)', async (t) => {
  const s = await serve(t);
  const a = s.open({ 'content-length': '100' });
  a.client.write('_method=de');
  const incoming = await a.req;
  const reading = readBodyStart(incoming);
  a.client.destroy();
  assert.equal((await reading).kind, 'aborted');
  assert.equal((await readBodyStart(incoming)).kind, 'aborted', 'a request already destroyed');
});

test('FormBody: a client gone after the read, before or while forwarding, fails the body (never hangs)', async (t) => {
  const s = await serve(t);
  for (const when of ['before', 'while'] as const) {
    const { client, incoming, body } = await readPastBound(s);
    if (when === 'before') {
      client.destroy();
      await new Promise((resolve) => incoming.once('close', resolve));
      await assert.rejects(drain(body), when);
    } else {
      const all = drain(body);
      client.destroy();
      await assert.rejects(all, when);
    }
  }
});

test('FormBody.release: a body never forwarded is read and dropped, so the request ends', async (t) => {
  const s = await serve(t);
  const { client, incoming, body } = await readPastBound(s);
  const ended = once(incoming, 'end');
  body.release();
  client.end('rest');
  await ended;
});

test('methodFieldsOf: the key is compared decoded, as the frameworks read it (an encoded _method is no way around a rule)', () => {
  const table: Array<[string, string[]]> = [
    ['_method=delete', ['delete']],
    ['%5Fmethod=delete', ['delete']],
    ['%5fmethod=delete', ['delete']],
    ['_%6Dethod=delete', ['delete']],
    ['_METHOD=DELETE', ['DELETE']],
    ['a=1& _method=delete', ['delete']],
    ['a=1;_method=delete', ['delete']],
    ['.method=delete', ['delete']],
    ['+method=delete', []],
    ['_method=%44ELETE+', ['DELETE ']],
    ['_method=put&%5Fmethod=delete', ['put', 'delete']],
    ['_method=%zz', ['%zz']],
    ['x=_method', []],
    ['_methods=delete', []],
    ['method=delete', []],
    ['_method', []],
    ['', []],
  ];
  for (const [form, want] of table) assert.deepEqual(methodFieldsOf(Buffer.from(form, 'latin1')), want, form);
});

test('readBodyStart: a client that stalls is forwarded as past the bound once the deadline passes (never held longer)', async (t) => {
  const s = await serve(t);
  const { client, req } = s.open({ 'transfer-encoding': 'chunked' });
  const incoming = await req;
  const reading = readBodyStart(incoming, 1024, 50);
  client.write('_method=del');
  const start = await reading;
  assert.equal(start.kind, 'partial');
  const body = new FormBody((start as Extract<BodyStart, { kind: 'partial' }>).chunks, incoming);
  const all = drain(body);
  client.end('ete');
  assert.equal((await all).toString(), '_method=delete', 'the app still gets every byte, in order');
});

test('FormBody destroyed by its consumer (the app failed): the client request is drained, not reset, so it can be answered', async (t) => {
  const s = await serve(t);
  const { client, incoming, body } = await readPastBound(s);
  body.resume();
  await once(body, 'data');
  body.on('error', () => undefined);
  const closed = new Promise((resolve) => body.once('close', resolve));
  body.destroy(new Error('upstream failed'));
  await closed;
  const ended = once(incoming, 'end');
  client.end('the rest of the body');
  await ended;
  assert.equal(incoming.destroyed && !incoming.complete, false, 'the request was read to its end, not destroyed');
  assert.equal(incoming.socket?.destroyed ?? false, false, "the client's connection is still open for the answer");
});
