// A POST whose `_method` field coatcheck reads (its path is a rule's, its method is not) still
// gets coatcheck's own answer when the app cannot be reached: the body read past the bound is
// drained, never reset under the client.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, request as httpRequest, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { startCoatcheck } from '../helpers/coatcheck.js';
import { METHOD_FIELD_LIMIT } from '../../src/pipeline/form-method.js';

/** An origin nothing listens on: a port the OS gave, then closed again. */
async function closedOrigin(): Promise<string> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

test('the app down while a form past the bound is forwarded: the client gets 502, not a reset connection', async (t) => {
  const cc = await startCoatcheck(await closedOrigin(), { logout: [{ path: '/session', methods: ['DELETE'] }] });
  t.after(() => cc.close());
  const client = httpRequest({
    host: '127.0.0.1',
    port: cc.port,
    method: 'POST',
    path: '/session',
    agent: false,
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'transfer-encoding': 'chunked' },
  });
  const errors: Error[] = [];
  client.on('error', (err) => errors.push(err));
  const closed = once(client, 'close');
  // Past the bound: coatcheck reads it, then forwards what it read and the rest as it comes.
  client.write(`a=${'x'.repeat(METHOD_FIELD_LIMIT + 4096)}`);
  const answer = await new Promise<IncomingMessage | Error>((resolve) => {
    client.once('response', resolve);
    client.once('error', resolve);
  });
  assert.ok(!(answer instanceof Error), `the connection failed instead: ${(answer as Error).message}`);
  assert.equal(answer.statusCode, 502);
  let body = '';
  answer.setEncoding('utf8');
  answer.on('data', (c: string) => (body += c));
  client.end('&_method=delete');
  await closed;
  assert.deepEqual(errors.map((e) => e.message), [], 'the connection was never reset');
  assert.match(body, /COATCHECK_ERR_UPSTREAM_UNAVAILABLE/);
});
