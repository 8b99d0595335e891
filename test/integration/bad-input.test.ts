// Hostile or broken input from either side gets a defined answer and never takes the proxy
// down: malformed Cookie headers (anonymous), forged tickets (a security event, never a store
// lookup), oversized headers (431), broken request lines and Host headers (400), Set-Cookie
// lines from the app that a browser would refuse (dropped, logged), and raw bytes ≥ 0x80 in
// cookie values (kept byte for byte). No log line ever holds a ticket or a cookie value.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { Socket } from 'node:net';
import { clears, cookieValue, send } from '../helpers/client.js';
import { startCoatcheck, TEST_SECRET, type Harness } from '../helpers/coatcheck.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const TICKET = 'coatcheck';
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** Values a log line must never contain: every ticket and cookie value the tests use. */
const secrets = new Set<string>();
/** A distinctive cookie value, remembered for the log scan. */
function secretValue(label: string): string {
  const v = `${label}-${randomBytes(9).toString('base64url')}`;
  secrets.add(v);
  return v;
}

interface RawReply {
  status: number;
  head: string;
  /** Response bytes as latin1 (one char per byte). */
  text: string;
}

/** Sends raw bytes (the request should ask for Connection: close) and reads until the server closes. */
function sendRaw(port: number, data: string | Buffer): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = new Socket();
    const finish = () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      if (!m) {
        reject(new Error(`no HTTP response, got ${JSON.stringify(text.slice(0, 200))}`));
        return;
      }
      const end = text.indexOf('\r\n\r\n');
      resolve({ status: Number(m[1]), head: end === -1 ? text : text.slice(0, end), text });
    };
    s.on('data', (c: Buffer) => chunks.push(c));
    // A reset after the answer arrived still counts as an answer.
    s.on('error', () => undefined);
    s.on('close', finish);
    s.connect(port, '127.0.0.1', () => s.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data));
  });
}

/** The Set-Cookie lines of a raw response, as latin1. */
function rawSetCookies(head: string): string[] {
  return head
    .split('\r\n')
    .filter((l) => /^set-cookie:/i.test(l))
    .map((l) => l.slice(l.indexOf(':') + 1).trim());
}

const b64Index = (c: string): number => B64URL.indexOf(c);

/** The same bytes, written non-canonically: flips a padding bit of the last base64url character. */
function nonCanonical(text: string): string {
  const last = text[text.length - 1] as string;
  return text.slice(0, -1) + (B64URL[b64Index(last) ^ 1] as string);
}

