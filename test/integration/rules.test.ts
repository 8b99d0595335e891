// Logout rules fire for every request the app will route as that logout (issue 10 §1): through a
// running coatcheck, against an app that records the exact bytes of every body it receives.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { Browser, send } from '../helpers/client.js';
import { startCoatcheck, type Harness } from '../helpers/coatcheck.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { METHOD_FIELD_LIMIT } from '../../src/pipeline/form-method.js';

const RULES = {
  logout: [{ path: '/logout' }, { prefix: '/auth/logout', methods: ['GET'] }, { path: '/session', methods: ['DELETE'] }],
  login: [{ path: '/login', methods: ['POST'] }],
};

interface Got {
  method: string;
  url: string;
  cookie: string | undefined;
  body: Buffer;
}

/** The exact paths (before any query) the test requests reach the app on. */
const APP_PATHS = [
  '/logout;jsessionid=1',
  '/auth;x/logout',
  '/logout.json',
  '/LOGOUT',
  '/auth/logout',
  '/session',
  '/stream',
  '/page',
];

describe('rules match what the app will route', () => {
  let upstream: Upstream;
  let cc: Harness;
  /** What the app received, by path, newest last. */
  const got = new Map<string, Got[]>();
  /** Bytes of the body the app has read so far, on the request in progress per path. */
  const progress: Array<{ path: string; atLeast: number; resolve: () => void }> = [];

  before(async () => {
    upstream = await startUpstream();
    upstream.route('/login', (_req, res) => {
      res.setHeader('set-cookie', 'app_session=user-alice; Path=/; HttpOnly');
      res.end('logged in');
    });
    for (const path of APP_PATHS) {
      upstream.route(path, (req: IncomingMessage, res) => {
        const chunks: Buffer[] = [];
        let bytes = 0;
        req.on('data', (c: Buffer) => {
          chunks.push(c);
          bytes += c.length;
          for (let i = progress.length - 1; i >= 0; i--) {
            const p = progress[i] as (typeof progress)[number];
            if (p.path === path && bytes >= p.atLeast) {
              progress.splice(i, 1);
              p.resolve();
            }
          }
        });
        req.on('end', () => {
          const list = got.get(path) ?? [];
          list.push({ method: req.method ?? '', url: req.url ?? '', cookie: req.headers.cookie, body: Buffer.concat(chunks) });
          got.set(path, list);
          res.end('ok');
        });
      });
    }
    cc = await startCoatcheck(upstream.origin, { store: { kind: 'memory' }, ...RULES });
  });
  after(async () => {
    await cc.close();
    await upstream.close();
  });

  function lastAt(path: string): Got | undefined {
    return got.get(path)?.at(-1);
  }

  async function login(): Promise<Browser> {
    const b = new Browser(cc.port);
    const r = await b.send('/login', { method: 'POST' });
    assert.equal(r.status, 200);
    assert.ok(b.ticket, 'login gives a ticket');
    const page = await b.send('/page');
    assert.equal(page.status, 200);
    assert.equal(lastAt('/page')?.cookie, 'app_session=user-alice', 'the session is live');
    return b;
  }

  /** The ticket no longer works: 401, `session.replay`, and the app is not contacted. */
  async function assertRevoked(ticket: string, label: string): Promise<void> {
    const before = upstream.received.length;
    const replays = cc.logs.events('session.replay').length;
    const r = await send(cc.port, '/page', { headers: { cookie: `coatcheck=${ticket}` } });
    assert.equal(r.status, 401, `${label}: a replay of the ticket is refused`);
    assert.equal(upstream.received.length, before, `${label}: the app never sees the replay`);
    assert.equal(cc.logs.events('session.replay').length, replays + 1, `${label}: the replay is logged`);
  }

  /** The ticket still works: the app gets the jar's cookie. */
  async function assertLive(b: Browser, label: string): Promise<void> {
    const r = await b.send('/page');
    assert.equal(r.status, 200, `${label}: the session is still live`);
    assert.equal(lastAt('/page')?.cookie, 'app_session=user-alice', label);
  }

  const form = (s: string) => Buffer.from(s, 'latin1');
  const URLENCODED = { 'content-type': 'application/x-www-form-urlencoded' };

  const revoking: Array<{ name: string; method: string; url: string; appPath: string; headers?: Record<string, string>; body?: Buffer }> = [
    { name: 'a ; path parameter', method: 'GET', url: '/logout;jsessionid=1', appPath: '/logout;jsessionid=1' },
    { name: 'a ; parameter on an earlier segment', method: 'GET', url: '/auth;x/logout', appPath: '/auth;x/logout' },
    { name: 'a format suffix', method: 'GET', url: '/logout.json', appPath: '/logout.json' },
    { name: 'another case', method: 'GET', url: '/LOGOUT', appPath: '/LOGOUT' },
    { name: 'HEAD where the rule says GET', method: 'HEAD', url: '/auth/logout', appPath: '/auth/logout' },
    {
      name: 'POST with X-HTTP-Method-Override: GET',
      method: 'POST',
      url: '/auth/logout',
      appPath: '/auth/logout',
      headers: { 'x-http-method-override': 'GET', ...URLENCODED },
      body: form('a=1'),
    },
    {
      name: "Rails' POST with _method=delete",
      method: 'POST',
      url: '/session',
      appPath: '/session',
      headers: URLENCODED,
      body: form('_method=delete&authenticity_token=Zm9v%2Bbar%3D%3D&x=%E9t%C3%A9'),
    },
    {
      name: 'a chunked form with _method=DELETE and no Content-Type',
      method: 'POST',
      url: '/session',
      appPath: '/session',
      headers: { 'transfer-encoding': 'chunked' },
      body: form('utf8=%E2%9C%93&_method=DELETE'),
    },
    { name: '_method=delete in the query of a POST', method: 'POST', url: '/session?_method=delete', appPath: '/session', headers: URLENCODED, body: form('a=b') },
  ];
  for (const row of revoking) {
    test(`${row.name}: ${row.method} ${row.url} revokes the session, the app gets the body unchanged, the ticket is then refused`, async () => {
      const b = await login();
      const ticket = b.ticket as string;
      const before = got.get(row.appPath)?.length ?? 0;
      const r = await b.send(row.url, { method: row.method, headers: row.headers ?? {}, ...(row.body ? { body: row.body } : {}) });
      assert.equal(r.status, 200);
      assert.equal(b.ticket, undefined, 'the response clears the ticket');
      const seen = got.get(row.appPath) ?? [];
      assert.equal(seen.length, before + 1, 'the app got the request once');
      const last = seen.at(-1) as Got;
      assert.equal(last.method, row.method, 'the method reaches the app as sent');
      assert.equal(last.cookie, 'app_session=user-alice', "the app's own logout code gets its cookies once");
      assert.ok(last.body.equals(row.body ?? Buffer.alloc(0)), `the app got the body byte for byte: ${JSON.stringify(last.body.toString('latin1'))}`);
      await assertRevoked(ticket, row.name);
    });
  }

  const padding = 'p'.repeat(METHOD_FIELD_LIMIT + 100);
  const keeping: Array<{ name: string; headers: Record<string, string>; url?: string; body: Buffer }> = [
    { name: 'POST /auth/logout without an override (the rule says GET)', url: '/auth/logout', headers: URLENCODED, body: form('a=1') },
    { name: 'POST /session without _method', headers: URLENCODED, body: form('a=1&method=delete') },
    { name: '_method=put', headers: URLENCODED, body: form('_method=put') },
    { name: 'a form announced larger than the bound is not read', headers: URLENCODED, body: form(`_method=delete&pad=${padding}`) },
    { name: 'a chunked form past the bound is matched on the real method', headers: { ...URLENCODED, 'transfer-encoding': 'chunked' }, body: form(`_method=delete&pad=${padding}`) },
    { name: 'a JSON body is not a form', headers: { 'content-type': 'application/json' }, body: form('{"_method":"delete"}') },
    {
      name: 'a multipart body is not read',
      headers: { 'content-type': 'multipart/form-data; boundary=b' },
      body: form('--b\r\nContent-Disposition: form-data; name="_method"\r\n\r\ndelete\r\n--b--\r\n'),
    },
  ];
  for (const row of keeping) {
    test(`${row.name}: the session stays live, the app gets the body unchanged`, async () => {
      const b = await login();
      const url = row.url ?? '/session';
      const r = await b.send(url, { method: 'POST', headers: row.headers, body: row.body });
      assert.equal(r.status, 200);
      const last = lastAt(url) as Got;
      assert.ok(last.body.equals(row.body), `the app got ${last.body.length} bytes, ${row.body.length} sent`);
      await assertLive(b, row.name);
    });
  }

  test('a form read for _method is still streamed past the bound: the app reads the start before the client sends the rest', async () => {
    const b = await login();
    const head = Buffer.from(`_method=delete&pad=${'x'.repeat(METHOD_FIELD_LIMIT)}`);
    const tail = Buffer.from('&end=1');
    const appHasHead = new Promise<void>((resolve) => progress.push({ path: '/session', atLeast: head.length, resolve }));
    const req = httpRequest({
      host: '127.0.0.1',
      port: cc.port,
      path: '/session',
      method: 'POST',
      agent: false,
      headers: { ...URLENCODED, 'transfer-encoding': 'chunked', cookie: `coatcheck=${b.ticket}` },
    });
    const response = once(req, 'response') as Promise<[IncomingMessage]>;
    req.write(head);
    await appHasHead;
    req.end(tail);
    const [res] = await response;
    res.resume();
    await once(res, 'end');
    assert.equal(res.statusCode, 200);
    assert.ok((lastAt('/session') as Got).body.equals(Buffer.concat([head, tail])));
    await assertLive(b, 'a _method past the bound');
  });

  test('a client that goes away mid-form: nothing reaches the app, the session stays, coatcheck goes on', async () => {
    const b = await login();
    const before = got.get('/session')?.length ?? 0;
    const receivedBefore = upstream.received.length;
    const aborted = cc.logs.events('client.aborted').length;
    const req = httpRequest({
      host: '127.0.0.1',
      port: cc.port,
      path: '/session',
      method: 'POST',
      agent: false,
      headers: { ...URLENCODED, 'content-length': '100', cookie: `coatcheck=${b.ticket}` },
    });
    req.on('error', () => undefined);
    const arrived = once(cc.app.server, 'request');
    req.write('_method=del');
    await arrived;
    req.destroy();
    await cc.logs.waitFor((l) => l.event === 'client.aborted' && cc.logs.events('client.aborted').length > aborted);
    assert.equal(got.get('/session')?.length ?? 0, before, 'the app got nothing');
    assert.equal(upstream.received.length, receivedBefore, 'no request was forwarded');
    await assertLive(b, 'after an aborted form');
  });
});
