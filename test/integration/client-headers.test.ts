// Headers from the client, through a running coatcheck to a real app that records what it got:
// the headers a client sends to pass for a proxy, a CDN or another URL, and the app's own
// control headers, reach the app only as coatcheck decided (per trustProxy); the app gets
// exactly one X-Real-IP (the client coatcheck determined) and one X-Request-Id (the id
// coatcheck logs); the access log drops `;` path parameters as it drops the query.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import type { ConfigInput } from '../../src/config/schema.js';
import { startCoatcheck, type Harness } from '../helpers/coatcheck.js';
import { startUpstream, type Received, type Upstream } from '../helpers/upstream.js';

/** GET `path` from `host` (an address, so the proxy sees that peer); resolves with the status. */
function get(host: string, port: number, path: string, headers: Record<string, string | string[]>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, headers, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Every value the app received for `name`, one per header line. */
function values(rec: Received, name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < rec.rawHeaders.length; i += 2) {
    if ((rec.rawHeaders[i] as string).toLowerCase() === name) out.push(rec.rawHeaders[i + 1] as string);
  }
  return out;
}

async function start(t: TestContext, overrides: Partial<ConfigInput>): Promise<{ up: Upstream; cc: Harness }> {
  const up = await startUpstream();
  t.after(() => up.close());
  const cc = await startCoatcheck(up.origin, overrides);
  t.after(() => cc.close());
  return { up, cc };
}

/** The headers a client sends to pass for a proxy, a CDN, or another URL, and the app's control headers. */
const SPOOFED: Record<string, string> = {
  'x-real-ip': '6.6.6.6',
  'x-forwarded-ssl': 'on',
  'x-forwarded-scheme': 'https',
  'x-forwarded-port': '443',
  'x-forwarded-prefix': '/admin',
  'x-forwarded-server': 'lb.example',
  'true-client-ip': '6.6.6.6',
  'x-client-ip': '6.6.6.6',
  'cf-connecting-ip': '6.6.6.6',
  'fastly-client-ip': '6.6.6.6',
  'x-cluster-client-ip': '6.6.6.6',
  'x-original-url': '/logout',
  'x-rewrite-url': '/logout',
  'coatcheck-session': 'revoke',
  'coatcheck-user': 'admin',
};

/** What the app gets for each SPOOFED header when coatcheck does not trust the peer. */
function untrusted(client: string): Record<string, string[]> {
  const out: Record<string, string[]> = Object.fromEntries(Object.keys(SPOOFED).map((n) => [n, []]));
  out['x-real-ip'] = [client];
  return out;
}

/** What the app gets for each SPOOFED header from a trusted proxy whose client is `client`. */
function trusted(client: string): Record<string, string[]> {
  return {
    'x-real-ip': [client],
    'x-forwarded-ssl': [],
    'x-forwarded-scheme': [],
    'x-forwarded-port': ['443'],
    'x-forwarded-prefix': ['/admin'],
    'x-forwarded-server': ['lb.example'],
    'true-client-ip': [client],
    'x-client-ip': [client],
    'cf-connecting-ip': [client],
    'fastly-client-ip': [client],
    'x-cluster-client-ip': [client],
    'x-original-url': [],
    'x-rewrite-url': [],
    'coatcheck-session': [],
    'coatcheck-user': [],
  };
}

