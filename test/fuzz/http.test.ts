// Property test of the proxy on raw HTTP (issue 13): random requests (methods, targets, header
// sets with hostile names and values, duplicate and conflicting headers, bare LF line endings,
// chunked and sized bodies, cookies of every shape, forged tickets, control headers) sent on
// raw sockets to a running coatcheck in front of an app that records what it receives. The
// process stays up, every response that comes is a well-formed HTTP/1.1 status line, and the
// app never sees a cookie the client sent unless its name is passthrough.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { send } from '../helpers/client.js';
import { startCoatcheck, type Harness } from '../helpers/coatcheck.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { fuzz } from './settings.js';

/** How long one raw exchange may take before the socket is given up on (a request the server still waits on). */
const EXCHANGE_MS = 1500;

let app: Upstream;
let h: Harness;
before(async () => {
  app = await startUpstream();
  h = await startCoatcheck(app.origin, {
    logout: [{ path: '/logout' }],
    login: [{ path: '/login', methods: ['POST'] }],
    session: { passthrough: ['theme'] },
    log: { level: 'silent' },
  });
});
after(async () => {
  await h?.close();
  await app?.close();
});

const token = fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz-_'.split('')), minLength: 1, maxLength: 10 });
const printable = fc.string({ unit: fc.constantFrom(...' !"#$%&\'()*+,-./0123456789:;<=>?@ABCXYZ[]^_`abcxyz{|}~'.split('')), maxLength: 40 });
/** Mostly what a client could send; sometimes what no parser should take. */
const hostile = fc.oneof(
  { weight: 6, arbitrary: printable },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.constantFrom('', ' ', '\t', 'a\u0000b', 'é', '\u00ff', '=', ';', ',', '"', '%00') },
);
const cookiePair = fc.oneof(
  fc.tuple(fc.constantFrom('app_session', 'sid', 'coatcheck', 'theme', 'Theme', 'THEME', '__Host-x', '', ' theme'), hostile).map(([n, v]) => `${n}=${v}`),
  fc.constantFrom('coatcheck=v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', 'theme=dark', 'novalue', '=x', ';;;'),
);
const header = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(fc.array(cookiePair, { maxLength: 5 }), fc.constantFrom('; ', ';', ' ; ')).map(([pairs, sep]) => ['Cookie', pairs.join(sep)] as const) },
  { weight: 3, arbitrary: fc.tuple(fc.constantFrom('Coatcheck-Session', 'Coatcheck-User', 'X-Forwarded-For', 'X-Forwarded-Proto', 'X-Forwarded-Host', 'Forwarded', 'X-Real-IP', 'X-Original-URL', 'X-HTTP-Method-Override', 'Sec-Fetch-Mode', 'Sec-Fetch-Site', 'User-Agent', 'Accept', 'Connection', 'Upgrade', 'Expect', 'Te', 'Trailer', 'Keep-Alive', 'X-Request-Id'), hostile).map(([n, v]) => [n, v] as const) },
  { weight: 2, arbitrary: fc.tuple(token, hostile).map(([n, v]) => [n, v] as const) },
  { weight: 1, arbitrary: fc.tuple(hostile, hostile).map(([n, v]) => [n, v] as const) },
);
/** A weighted choice: the first value most of the time. */
const mostly = <T>(usual: T, ...others: T[]) => fc.oneof({ weight: 5, arbitrary: fc.constant(usual) }, { weight: 1, arbitrary: fc.constantFrom(...others) });
const request = fc.record({
  method: fc.oneof({ weight: 6, arbitrary: fc.constantFrom('GET', 'POST', 'HEAD', 'PUT', 'DELETE', 'OPTIONS', 'PATCH') }, { weight: 1, arbitrary: fc.constantFrom('get', 'CONNECT', 'TRACE', 'FOO', 'G\u00e9T', '') }),
  target: fc.oneof(fc.constantFrom('/', '/echo', '/logout', '/login', '/a/../logout', '//x', '/%2e%2e/', '*', 'http://evil.example/echo', '/echo?x=1#f'), fc.string({ maxLength: 30 }).map((s) => `/${s}`)),
  version: mostly('HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1x', ''),
  eol: mostly('\r\n', '\n'),
  host: mostly('Host: app.example', '', 'Host: ', 'Host: a\u0000b', 'Host: app.example\r\nHost: other.example', 'Host: [::1]:80'),
  headers: fc.array(header, { maxLength: 6 }),
  body: fc.oneof(fc.constant(''), fc.string({ maxLength: 64 })),
  framing: fc.oneof({ weight: 6, arbitrary: fc.constantFrom('length', 'chunked') }, { weight: 1, arbitrary: fc.constantFrom('wrong-length', 'none', 'both') }),
});