describe('bad input', () => {
  let up: Upstream;
  let cc: Harness;
  /** Store lookups made by coatcheck (the memory store's load, wrapped). */
  let loads = 0;

  before(async () => {
    up = await startUpstream();
    cc = await startCoatcheck(up.origin, { shutdownTimeout: '2s', session: { passthrough: ['pt_*'] } });
    const store = cc.app.store;
    const load = store.load.bind(store);
    store.load = (key: string) => {
      loads++;
      return load(key);
    };
  });
  after(async () => {
    await up?.close();
    await cc?.close();
  });

  /** Logs in: the app sets a managed cookie, coatcheck answers with a ticket. */
  async function newSession(): Promise<{ ticket: string; appCookie: string }> {
    const appCookie = secretValue('appcookie');
    up.route('/set-session', (_req, res) => {
      res.setHeader('set-cookie', `app_sid=${appCookie}; Path=/; HttpOnly`);
      res.end('ok');
    });
    const r = await send(cc.port, '/set-session');
    assert.equal(r.status, 200);
    const ticket = cookieValue(r.setCookies, TICKET);
    assert.ok(ticket, 'no ticket was issued');
    secrets.add(ticket);
    return { ticket, appCookie };
  }

  describe('malformed Cookie headers are read leniently and forwarded as anonymous', () => {
    const cases: Array<{ name: string; cookie: string; upstream: string | undefined }> = [
      { name: 'no "="', cookie: 'novalue', upstream: undefined },
      { name: 'empty name', cookie: '=abc', upstream: undefined },
      { name: 'only separators', cookie: ';;;', upstream: undefined },
      { name: 'blanks and empty pairs', cookie: ' ; = ;=; ; ', upstream: undefined },
      { name: 'ticket name without a value', cookie: `${TICKET}`, upstream: undefined },
      { name: 'name with a space', cookie: 'a b=c; pt_ok=1', upstream: 'pt_ok=1' },
      { name: 'empty segments between good pairs', cookie: 'pt_a=1;;; ;pt_b=2;', upstream: 'pt_a=1; pt_b=2' },
      { name: 'client-sent app cookies are stripped', cookie: 'app_sid=stolen; pt_c=3', upstream: 'pt_c=3' },
      { name: 'quoted and "=" inside values', cookie: 'pt_q="a=b"; pt_e==', upstream: 'pt_q="a=b"; pt_e==' },
    ];
    for (const c of cases) {
      test(c.name, async () => {
        const seen = up.nextRequest('/echo');
        const r = await send(cc.port, '/echo', { headers: { cookie: c.cookie } });
        assert.equal(r.status, 200);
        assert.equal(cookieValue(r.setCookies, TICKET), undefined, 'an anonymous request got a ticket');
        assert.equal((await seen).headers.cookie, c.upstream);
      });
    }

    test('a very long Cookie header (300 pairs, ~14 KB) under the header limit', async () => {
      const pairs = Array.from({ length: 300 }, (_, i) => `${i % 2 ? 'pt_' : 'other_'}${i}=${'v'.repeat(30)}`);
      const seen = up.nextRequest('/echo');
      const r = await send(cc.port, '/echo', { headers: { cookie: pairs.join('; ') } });
      assert.equal(r.status, 200);
      assert.equal((await seen).headers.cookie, pairs.filter((p) => p.startsWith('pt_')).join('; '));
    });

    test('several Cookie header lines are joined', async () => {
      const seen = up.nextRequest('/echo');
      const r = await sendRaw(cc.port, 'GET /echo HTTP/1.1\r\nHost: h\r\nCookie: pt_a=1\r\nCookie: x=2; pt_b=3\r\nConnection: close\r\n\r\n');
      assert.equal(r.status, 200);
      assert.equal((await seen).headers.cookie, 'pt_a=1; pt_b=3');
    });

    test('raw bytes ≥ 0x80 and invalid UTF-8 in a Cookie header (sent over a socket): passthrough values reach the app byte for byte', async () => {
      const bytes = Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0x80, 0xe9]);
      const request = Buffer.concat([
        Buffer.from('GET /echo HTTP/1.1\r\nHost: h\r\nCookie: pt_raw=', 'latin1'),
        bytes,
        Buffer.from('; \x80\xff=1; other=\xc3\x28\r\nConnection: close\r\n\r\n', 'latin1'),
      ]);
      const seen = up.nextRequest('/echo');
      const r = await sendRaw(cc.port, request);
      assert.equal(r.status, 200);
      const got = (await seen).headers.cookie;
      assert.ok(got !== undefined);
      assert.deepEqual(Buffer.from(got, 'latin1'), Buffer.concat([Buffer.from('pt_raw=', 'latin1'), bytes]));
    });

    test('a request without Host (HTTP/1.0) is forwarded with the address the client reached', async () => {
      const seen = up.nextRequest('/echo');
      const r = await sendRaw(cc.port, 'GET /echo HTTP/1.0\r\n\r\n');
      assert.equal(r.status, 200);
      const got = await seen;
      assert.equal(got.headers['x-forwarded-host'], `127.0.0.1:${cc.port}`);
    });

    test('the process still serves a normal request', async () => {
      assert.equal((await send(cc.port, '/echo')).status, 200);
    });
  });

  describe('forged tickets are a security event, never a store lookup, never a 500', () => {
    let real: { ticket: string; appCookie: string };
    before(async () => {
      real = await newSession();
    });

    test('control: the real ticket is looked up and its jar reaches the app', async () => {
      const before = loads;
      const seen = up.nextRequest('/echo');
      const r = await send(cc.port, '/echo', { headers: { cookie: `${TICKET}=${real.ticket}` } });
      assert.equal(r.status, 200);
      assert.equal(loads, before + 1, 'the spy on store.load saw no lookup');
      assert.equal((await seen).headers.cookie, `app_sid=${real.appCookie}`);
    });

    const variants: Array<[string, () => string]> = [
      ['garbage', () => 'hello-world'],
      ['empty value', () => ''],
      ['just the version', () => 'v1.'],
      ['right shape, all-zero signature', () => `v1.${'A'.repeat(43)}.${'A'.repeat(43)}`],
      ['truncated by one character', () => real.ticket.slice(0, -1)],
      ['truncated to the id', () => real.ticket.slice(0, real.ticket.lastIndexOf('.'))],
      ['one character longer', () => `${real.ticket}A`],
      ['base64 padding appended', () => `${real.ticket}=`],
      ['wrong version', () => `v2${real.ticket.slice(2)}`],
      ['upper-case version', () => `V1${real.ticket.slice(2)}`],
      ['quoted', () => `"${real.ticket}"`],
      [
        'signature changed in the middle',
        () => {
          const i = real.ticket.length - 20;
          const c = real.ticket[i] as string;
          return real.ticket.slice(0, i) + (c === 'A' ? 'B' : 'A') + real.ticket.slice(i + 1);
        },
      ],
      ['a character outside base64url in the signature', () => `${real.ticket.slice(0, -1)}+`],
      // Decodes to the very same signature bytes: only the canonical-encoding check rejects it.
      ['non-canonical base64 in the signature', () => nonCanonical(real.ticket)],
      [
        // A correct HMAC over a non-canonical spelling of the real id: without the canonical
        // check this would open the real session.
        'non-canonical id, correctly signed',
        () => {
          const sid = real.ticket.split('.')[1] as string;
          const body = `v1.${nonCanonical(sid)}`;
          return `${body}.${createHmac('sha256', TEST_SECRET).update(body).digest('base64url')}`;
        },
      ],
      [
        'signed with another secret',
        () => {
          const body = `v1.${real.ticket.split('.')[1] as string}`;
          return `${body}.${createHmac('sha256', 'another-secret-0123456789-abcdefghijklmnop').update(body).digest('base64url')}`;
        },
      ],
    ];

    for (const [name, make] of variants) {
      test(name, async () => {
        const forged = make();
        assert.notEqual(forged, real.ticket);
        if (forged.length >= 12) secrets.add(forged);
        const loadsBefore = loads;
        const rejected = () => cc.logs.events('session.forged').length + cc.logs.events('session.unknown').length;
        const forgedBefore = rejected();
        const shaped = /^v1\.[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}$/.test(forged);
        const classBefore = cc.logs.events(shaped ? 'session.forged' : 'session.unknown').length;
        const seen = up.nextRequest('/echo');
        const r = await send(cc.port, '/echo', { headers: { cookie: `${TICKET}=${forged}` } });
        assert.equal(r.status, 200, 'a forged ticket is answered as anonymous (invalidSession.expired: anonymous)');
        assert.equal(loads, loadsBefore, 'a forged ticket reached the store');
        assert.equal(rejected(), forgedBefore + 1, 'one security event per rejected ticket');
        assert.equal(
          cc.logs.events(shaped ? 'session.forged' : 'session.unknown').length,
          classBefore + 1,
          shaped ? 'a ticket-shaped value that does not verify is "forged"' : 'anything else is "unknown"',
        );
        assert.equal((await seen).headers.cookie, undefined, 'the app got cookies for a forged ticket');
        assert.ok(clears(r.setCookies, TICKET), 'the forged ticket was not cleared');
        assert.equal(cookieValue(r.setCookies, TICKET), '', 'a forged ticket was answered with a new ticket');
      });
    }

    test('with invalidSession.expired: reject, a forged ticket is a 401 and the app is never contacted', async (t) => {
      const app = await startUpstream();
      const proxy = await startCoatcheck(app.origin, { shutdownTimeout: '2s', invalidSession: { expired: 'reject' } });
      t.after(async () => {
        await app.close();
        await proxy.close();
      });
      const r = await send(proxy.port, '/echo', { headers: { cookie: `${TICKET}=${nonCanonical(real.ticket)}` } });
      assert.equal(r.status, 401);
      assert.equal(app.received.length, 0);
      assert.equal(proxy.logs.events('session.forged').length, 1);
    });

    test('the real ticket still works afterwards', async () => {
      const seen = up.nextRequest('/echo');
      const r = await send(cc.port, '/echo', { headers: { cookie: `${TICKET}=${real.ticket}` } });
      assert.equal(r.status, 200);
      assert.equal((await seen).headers.cookie, `app_sid=${real.appCookie}`);
    });
  });

  describe('oversized headers', () => {
    test('a header block over limits.maxHeaderSize (16 KB) → 431, and the next request is served', async () => {
      const big = `GET /echo HTTP/1.1\r\nHost: h\r\nX-Big: ${'a'.repeat(20 * 1024)}\r\nConnection: close\r\n\r\n`;
      assert.equal((await sendRaw(cc.port, big)).status, 431);
      assert.equal((await send(cc.port, '/echo')).status, 200);
    });

    test('an oversized Cookie header → 431, and the next request is served', async () => {
      const cookie = Array.from({ length: 600 }, (_, i) => `c${i}=${'x'.repeat(40)}`).join('; ');
      const r = await sendRaw(cc.port, `GET /echo HTTP/1.1\r\nHost: h\r\nCookie: ${cookie}\r\nConnection: close\r\n\r\n`);
      assert.equal(r.status, 431);
      assert.equal((await send(cc.port, '/echo')).status, 200);
    });

    test('many small headers adding up past the limit → 431', async () => {
      // Node counts the bytes of names and values: 1500 × ~20 bytes.
      const lines = Array.from({ length: 1500 }, (_, i) => `X-H${i}: ${'v'.repeat(15)}`).join('\r\n');
      const r = await sendRaw(cc.port, `GET /echo HTTP/1.1\r\nHost: h\r\n${lines}\r\nConnection: close\r\n\r\n`);
      assert.equal(r.status, 431);
      assert.equal((await send(cc.port, '/echo')).status, 200);
    });
  });

  describe('malformed requests → 400', () => {
    const requests: Array<[string, string]> = [
      ['not HTTP at all', 'GARBAGE\r\n\r\n'],
      ['a space inside the target', 'GET /a b HTTP/1.1\r\nHost: h\r\n\r\n'],
      ['an unknown HTTP version', 'GET / HTTP/9.9\r\nHost: h\r\n\r\n'],
      ['a NUL in the target', 'GET /\0x HTTP/1.1\r\nHost: h\r\n\r\n'],
      ['a header name with a space', 'GET / HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n'],
      ['a control character in a header value', 'GET / HTTP/1.1\r\nHost: h\r\nCookie: pt_a=a\x01b\r\n\r\n'],
      ['an HTTP/1.1 request without Host', 'GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n'],
      ['a malformed absolute-form target', 'GET http://[::1/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n'],
      ['an absolute-form target that is no URL', 'GET foo:bar HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n'],
      ['a Host with a space and "!"', 'GET /echo HTTP/1.1\r\nHost: bad host!\r\nConnection: close\r\n\r\n'],
      ['a Host with a path', 'GET /echo HTTP/1.1\r\nHost: a.example/evil\r\nConnection: close\r\n\r\n'],
      ['a Host with userinfo', 'GET /echo HTTP/1.1\r\nHost: user@a.example\r\nConnection: close\r\n\r\n'],
      ['a Host with an overlong port', 'GET /echo HTTP/1.1\r\nHost: a.example:99999999\r\nConnection: close\r\n\r\n'],
    ];
    for (const [name, raw] of requests) {
      test(name, async () => {
        const received = up.received.length;
        const r = await sendRaw(cc.port, raw);
        assert.equal(r.status, 400, `got ${JSON.stringify(r.head)}`);
        assert.equal(up.received.length, received, 'a malformed request reached the app');
      });
    }

    // The target's authority and Host are compared the URL way: an explicit default port is the
    // same authority as none, case does not matter.
    const sameAuthority: Array<[target: string, host: string]> = [
      ['http://h.example/echo?q=1', 'h.example'],
      ['http://h.example:80/echo?q=1', 'h.example'],
      ['http://h.example/echo?q=1', 'h.example:80'],
      ['http://h.example:80/echo?q=1', 'h.example:80'],
      ['http://H.Example/echo?q=1', 'h.example'],
      ['https://h.example:443/echo?q=1', 'h.example'],
      ['https://h.example/echo?q=1', 'h.example:443'],
      ['http://h.example:8080/echo?q=1', 'h.example:8080'],
      ['http://[::1]:80/echo?q=1', '[::1]'],
    ];
    for (const [target, host] of sameAuthority) {
      test(`an absolute-form target naming this host is forwarded in origin-form: ${target} with Host ${host}`, async () => {
        const seen = up.nextRequest('/echo');
        const r = await sendRaw(cc.port, `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
        assert.equal(r.status, 200, `got ${JSON.stringify(r.head)}`);
        const rec = await seen;
        assert.equal(rec.url, '/echo?q=1');
        assert.equal(rec.headers.host, host);
      });
    }

    // RFC 9112 §3.2.2 would have the target's authority win over Host: the ambiguity is refused.
    const otherAuthority: Array<[target: string, host: string]> = [
      ['http://other.example/echo', 'h.example'],
      ['http://h.example:8080/echo', 'h.example'],
      ['http://h.example/echo', 'h.example:8080'],
      ['http://h.example/echo', 'h.example:443'],
      ['https://h.example/echo', 'h.example:80'],
      ['http://h.example/echo', 'user@h.example'],
    ];
    for (const [target, host] of otherAuthority) {
      test(`an absolute-form target naming another authority than Host → 400, the app is not contacted: ${target} with Host ${host}`, async () => {
        const received = up.received.length;
        const r = await sendRaw(cc.port, `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
        assert.equal(r.status, 400, `got ${JSON.stringify(r.head)}`);
        assert.equal(up.received.length, received);
      });
    }

    // RFC 9112 §3.2: a request with more than one Host line gets a 400.
    test('two Host header lines → 400, the app is not contacted', async () => {
      const received = up.received.length;
      const r = await sendRaw(cc.port, 'GET /echo HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n');
      assert.equal(r.status, 400, `got ${JSON.stringify(r.head)}`);
      assert.equal(up.received.length, received);
    });

    // A client problem, not an upstream failure: undici refuses "*", which once surfaced as a 502.
    test('an asterisk-form target (OPTIONS *, GET *) → 400, the app is not contacted', async () => {
      for (const method of ['OPTIONS', 'GET']) {
        const received = up.received.length;
        const r = await sendRaw(cc.port, `${method} * HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n`);
        assert.equal(r.status, 400, `${method} * got ${JSON.stringify(r.head)}`);
        assert.equal(up.received.length, received);
      }
    });

    test('CONNECT gets no tunnel, and the proxy keeps serving', async () => {
      const received = up.received.length;
      const r = await sendRaw(cc.port, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
      assert.equal(r.status, 405, `CONNECT gets a 405: ${JSON.stringify(r.head)}`);
      assert.equal(up.received.length, received);
      assert.equal((await send(cc.port, '/echo')).status, 200);
    });

    test('the process still serves a normal request', async () => {
      assert.equal((await send(cc.port, '/echo')).status, 200);
    });
  });

  describe('Set-Cookie lines from the app', () => {
    test('unparseable or browser-refused Set-Cookies are dropped with a warning and never reach the browser', async () => {
      const okValue = secretValue('okvalue');
      const bad = [
        ['=novalue', 'upstream.set_cookie_invalid'],
        [';;', 'upstream.set_cookie_invalid'],
        ['a\tb=c', 'upstream.set_cookie_invalid'], // a tab inside a name (`a b=c` is a browser's name: kept)
        [`=${secretValue('nameless')}; Path=/`, 'upstream.set_cookie_invalid'],
        ['__Host-x=1', 'upstream.set_cookie_rejected'], // no Secure, no Path=/
        ['__Host-y=1; Secure; Path=/; Domain=127.0.0.1', 'upstream.set_cookie_rejected'], // Secure over http, Domain
        ['__Secure-z=1', 'upstream.set_cookie_rejected'],
        ['dom=1; Domain=evil.example', 'upstream.set_cookie_rejected'],
        ['ctl=a\tb', 'upstream.set_cookie_rejected'],
      ] as const;
      up.route('/bad-set-cookies', (_req, res) => {
        const headers: string[] = [];
        for (const [v] of bad) headers.push('Set-Cookie', v);
        headers.push('Set-Cookie', `ok=${okValue}; Path=/`);
        res.writeHead(200, headers);
        res.end('ok');
      });
      const invalidBefore = cc.logs.events('upstream.set_cookie_invalid').length;
      const rejectedBefore = cc.logs.events('upstream.set_cookie_rejected').length;
      const r = await send(cc.port, '/bad-set-cookies');
      assert.equal(r.status, 200);
      // Only the ticket reaches the browser: the good cookie went to the jar, the bad ones nowhere.
      assert.equal(r.setCookies.length, 1, `the browser got ${JSON.stringify(r.setCookies)}`);
      const ticket = cookieValue(r.setCookies, TICKET);
      assert.ok(ticket);
      secrets.add(ticket);
      const want = (e: string) => bad.filter(([, event]) => event === e).length;
      assert.equal(cc.logs.events('upstream.set_cookie_invalid').length - invalidBefore, want('upstream.set_cookie_invalid'));
      assert.equal(cc.logs.events('upstream.set_cookie_rejected').length - rejectedBefore, want('upstream.set_cookie_rejected'));
      // And the jar holds only the good one.
      const seen = up.nextRequest('/echo');
      await send(cc.port, '/echo', { headers: { cookie: `${TICKET}=${ticket}` } });
      assert.equal((await seen).headers.cookie, `ok=${okValue}`);
    });

    test('a Set-Cookie using the ticket cookie name is dropped: the browser keeps its real ticket', async () => {
      const { ticket, appCookie } = await newSession();
      const evil = secretValue('evilticket');
      up.route('/steal-ticket', (_req, res) => {
        res.setHeader('set-cookie', [`${TICKET}=${evil}; Path=/`, ` ${TICKET}=${evil}x; Max-Age=0`]);
        res.end('ok');
      });
      const before = cc.logs.events('upstream.set_cookie_ticket').length;
      const r = await send(cc.port, '/steal-ticket', { headers: { cookie: `${TICKET}=${ticket}` } });
      assert.equal(r.status, 200);
      assert.deepEqual(r.setCookies, [], `the browser got ${JSON.stringify(r.setCookies)}`);
      assert.equal(cc.logs.events('upstream.set_cookie_ticket').length - before, 2);
      const seen = up.nextRequest('/echo');
      await send(cc.port, '/echo', { headers: { cookie: `${TICKET}=${ticket}` } });
      assert.equal((await seen).headers.cookie, `app_sid=${appCookie}`);
    });

    test('raw bytes ≥ 0x80 in a managed Set-Cookie value come back to the app byte for byte', async () => {
      const bytes = Buffer.from([0x80, 0xe9, 0xff, 0xc3, 0xa9, 0xc3, 0x28, 0xfe]);
      up.route('/raw-managed', (_req, res) => {
        // writeHead + a Buffer body: Node's server puts setHeader() values through UTF-8 when
        // end() gets a string, which would corrupt the bytes before coatcheck sees them.
        res.writeHead(200, ['Set-Cookie', `raw=${bytes.toString('latin1')}; Path=/`]);
        res.end(Buffer.from('ok'));
      });
      const r = await sendRaw(cc.port, 'GET /raw-managed HTTP/1.1\r\nHost: h.example\r\nConnection: close\r\n\r\n');
      assert.equal(r.status, 200);
      const setCookies = rawSetCookies(r.head);
      assert.equal(setCookies.length, 1, `the browser got ${JSON.stringify(setCookies)}`);
      const ticket = cookieValue(setCookies, TICKET);
      assert.ok(ticket);
      secrets.add(ticket);
      const seen = up.nextRequest('/echo');
      const r2 = await sendRaw(cc.port, `GET /echo HTTP/1.1\r\nHost: h.example\r\nCookie: ${TICKET}=${ticket}\r\nConnection: close\r\n\r\n`);
      assert.equal(r2.status, 200);
      const got = (await seen).headers.cookie;
      assert.ok(got !== undefined);
      assert.deepEqual(Buffer.from(got, 'latin1'), Buffer.concat([Buffer.from('raw='), bytes]));
    });

    test('raw bytes ≥ 0x80 in a passthrough Set-Cookie reach the browser byte for byte, and come back the same', async () => {
      const bytes = Buffer.from([0xc3, 0xa9, 0x80, 0xff, 0x7e]);
      up.route('/raw-passthrough', (_req, res) => {
        res.writeHead(200, ['Set-Cookie', `pt_bytes=${bytes.toString('latin1')}; Path=/`]);
        res.end(Buffer.from('ok'));
      });
      const r = await sendRaw(cc.port, 'GET /raw-passthrough HTTP/1.1\r\nHost: h.example\r\nConnection: close\r\n\r\n');
      assert.equal(r.status, 200);
      assert.deepEqual(rawSetCookies(r.head), [`pt_bytes=${bytes.toString('latin1')}; Path=/`]);
      const seen = up.nextRequest('/echo');
      const back = Buffer.concat([Buffer.from('GET /echo HTTP/1.1\r\nHost: h.example\r\nCookie: pt_bytes='), bytes, Buffer.from('\r\nConnection: close\r\n\r\n')]);
      assert.equal((await sendRaw(cc.port, back)).status, 200);
      const got = (await seen).headers.cookie;
      assert.ok(got !== undefined);
      assert.deepEqual(Buffer.from(got, 'latin1'), Buffer.concat([Buffer.from('pt_bytes='), bytes]));
    });
  });

  describe('afterwards', () => {
    test('the proxy still answers a normal request, and the app sees it', async () => {
      const seen = up.nextRequest('/echo');
      const r = await send(cc.port, '/echo?after=all');
      assert.equal(r.status, 200);
      assert.equal((await seen).url, '/echo?after=all');
    });

    test('no log line holds a ticket or a cookie value used above', () => {
      assert.ok(secrets.size >= 10, `only ${secrets.size} values to look for: did the tests above run?`);
      assert.ok(cc.logs.raw.length > 50, 'too few log lines to mean anything');
      for (const line of cc.logs.raw) {
        for (const s of secrets) assert.ok(!line.includes(s), `a log line holds ${JSON.stringify(s.slice(0, 16))}…: ${line.slice(0, 300)}`);
      }
      // The raw cookie bytes from above, in any encoding pino might use.
      for (const line of cc.logs.raw) assert.ok(!/pt_raw=|\\u00ff\\u00fe|ÿþ/.test(line), `a log line holds a raw cookie: ${line.slice(0, 300)}`);
    });
  });
});