describe('headers from the client reach the app only as coatcheck decided', () => {
  const table: Array<{
    name: string;
    trustProxy: ConfigInput['trustProxy'];
    /** Where coatcheck listens, and the address the client connects from/to. */
    listen?: string;
    connect?: string;
    xff: string;
    expect: Record<string, string[]>;
  }> = [
    {
      name: 'trustProxy: false',
      trustProxy: false,
      xff: '6.6.6.6',
      expect: { ...untrusted('127.0.0.1'), 'x-forwarded-for': ['127.0.0.1'], 'x-forwarded-proto': ['http'], 'x-forwarded-host': ['app.example'] },
    },
    {
      name: 'trustProxy: true (the peer is the proxy; the client is the last X-Forwarded-For hop)',
      trustProxy: true,
      xff: '6.6.6.6, 203.0.113.9',
      expect: { ...trusted('203.0.113.9'), 'x-forwarded-for': ['6.6.6.6, 203.0.113.9, 127.0.0.1'], 'x-forwarded-proto': ['https'], 'x-forwarded-host': ['public.example'] },
    },
    {
      name: 'a list naming the peer: the walk stops at the first untrusted hop',
      trustProxy: ['127.0.0.1', '10.0.0.0/8'],
      xff: '6.6.6.6, 203.0.113.9, 10.0.0.7',
      expect: { ...trusted('203.0.113.9'), 'x-forwarded-for': ['6.6.6.6, 203.0.113.9, 10.0.0.7, 127.0.0.1'], 'x-forwarded-proto': ['https'], 'x-forwarded-host': ['public.example'] },
    },
    {
      name: 'a list not naming the peer: the peer is the client, nothing it says about others is believed',
      trustProxy: ['10.0.0.0/8'],
      xff: '203.0.113.9',
      expect: { ...untrusted('127.0.0.1'), 'x-forwarded-for': ['127.0.0.1'], 'x-forwarded-proto': ['http'], 'x-forwarded-host': ['app.example'] },
    },
    {
      name: 'a hop count of 2',
      trustProxy: 2,
      xff: '6.6.6.6, 203.0.113.9, 198.51.100.1',
      expect: { ...trusted('203.0.113.9'), 'x-forwarded-for': ['6.6.6.6, 203.0.113.9, 198.51.100.1, 127.0.0.1'] },
    },
    {
      name: 'an IPv6 peer in an IPv6 network',
      trustProxy: ['::1/128'],
      listen: '[::1]:0',
      connect: '::1',
      xff: '2001:db8::5',
      expect: { ...trusted('2001:db8::5'), 'x-forwarded-for': ['2001:db8::5, ::1'] },
    },
    {
      name: 'an IPv4-mapped IPv6 peer (dual-stack listener) in an IPv4 network',
      trustProxy: ['127.0.0.0/8'],
      listen: '[::]:0',
      connect: '127.0.0.1',
      xff: '203.0.113.9',
      expect: { ...trusted('203.0.113.9'), 'x-forwarded-for': ['203.0.113.9, ::ffff:127.0.0.1'] },
    },
    {
      name: 'an IPv4-mapped IPv6 peer outside the trusted network',
      trustProxy: ['10.0.0.0/8'],
      listen: '[::]:0',
      connect: '127.0.0.1',
      xff: '203.0.113.9',
      expect: { ...untrusted('::ffff:127.0.0.1'), 'x-forwarded-for': ['::ffff:127.0.0.1'] },
    },
  ];
  for (const row of table) {
    test(row.name, async (t) => {
      const { up, cc } = await start(t, { trustProxy: row.trustProxy, ...(row.listen ? { listen: row.listen } : {}) });
      const seen = up.nextRequest('/echo');
      const status = await get(row.connect ?? '127.0.0.1', cc.port, '/echo', {
        host: 'app.example',
        'x-forwarded-for': row.xff,
        'x-forwarded-proto': 'https',
        'x-forwarded-host': 'public.example',
        ...SPOOFED,
        // A second line of a client-address header: the app still gets one.
        'cf-connecting-ip': [SPOOFED['cf-connecting-ip'] as string, '7.7.7.7'],
      });
      assert.equal(status, 200);
      const rec = await seen;
      for (const [name, want] of Object.entries(row.expect)) assert.deepEqual(values(rec, name), want, name);
    });
  }
});

describe('the request id the app gets is the one coatcheck logs', () => {
  const table: Array<{ name: string; sent: string | string[] | undefined; kept: boolean }> = [
    { name: 'none sent: a new one', sent: undefined, kept: false },
    { name: 'a valid one is kept', sent: 'trace-0123:abc_DEF.9', kept: true },
    { name: 'one with a space is replaced', sent: 'abc 123', kept: false },
    { name: 'one with markup is replaced', sent: '<script>', kept: false },
    { name: 'one longer than 128 characters is replaced', sent: 'a'.repeat(129), kept: false },
    { name: 'two are replaced by one', sent: ['abc-1', 'abc-2'], kept: false },
  ];
  for (const row of table) {
    test(row.name, async (t) => {
      const { up, cc } = await start(t, {});
      const seen = up.nextRequest('/echo');
      const status = await get('127.0.0.1', cc.port, '/echo', row.sent === undefined ? {} : { 'x-request-id': row.sent });
      assert.equal(status, 200);
      const ids = values(await seen, 'x-request-id');
      assert.equal(ids.length, 1, `the app got ${ids.length} request ids`);
      const id = ids[0] as string;
      if (row.kept) assert.equal(id, row.sent);
      else assert.ok(!([] as Array<string | undefined>).concat(row.sent).includes(id), 'a new id');
      const access = await cc.logs.waitFor((l) => l.event === 'access');
      assert.equal(access.reqId, id, 'the access log names the id the app got');
    });
  }
});

test('the access log drops ;path parameters as it drops the query', async (t) => {
  const { cc } = await start(t, {});
  assert.equal(await get('127.0.0.1', cc.port, '/shop;jsessionid=SECRET0123/cart;v=SECRET4567?token=SECRET89', {}), 200);
  const access = await cc.logs.waitFor((l) => l.event === 'access');
  assert.equal(access.path, '/shop/cart');
  for (const line of cc.logs.lines) assert.ok(!JSON.stringify(line).includes('SECRET'), `a log line holds a path parameter: ${JSON.stringify(line)}`);
});