/** Writes raw bytes, reads until the server closes (or EXCHANGE_MS), returns what came back. */
function exchange(raw: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(h.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(), EXCHANGE_MS);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
    socket.end(raw);
  });
}

type RawRequest = typeof request extends fc.Arbitrary<infer T> ? T : never;

function build(r: RawRequest): Buffer {
  const { eol } = r;
  const lines = [`${r.method} ${r.target} ${r.version}`.trimEnd()];
  if (r.host) lines.push(r.host);
  for (const [n, v] of r.headers) lines.push(`${n}: ${v}`);
  lines.push('Connection: close');
  const body = Buffer.from(r.body, 'latin1');
  let payload = body;
  if (r.framing === 'length') lines.push(`Content-Length: ${body.length}`);
  else if (r.framing === 'wrong-length') lines.push(`Content-Length: ${body.length + 3}`);
  else if (r.framing === 'chunked' || r.framing === 'both') {
    lines.push('Transfer-Encoding: chunked');
    if (r.framing === 'both') lines.push(`Content-Length: ${body.length}`);
    payload = Buffer.concat([Buffer.from(body.length > 0 ? `${body.length.toString(16)}\r\n` : '', 'latin1'), body, Buffer.from(body.length > 0 ? '\r\n0\r\n\r\n' : '0\r\n\r\n', 'latin1')]);
  }
  return Buffer.concat([Buffer.from(lines.join(eol) + eol + eol, 'latin1'), r.framing === 'none' ? Buffer.alloc(0) : payload]);
}

describe('fuzz: raw HTTP requests against a running coatcheck', () => {
  it('stays up, answers with well-formed status lines, and the app never sees a client cookie that is not passthrough', async () => {
    let cases = 0;
    let forwarded = 0;
    let withCookie = 0;
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const seen = app.received.length;
        cases += 1;
        const answer = await exchange(build(r));
        if (app.received.length > seen) forwarded += 1;
        if (answer !== '') assert.match(answer, /^HTTP\/1\.[01] \d{3} /, `a malformed answer to ${JSON.stringify(build(r).toString('latin1'))}:\n${answer.slice(0, 200)}`);
        for (const rec of app.received.slice(seen)) {
          const cookie = rec.headers.cookie;
          if (cookie === undefined) continue;
          withCookie += 1;
          for (const pair of cookie.split('; ')) {
            assert.match(pair, /^theme=/, `the app got ${JSON.stringify(cookie)} for ${JSON.stringify(build(r).toString('latin1'))}`);
          }
          for (const name of ['coatcheck-session', 'coatcheck-user', 'x-original-url']) assert.equal(rec.headers[name], undefined, `the app got ${name}`);
        }
      }),
      fuzz(150),
    );
    // The property was exercised: a good share of the requests reached the app, some with cookies.
    assert.ok(forwarded >= cases / 5, `${forwarded} of ${cases} requests reached the app`);
    assert.ok(withCookie > 0, 'no forwarded request carried a passthrough cookie');
    // Still up and serving.
    const r = await send(h.port, '/echo', { headers: { cookie: 'theme=light; app_session=stolen' } });
    assert.equal(r.status, 200);
    assert.equal((JSON.parse(r.body) as { headers: { cookie?: string } }).headers.cookie, 'theme=light');
  });
});
