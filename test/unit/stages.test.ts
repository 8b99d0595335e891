// The stages that decide, one at a time and without sockets: table-driven.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseCookieHeader } from '../../src/cookies/header.js';
import { RequestJar } from '../../src/cookies/jar.js';
import { fail, reject, type Outcome, type Stage } from '../../src/pipeline/context.js';
import { loggedPath, runStages } from '../../src/pipeline/handler.js';
import { buildCookieHeader, checkBinding, forwardHeaders, handleInvalid, identify, matchRules, MAX_STRIPPED_NAMES_LOGGED, refuseLoginWithoutStore } from '../../src/pipeline/request.js';
import { methodFieldsOf } from '../../src/pipeline/form-method.js';
import { matchRuleList, normalizePath, requestMethods, ruleMatches, rulePath } from '../../src/pipeline/rules.js';
import { bindingOf, ipPrefix } from '../../src/pipeline/session-actions.js';
import type { ConfigInput, Rule } from '../../src/config/schema.js';
import type { Resolution, SessionService } from '../../src/session/service.js';
import { fakeRequest, stageConfig, stageHarness, type FakeRequestInit } from '../helpers/pipeline.js';

function rules(input: ConfigInput['login']): readonly Rule[] {
  return stageConfig({ login: input }).login;
}

/** What matchRules sees for a request target: the rule path, as identify and matchRules make it. */
function pathFor(target: string): string {
  const q = target.indexOf('?');
  return rulePath(target, normalizePath(q === -1 ? target : target.slice(0, q)));
}

describe('rule matching (after path normalization)', () => {
  // One row per example; the README table "How rules match" is made of these rows.
  const table: Array<{ rules: ConfigInput['login']; method?: string; headers?: Record<string, string>; path: string; match: boolean }> = [
    { rules: [{ path: '/logout' }], path: '/logout', match: true },
    { rules: [{ path: '/logout' }], path: '/logout/', match: true },
    { rules: [{ path: '/logout' }], path: '/logout//', match: true },
    { rules: [{ path: '/logout' }], path: '/logouts', match: false },
    { rules: [{ path: '/logout' }], path: '/logout/x', match: false },
    { rules: [{ path: '/logout' }], path: '/a/../logout', match: true },
    { rules: [{ path: '/logout' }], path: '//logout', match: true },
    { rules: [{ path: '/logout' }], path: '/%6Cogout', match: true },
    { rules: [{ path: '/logout' }], path: '/./logout', match: true },
    { rules: [{ path: '/logout' }], path: '/logout?next=/', match: true },
    // ; path parameters, dropped from every segment (servlet containers), before dot segments
    { rules: [{ path: '/logout' }], path: '/logout;jsessionid=1', match: true },
    { rules: [{ path: '/logout' }], path: '/logout;a=1;b=2/', match: true },
    { rules: [{ path: '/logout' }], path: '/;x/logout', match: true },
    { rules: [{ path: '/logout' }], path: '/x/..;/logout', match: true },
    { rules: [{ path: '/logout' }], path: '/logout?a=;b', match: true },
    { rules: [{ path: '/logout' }], path: '/logout%3Bx', match: false },
    { rules: [{ prefix: '/auth/logout' }], path: '/auth;x/logout', match: true },
    { rules: [{ prefix: '/auth/logout' }], path: '/auth;x/logout;y/all', match: true },
    // format suffix (Rails' /logout(.:format), Spring's suffix match)
    { rules: [{ path: '/logout' }], path: '/logout.json', match: true },
    { rules: [{ path: '/logout' }], path: '/logout.html/', match: true },
    { rules: [{ path: '/logout' }], path: '/logout.tar.gz', match: true },
    { rules: [{ path: '/logout' }], path: '/logout;x=1.json', match: true },
    { rules: [{ path: '/logout' }], path: '/logout.json;x=1', match: true },
    { rules: [{ path: '/logout' }], path: '/logout.json/x', match: false },
    { rules: [{ path: '/logout' }], path: '/logoutjson', match: false },
    { rules: [{ path: '/' }], path: '/.json', match: false },
    { rules: [{ path: '/' }], path: '/', match: true },
    { rules: [{ prefix: '/auth/logout' }], path: '/auth/logout.json', match: true },
    { rules: [{ prefix: '/auth/logout' }], path: '/auth/logout.json/x', match: false },
    // case: insensitive unless the rule says otherwise
    { rules: [{ path: '/logout' }], path: '/LOGOUT', match: true },
    { rules: [{ path: '/LogOut' }], path: '/logout', match: true },
    { rules: [{ path: '/logout' }], path: '/Logout.JSON', match: true },
    { rules: [{ prefix: '/auth/logout' }], path: '/AUTH/Logout/x', match: true },
    { rules: [{ path: '/logout', caseSensitive: true }], path: '/LOGOUT', match: false },
    { rules: [{ path: '/logout', caseSensitive: true }], path: '/logout.json', match: true },
    { rules: [{ path: '/LogOut', caseSensitive: true }], path: '/LogOut', match: true },
    { rules: [{ prefix: '/auth/logout' }], path: '/auth/logout', match: true },
    { rules: [{ prefix: '/auth/logout' }], path: '/auth/logout/all', match: true },
    { rules: [{ prefix: '/auth/logout' }], path: '/auth/logoutx', match: false },
    { rules: [{ prefix: '/auth/' }], path: '/auth/x', match: true },
    { rules: [{ prefix: '/auth/' }], path: '/auth', match: true },
    { rules: [{ prefix: '/' }], path: '/anything', match: true },
    // methods
    { rules: [{ path: '/logout', methods: ['POST'] }], method: 'POST', path: '/logout', match: true },
    { rules: [{ path: '/logout', methods: ['POST'] }], method: 'GET', path: '/logout', match: false },
    { rules: [{ path: '/a', methods: ['GET'] }, { path: '/b' }], method: 'PUT', path: '/b', match: true },
    { rules: [{ prefix: '/auth/logout', methods: ['GET'] }], method: 'HEAD', path: '/auth/logout', match: true },
    { rules: [{ path: '/logout', methods: ['HEAD'] }], method: 'GET', path: '/logout', match: false },
    { rules: [{ path: '/logout', methods: ['GET'] }], method: 'POST', headers: { 'x-http-method-override': 'GET' }, path: '/logout', match: true },
    { rules: [{ path: '/logout', methods: ['GET'] }], method: 'POST', headers: { 'x-http-method': 'get' }, path: '/logout', match: true },
    { rules: [{ path: '/logout', methods: ['GET'] }], method: 'POST', headers: { 'x-method-override': 'HEAD' }, path: '/logout', match: true },
    { rules: [{ path: '/session', methods: ['DELETE'] }], method: 'POST', headers: { 'x-http-method-override': 'PUT, DELETE' }, path: '/session', match: true },
    { rules: [{ path: '/logout', methods: ['POST'] }], method: 'POST', headers: { 'x-http-method-override': 'GET' }, path: '/logout', match: true },
    { rules: [{ path: '/logout', methods: ['GET'] }], method: 'POST', headers: { 'x-http-method-override': 'G E T' }, path: '/logout', match: false },
    { rules: [{ path: '/logout', methods: ['GET'] }], method: 'POST', headers: { 'x-forwarded-method': 'GET' }, path: '/logout', match: false },
    { rules: [], path: '/logout', match: false },
  ];
  for (const row of table) {
    const hdrs = row.headers ? ` ${JSON.stringify(row.headers)}` : '';
    test(`${JSON.stringify(row.rules)} ${row.method ?? 'GET'} ${row.path}${hdrs} → ${row.match ? 'match' : 'no match'}`, () => {
      const methods = requestMethods(row.method ?? 'GET', row.headers ?? {});
      assert.equal(ruleMatches(rules(row.rules), methods, pathFor(row.path)), row.match);
    });
  }

  test('a rule that takes the path but not the method is a path-only match (a _method field may decide)', () => {
    const r = rules([{ path: '/session', methods: ['DELETE'] }]);
    assert.equal(matchRuleList(r, 'POST', '/session'), 'path');
    assert.equal(matchRuleList(r, requestMethods('POST', {}, ['delete']), '/session'), 'match');
    assert.equal(matchRuleList(r, 'POST', '/other'), 'none');
  });

  test('a plain request allocates no method list and no path', () => {
    assert.equal(requestMethods('GET', { accept: '*/*' }), 'GET');
    const p = '/page';
    assert.equal(rulePath(`${p}?a=;`, p), p);
  });

  test('_method fields of a urlencoded form: every one, decoded', () => {
    assert.deepEqual(methodFieldsOf(Buffer.from('authenticity_token=a%2Bb&_method=delete')), ['delete']);
    assert.deepEqual(methodFieldsOf(Buffer.from('_method=put&_method=%44ELETE+')), ['put', 'DELETE ']);
    assert.deepEqual(methodFieldsOf(Buffer.from('x=_method')), []);
    assert.deepEqual(methodFieldsOf(Buffer.from('')), []);
  });

  test('the matchRules stage marks login and logout, and a logout without a session clears the ticket', () => {
    const h = stageHarness({ logout: [{ path: '/logout' }], login: [{ path: '/login', methods: ['POST'] }] });
    const cases: Array<{ method: string; url: string; login: boolean; logout: boolean }> = [
      { method: 'POST', url: '/login', login: true, logout: false },
      { method: 'GET', url: '/login', login: false, logout: false },
      { method: 'GET', url: '/logout?next=/', login: false, logout: true },
      { method: 'GET', url: '/page', login: false, logout: false },
    ];
    for (const c of cases) {
      const ctx = h.context(fakeRequest({ method: c.method, url: c.url }));
      assert.equal(identify(ctx, h.deps), undefined);
      assert.equal(matchRules(ctx, h.deps), undefined, 'no session: nothing to revoke, nothing awaited');
      assert.deepEqual({ login: ctx.isLogin, logout: ctx.isLogout, clear: ctx.clearTicket }, { login: c.login, logout: c.logout, clear: c.logout }, `${c.method} ${c.url}`);
    }
  });
});

describe('invalid-session policy', () => {
  const resolutions: Record<string, Resolution> = {
    revoked: { state: 'revoked', logId: 'abc' },
    expired: { state: 'expired', logId: 'abc' },
    forged: { state: 'forged' },
    unknown: { state: 'unknown' },
  };
  const table: Array<{
    state: keyof typeof resolutions;
    policy: ConfigInput['invalidSession'];
    fetchMode?: string;
    outcome: Outcome | undefined;
    clear: boolean;
    event: string;
  }> = [
    { state: 'revoked', policy: {}, outcome: reject('SESSION_REVOKED'), clear: true, event: 'revoked' },
    { state: 'revoked', policy: {}, fetchMode: 'navigate', outcome: reject('SESSION_REVOKED'), clear: true, event: 'revoked' },
    { state: 'revoked', policy: {}, fetchMode: 'cors', outcome: reject('SESSION_REVOKED'), clear: false, event: 'revoked' },
    { state: 'revoked', policy: { revoked: 'anonymous' }, outcome: undefined, clear: true, event: 'revoked' },
    { state: 'revoked', policy: { revoked: 'anonymous' }, fetchMode: 'no-cors', outcome: undefined, clear: false, event: 'revoked' },
    { state: 'expired', policy: {}, outcome: undefined, clear: true, event: 'expired' },
    { state: 'expired', policy: { expired: 'reject' }, outcome: reject('SESSION_EXPIRED'), clear: true, event: 'expired' },
    { state: 'expired', policy: { expired: 'reject' }, fetchMode: 'cors', outcome: reject('SESSION_EXPIRED'), clear: true, event: 'expired' },
    { state: 'forged', policy: {}, outcome: undefined, clear: true, event: 'forged' },
    { state: 'forged', policy: { expired: 'reject' }, outcome: reject('SESSION_EXPIRED'), clear: true, event: 'forged' },
    { state: 'unknown', policy: {}, outcome: undefined, clear: true, event: 'unknown' },
    { state: 'unknown', policy: { expired: 'reject', revoked: 'anonymous' }, outcome: reject('SESSION_EXPIRED'), clear: true, event: 'unknown' },
  ];
  for (const row of table) {
    const name = `${row.state} with ${JSON.stringify(row.policy)}${row.fetchMode ? `, Sec-Fetch-Mode: ${row.fetchMode}` : ''} → ${row.outcome ? `reject ${(row.outcome as { error: string }).error}` : 'anonymous'}, ticket ${row.clear ? 'cleared' : 'kept'}`;
    test(name, async () => {
      const h = stageHarness({ invalidSession: row.policy });
      const ctx = h.context(fakeRequest({ headers: ['Host', 'app.example', ...(row.fetchMode ? ['Sec-Fetch-Mode', row.fetchMode] : [])] }));
      ctx.resolution = resolutions[row.state] as Resolution;
      assert.equal(handleInvalid(ctx, h.deps), row.outcome);
      assert.equal(ctx.clearTicket, row.clear);
      assert.equal(await h.securityCount(row.event), 1);
    });
  }

  test('no ticket and a live session pass untouched', () => {
    const h = stageHarness();
    for (const resolution of [{ state: 'none' }] as Resolution[]) {
      const ctx = h.context();
      ctx.resolution = resolution;
      assert.equal(handleInvalid(ctx, h.deps), undefined);
      assert.equal(ctx.clearTicket, false);
    }
  });
});

/**
 * Who the client is, per trustProxy (as Express' trust proxy): only a trusted peer's
 * X-Forwarded-* are believed; the client is the first untrusted X-Forwarded-For hop from the right.
 */
function clientAddressRows(): Array<{ name: string; trustProxy: ConfigInput['trustProxy']; req: FakeRequestInit; client: string; proxied: boolean; publicUrl?: string }> {
  const req = (remoteAddress: string, xff?: string, more: string[] = []): FakeRequestInit => ({
    remoteAddress,
    headers: ['Host', 'app.example', ...(xff !== undefined ? ['X-Forwarded-For', xff] : []), ...more],
  });
  const https = ['X-Forwarded-Proto', 'https', 'X-Forwarded-Host', 'public.example'];
  return [
    { name: 'false: the peer is the client, whatever X-Forwarded-For says', trustProxy: false, req: req('192.0.2.10', '203.0.113.9', https), client: '192.0.2.10', proxied: false, publicUrl: 'http://app.example/' },
    { name: 'true keeps its meaning: one hop, the last X-Forwarded-For entry', trustProxy: true, req: req('192.0.2.10', '6.6.6.6, 203.0.113.9'), client: '203.0.113.9', proxied: true },
    { name: 'true without X-Forwarded-For: the peer', trustProxy: true, req: req('192.0.2.10'), client: '192.0.2.10', proxied: true },
    { name: 'a list: a trusted peer, its X-Forwarded-* believed', trustProxy: ['10.0.0.0/8'], req: req('10.0.0.5', '203.0.113.9', https), client: '203.0.113.9', proxied: true, publicUrl: 'https://public.example/' },
    { name: 'a list: an untrusted peer is the client, its X-Forwarded-* ignored', trustProxy: ['10.0.0.0/8'], req: req('192.0.2.10', '203.0.113.9', https), client: '192.0.2.10', proxied: false, publicUrl: 'http://app.example/' },
    { name: 'a list: the walk stops at the first untrusted hop (a spoofed left part is not the client)', trustProxy: ['10.0.0.0/8'], req: req('10.0.0.5', '6.6.6.6, 203.0.113.9, 10.0.0.7'), client: '203.0.113.9', proxied: true },
    { name: 'a list: every hop trusted, the leftmost is the client', trustProxy: ['10.0.0.0/8'], req: req('10.0.0.5', '10.1.1.1, 10.0.0.7'), client: '10.1.1.1', proxied: true },
    { name: 'a list: several X-Forwarded-For lines are one list', trustProxy: ['10.0.0.0/8'], req: req('10.0.0.5', '6.6.6.6', ['X-Forwarded-For', '203.0.113.9', 'X-Forwarded-For', '10.0.0.7']), client: '203.0.113.9', proxied: true },
    { name: 'a list: single addresses', trustProxy: ['10.0.0.5', '10.0.0.7'], req: req('10.0.0.5', '203.0.113.9, 10.0.0.8, 10.0.0.7'), client: '10.0.0.8', proxied: true },
    { name: 'a list: IPv6 networks', trustProxy: ['fd00::/8'], req: req('fd00::1', '2001:db8::5, fd12::9'), client: '2001:db8::5', proxied: true },
    { name: 'a list: an IPv4-mapped IPv6 peer matches an IPv4 network', trustProxy: ['10.0.0.0/8'], req: req('::ffff:10.0.0.5', '203.0.113.9'), client: '203.0.113.9', proxied: true },
    { name: 'a list: an IPv4-mapped IPv6 network matches an IPv4 peer', trustProxy: ['::ffff:10.0.0.0/104'], req: req('10.0.0.5', '203.0.113.9'), client: '203.0.113.9', proxied: true },
    { name: 'a list: an IPv4-mapped network does not match another IPv4 peer', trustProxy: ['::ffff:10.0.0.0/104'], req: req('11.0.0.5', '203.0.113.9'), client: '11.0.0.5', proxied: false },
    { name: 'a list: presets (loopback)', trustProxy: ['loopback'], req: req('::1', '203.0.113.9'), client: '203.0.113.9', proxied: true },
    { name: 'a list: entries with a port or brackets', trustProxy: ['loopback'], req: req('127.0.0.1', '203.0.113.9:51000, [::1]:8443'), client: '203.0.113.9', proxied: true },
    { name: 'a list: an entry that is not an address ends the walk at the hop that forwarded it', trustProxy: ['10.0.0.0/8'], req: req('10.0.0.5', '6.6.6.6, not-an-ip, 10.0.0.7'), client: '10.0.0.7', proxied: true },
    { name: 'a list: empty entries are skipped', trustProxy: ['10.0.0.0/8'], req: req('10.0.0.5', '203.0.113.9, , 10.0.0.7,'), client: '203.0.113.9', proxied: true },
    { name: 'a hop count: n hops are trusted, whatever their address', trustProxy: 2, req: req('192.0.2.10', '6.6.6.6, 203.0.113.9, 198.51.100.1'), client: '203.0.113.9', proxied: true },
    { name: 'a hop count longer than the chain: the leftmost', trustProxy: 3, req: req('192.0.2.10', '203.0.113.9'), client: '203.0.113.9', proxied: true },
  ];
}

describe('request target and Host (identify)', () => {
  const table: Array<{
    name: string;
    req: FakeRequestInit;
    trustProxy?: ConfigInput['trustProxy'];
    bad?: string;
    publicUrl?: string;
    pathname?: string;
    client?: string;
    proxied?: boolean;
  }> = [
    { name: 'origin-form', req: { url: '/a/../b?q=1', headers: ['Host', 'app.example'] }, publicUrl: 'http://app.example/a/../b', pathname: '/b' },
    { name: 'absolute-form naming Host', req: { url: 'http://app.example/x?y', headers: ['Host', 'app.example'] }, publicUrl: 'http://app.example/x', pathname: '/x' },
    { name: 'absolute-form naming another host', req: { url: 'http://evil.example/x', headers: ['Host', 'app.example'] }, bad: 'unsupported request target' },
    { name: 'absolute-form with the default port, Host without', req: { url: 'http://app.example:80/x', headers: ['Host', 'app.example'] }, publicUrl: 'http://app.example/x' },
    { name: 'absolute-form without a port, Host with the default port', req: { url: 'http://app.example/x', headers: ['Host', 'app.example:80'] }, publicUrl: 'http://app.example:80/x' },
    { name: 'absolute-form https with port 443, Host without', req: { url: 'https://app.example:443/x', headers: ['Host', 'app.example'] }, publicUrl: 'http://app.example/x' },
    { name: 'absolute-form with another port than Host', req: { url: 'http://app.example:8080/x', headers: ['Host', 'app.example'] }, bad: 'unsupported request target' },
    { name: 'absolute-form http, Host with the https port', req: { url: 'http://app.example/x', headers: ['Host', 'app.example:443'] }, bad: 'unsupported request target' },
    { name: 'absolute-form, Host with userinfo', req: { url: 'http://app.example/x', headers: ['Host', 'u@app.example'] }, bad: 'unsupported request target' },
    { name: 'asterisk-form', req: { method: 'OPTIONS', url: '*', headers: ['Host', 'app.example'] }, bad: 'unsupported request target' },
    { name: 'two Host lines', req: { headers: ['Host', 'a.example', 'host', 'b.example'] }, bad: 'more than one Host header' },
    { name: 'a malformed Host', req: { headers: ['Host', 'a b'] }, bad: 'malformed Host header' },
    { name: 'no Host: the local address', req: { headers: [], localAddress: '127.0.0.1', localPort: 8080 }, publicUrl: 'http://127.0.0.1:8080/' },
    { name: 'TLS socket', req: { encrypted: true, headers: ['Host', 'app.example'] }, publicUrl: 'https://app.example/' },
    {
      name: 'X-Forwarded-* ignored without trustProxy',
      req: { headers: ['Host', 'app.example', 'X-Forwarded-Proto', 'https', 'X-Forwarded-Host', 'other.example', 'X-Forwarded-For', '203.0.113.9'] },
      publicUrl: 'http://app.example/',
      client: '192.0.2.10',
    },
    {
      name: 'X-Forwarded-* read with trustProxy (the last address appended is the client)',
      trustProxy: true,
      req: { headers: ['Host', 'app.example', 'X-Forwarded-Proto', 'https', 'X-Forwarded-Host', 'other.example', 'X-Forwarded-For', '198.51.100.1, 203.0.113.9'] },
      publicUrl: 'https://other.example/',
      client: '203.0.113.9',
      proxied: true,
    },
    ...clientAddressRows(),
  ];
  for (const row of table) {
    test(row.name, () => {
      const h = stageHarness({ trustProxy: row.trustProxy ?? false });
      const ctx = h.context(fakeRequest(row.req));
      const result = identify(ctx, h.deps) as Outcome | undefined;
      if (row.bad) {
        assert.equal(result?.kind, 'fail');
        const err = (result as { error: Error & { code?: string } }).error;
        assert.equal(err.code, 'COATCHECK_ERR_BAD_REQUEST');
        assert.equal(err.message, row.bad);
        return;
      }
      assert.equal(result, undefined);
      if (row.publicUrl) assert.equal(ctx.publicUrl, row.publicUrl);
      if (row.pathname) assert.equal(ctx.pathname, row.pathname);
      if (row.client) assert.equal(ctx.clientIp, row.client);
      if (row.proxied !== undefined) assert.equal(ctx.proxied, row.proxied);
    });
  }
});

describe('forwarded headers', () => {
  function forwarded(
    headers: string[],
    opts: { trustProxy?: ConfigInput['trustProxy']; remoteAddress?: string; encrypted?: boolean } = {},
  ): { got: Map<string, string[]>; id: string } {
    const h = stageHarness({ trustProxy: opts.trustProxy ?? false });
    const ctx = h.context(fakeRequest({ headers, remoteAddress: opts.remoteAddress ?? '192.0.2.10', ...(opts.encrypted ? { encrypted: true } : {}) }));
    assert.equal(identify(ctx, h.deps), undefined);
    assert.equal(forwardHeaders(ctx, h.deps), undefined);
    const out = new Map<string, string[]>();
    for (let i = 0; i < ctx.upstreamHeaders.length; i += 2) {
      const name = (ctx.upstreamHeaders[i] as string).toLowerCase();
      out.set(name, [...(out.get(name) ?? []), ctx.upstreamHeaders[i + 1] as string]);
    }
    return { got: out, id: ctx.id };
  }
  /** Every header a client may send to pass for a proxy, a CDN, or another URL: [name, value]. */
  const SPOOFED: Array<[string, string]> = [
    ['X-Real-IP', '6.6.6.6'],
    ['X-Forwarded-Ssl', 'on'],
    ['X-Forwarded-Scheme', 'https'],
    ['X-Forwarded-Port', '443'],
    ['X-Forwarded-Prefix', '/admin'],
    ['X-Forwarded-Server', 'lb.example'],
    ['True-Client-IP', '6.6.6.6'],
    ['X-Client-IP', '6.6.6.6'],
    ['CF-Connecting-IP', '6.6.6.6'],
    ['Fastly-Client-IP', '6.6.6.6'],
    ['X-Cluster-Client-IP', '6.6.6.6'],
    ['X-Original-URL', '/logout'],
    ['X-Rewrite-URL', '/logout'],
    ['Coatcheck-Session', 'revoke'],
    ['Coatcheck-User', 'admin'],
  ];
  const spoofed = (): string[] => SPOOFED.flat();
  const none = (names: string[]): Record<string, undefined> => Object.fromEntries(names.map((n) => [n.toLowerCase(), undefined]));
  /** What each SPOOFED header becomes when it comes from a trusted proxy whose client is `client`. */
  const fromTrustedProxy = (client: string): Record<string, string[] | undefined> => ({
    'x-real-ip': [client],
    'x-forwarded-ssl': undefined,
    'x-forwarded-scheme': undefined,
    'x-forwarded-port': ['443'],
    'x-forwarded-prefix': ['/admin'],
    'x-forwarded-server': ['lb.example'],
    'true-client-ip': [client],
    'x-client-ip': [client],
    'cf-connecting-ip': [client],
    'fastly-client-ip': [client],
    'x-cluster-client-ip': [client],
    'x-original-url': undefined,
    'x-rewrite-url': undefined,
    'coatcheck-session': undefined,
    'coatcheck-user': undefined,
  });
  const table: Array<{
    name: string;
    headers: string[];
    trustProxy?: ConfigInput['trustProxy'];
    remoteAddress?: string;
    encrypted?: boolean;
    expect: Record<string, string[] | undefined>;
    /** The id the app gets: the client's (a string), or a new one (true). */
    requestId?: string | true;
  }> = [
    {
      name: 'X-Forwarded-* replaced without trustProxy',
      headers: ['Host', 'app.example', 'X-Forwarded-For', '6.6.6.6', 'X-Forwarded-Proto', 'https', 'X-Forwarded-Host', 'evil.example', 'Forwarded', 'for=6.6.6.6'],
      expect: { 'x-forwarded-for': ['192.0.2.10'], 'x-forwarded-proto': ['http'], 'x-forwarded-host': ['app.example'], forwarded: undefined, host: ['app.example'] },
    },
    {
      name: 'X-Forwarded-For appended to with trustProxy',
      trustProxy: true,
      headers: ['Host', 'app.example', 'X-Forwarded-For', '198.51.100.1', 'x-forwarded-for', '203.0.113.9', 'X-Forwarded-Proto', 'https'],
      expect: { 'x-forwarded-for': ['198.51.100.1, 203.0.113.9, 192.0.2.10'], 'x-forwarded-proto': ['https'], 'x-forwarded-host': ['app.example'], 'x-real-ip': ['203.0.113.9'] },
    },
    {
      name: 'TLS makes X-Forwarded-Proto https',
      encrypted: true,
      headers: ['Host', 'app.example'],
      expect: { 'x-forwarded-proto': ['https'] },
    },
    {
      name: 'hop-by-hop headers and those Connection names are dropped; others kept in order',
      headers: ['Host', 'app.example', 'Connection', 'keep-alive, X-Secret', 'Keep-Alive', 'timeout=5', 'X-Secret', '1', 'TE', 'trailers', 'Trailer', 'X', 'Upgrade', 'h2c', 'Proxy-Authorization', 'Basic x', 'Accept', 'a', 'accept', 'b'],
      expect: { connection: undefined, 'keep-alive': undefined, 'x-secret': undefined, te: undefined, trailer: undefined, upgrade: undefined, 'proxy-authorization': undefined, accept: ['a', 'b'] },
    },
    {
      name: 'Expect and the client Cookie never reach the app; a request id is added',
      headers: ['Host', 'app.example', 'Expect', '100-continue', 'Cookie', 'sid=stolen'],
      expect: { expect: undefined, cookie: undefined },
      requestId: true,
    },
    {
      name: 'trustProxy false: every client-address, scheme, proxy and URL-override header is stripped; X-Real-IP is the peer',
      headers: ['Host', 'app.example', ...spoofed(), 'x-real-ip', '7.7.7.7', 'Accept', 'a'],
      expect: { ...none(SPOOFED.map(([n]) => n)), 'x-real-ip': ['192.0.2.10'], accept: ['a'] },
    },
    {
      name: 'trustProxy true: a proxy\'s own headers pass, client-address headers carry the client coatcheck determined, the rest is stripped',
      trustProxy: true,
      headers: ['Host', 'app.example', 'X-Forwarded-For', '6.6.6.6, 203.0.113.9', ...spoofed(), 'cf-connecting-ip', '7.7.7.7'],
      expect: { ...fromTrustedProxy('203.0.113.9'), 'x-forwarded-for': ['6.6.6.6, 203.0.113.9, 192.0.2.10'] },
    },
    {
      name: 'a trusted list: the same, from a trusted peer',
      trustProxy: ['10.0.0.0/8'],
      remoteAddress: '10.0.0.5',
      headers: ['Host', 'app.example', 'X-Forwarded-For', '6.6.6.6, 203.0.113.9, 10.0.0.7', ...spoofed()],
      expect: { ...fromTrustedProxy('203.0.113.9'), 'x-forwarded-for': ['6.6.6.6, 203.0.113.9, 10.0.0.7, 10.0.0.5'] },
    },
    {
      name: 'a trusted list: from an untrusted peer everything is stripped, X-Forwarded-* replaced',
      trustProxy: ['10.0.0.0/8'],
      remoteAddress: '192.0.2.10',
      headers: ['Host', 'app.example', 'X-Forwarded-For', '203.0.113.9', 'X-Forwarded-Proto', 'https', 'X-Forwarded-Host', 'evil.example', ...spoofed()],
      expect: {
        ...none(SPOOFED.map(([n]) => n)),
        'x-real-ip': ['192.0.2.10'],
        'x-forwarded-for': ['192.0.2.10'],
        'x-forwarded-proto': ['http'],
        'x-forwarded-host': ['app.example'],
      },
    },
    {
      name: "the client's request id is kept",
      headers: ['Host', 'app.example', 'X-Request-Id', 'abc-123'],
      expect: {},
      requestId: 'abc-123',
    },
    {
      name: 'a request id with a space is replaced',
      headers: ['Host', 'app.example', 'X-Request-Id', 'abc 123'],
      expect: {},
      requestId: true,
    },
    {
      name: 'a request id with a character outside the token set is replaced',
      headers: ['Host', 'app.example', 'X-Request-Id', 'abc<script>'],
      expect: {},
      requestId: true,
    },
    {
      name: 'a request id longer than 128 characters is replaced',
      headers: ['Host', 'app.example', 'X-Request-Id', 'a'.repeat(129)],
      expect: {},
      requestId: true,
    },
    {
      name: 'an empty request id is replaced',
      headers: ['Host', 'app.example', 'X-Request-Id', ''],
      expect: {},
      requestId: true,
    },
    {
      name: 'two request ids are replaced by one',
      headers: ['Host', 'app.example', 'X-Request-Id', 'abc-123', 'x-request-id', 'def-456'],
      expect: {},
      requestId: true,
    },
  ];
  for (const row of table) {
    test(row.name, () => {
      const { got, id } = forwarded(row.headers, {
        ...(row.trustProxy !== undefined ? { trustProxy: row.trustProxy } : {}),
        ...(row.remoteAddress ? { remoteAddress: row.remoteAddress } : {}),
        ...(row.encrypted ? { encrypted: true } : {}),
      });
      for (const [name, values] of Object.entries(row.expect)) assert.deepEqual(got.get(name), values, name);
      // The app always gets exactly one request id, and it is the one coatcheck logs.
      assert.deepEqual(got.get('x-request-id'), [id], 'exactly one request id, the logged one');
      if (typeof row.requestId === 'string') assert.equal(id, row.requestId);
      if (row.requestId === true) assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'a new id');
      assert.equal(got.get('x-real-ip')?.length, 1, 'exactly one X-Real-IP');
    });
  }
});

describe('the access log path', () => {
  const table: Array<[string, string]> = [
    ['/a/b', '/a/b'],
    ['/app;jsessionid=0123ABCD', '/app'],
    ['/app;jsessionid=0123ABCD/x;v=1', '/app/x'],
    ['/;a/;b', '//'],
    ['/logout;', '/logout'],
    ['/a;b;c/d', '/a/d'],
  ];
  for (const [path, logged] of table) {
    test(`${path} → ${logged}`, () => assert.equal(loggedPath(path), logged));
  }
});

describe('binding prefixes', () => {
  const table: Array<[string, string]> = [
    ['192.0.2.77', '192.0.2.0/24'],
    ['::ffff:192.0.2.77', '192.0.2.0/24'],
    ['::FFFF:10.1.2.3', '10.1.2.0/24'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:0db8:0001:0002::1', '2001:db8:1:2::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['fe80::', 'fe80:0:0:0::/64'],
    ['', ''],
    ['not-an-ip', 'not-an-ip'],
  ];
  for (const [ip, prefix] of table) {
    test(`${ip || '(none)'} → ${prefix || '(none)'}`, () => assert.equal(ipPrefix(ip), prefix));
  }

  test('bindingOf combines the configured checks in order', () => {
    const cases: Array<{ bind: Array<'userAgent' | 'ipPrefix'>; expect: string }> = [
      { bind: [], expect: '' },
      { bind: ['userAgent'], expect: 'ua:UA/1\n' },
      { bind: ['ipPrefix'], expect: 'ip:192.0.2.0/24\n' },
      { bind: ['ipPrefix', 'userAgent'], expect: 'ip:192.0.2.0/24\nua:UA/1\n' },
    ];
    for (const c of cases) {
      const h = stageHarness({ session: { bind: c.bind } });
      const ctx = h.context(fakeRequest({ headers: ['Host', 'app.example', 'User-Agent', 'UA/1'], remoteAddress: '192.0.2.99' }));
      identify(ctx, h.deps);
      assert.equal(bindingOf(ctx, h.deps), c.expect);
    }
  });

  test('checkBinding: a session bound elsewhere is logged, rejected or revoked per bindMismatch', async () => {
    for (const action of ['log', 'reject', 'revoke'] as const) {
      const h = stageHarness({ session: { bind: ['userAgent'], bindMismatch: action }, cookie: { name: 'cc', secure: false } });
      const jar = new RequestJar();
      const change = jar.apply('a=1', 'http://app.example/', Date.now(), undefined);
      const created = await h.deps.service.commit({ session: undefined, changes: [change], rotate: false, bind: 'ua:UA/1\n' });
      assert.equal(created.kind, 'created');
      const ticket = (created as { ticket: string }).ticket;
      const live = await h.deps.service.resolve([ticket]);
      assert.equal(live.state, 'live');

      const same = h.context(fakeRequest({ headers: ['Host', 'app.example', 'User-Agent', 'UA/1'] }));
      identify(same, h.deps);
      same.session = (live as { session: NonNullable<typeof same.session> }).session;
      assert.equal(checkBinding(same, h.deps), undefined, `${action}: the same agent passes`);

      const other = h.context(fakeRequest({ headers: ['Host', 'app.example', 'User-Agent', 'UA/2'] }));
      identify(other, h.deps);
      other.session = same.session;
      const result = await checkBinding(other, h.deps);
      assert.equal(result, action === 'log' ? undefined : reject(action === 'revoke' ? 'SESSION_REVOKED' : 'SESSION_BINDING'), action);
      assert.equal(other.session === undefined, action !== 'log');
      assert.equal(await h.securityCount('binding_mismatch'), 1);
      const after = await h.deps.service.resolve([ticket]);
      assert.equal(after.state, action === 'revoke' ? 'revoked' : 'live', `${action}: the session ${action === 'revoke' ? 'is revoked' : 'survives for its owner'}`);
    }
  });
});

describe('the Cookie header the app gets', () => {
  const table: Array<{ name: string; session: ConfigInput['session']; sent: string; upstream: string; alarms: number }> = [
    { name: 'managed "*": client cookies stripped, passthrough kept', session: { passthrough: ['_ga*', 'theme'] }, sent: 'sid=stolen; _ga=1; _gat_x=2; theme=dark', upstream: '_ga=1; _gat_x=2; theme=dark', alarms: 0 },
    { name: 'managed list: only its names are stripped, and raise the alarm', session: { managed: ['sid'] }, sent: 'sid=stolen; other=1', upstream: 'other=1', alarms: 1 },
    { name: 'the ticket never reaches the app', session: {}, sent: 'cc=v1.x.y; a=1', upstream: '', alarms: 0 },
  ];
  for (const row of table) {
    test(row.name, async () => {
      const h = stageHarness({ session: row.session, cookie: { name: 'cc', secure: false } });
      const ctx = h.context(fakeRequest({ headers: ['Host', 'app.example', 'Cookie', row.sent] }));
      identify(ctx, h.deps);
      ctx.clientCookies = parseCookieHeader(row.sent);
      assert.equal(buildCookieHeader(ctx, h.deps), undefined);
      assert.equal(ctx.upstreamCookie, row.upstream);
      assert.equal(await h.securityCount('legacy_cookie_presented'), row.alarms);
    });
  }
});

describe('stripped client cookies are logged by name, once per name per process', () => {
  test('debug lines name each stripped cookie once, never a value; app cookies get their warning instead; the set of names is bounded', () => {
    const h = stageHarness({ session: { passthrough: ['theme'] }, cookie: { name: 'cc', secure: false } });
    h.deps.cookies.noteAppCookie('sid');
    const send = (cookie: string) => {
      const ctx = h.context(fakeRequest({ headers: ['Host', 'app.example', 'Cookie', cookie] }));
      identify(ctx, h.deps);
      ctx.clientCookies = parseCookieHeader(cookie);
      assert.equal(buildCookieHeader(ctx, h.deps), undefined);
    };
    send('js_pref=SECRET1; theme=dark; cc=v1.x.y');
    send('js_pref=SECRET2; other=SECRET3');
    send('js_pref=SECRET4; other=SECRET5; sid=SECRET6');
    const lines = h.logs.events('cookie.client_stripped');
    assert.deepEqual(
      lines.map((l) => [l.level, l.cookieName]),
      [
        ['debug', 'js_pref'],
        ['debug', 'other'],
      ],
    );
    assert.equal(h.logs.events('session.legacy_cookie_presented').length, 1, 'an app cookie gets its warning, not the debug line');
    assert.ok(!h.logs.raw.some((l) => /SECRET/.test(l)), 'a cookie value reached the log');
    for (let i = 0; i < MAX_STRIPPED_NAMES_LOGGED + 10; i++) send(`n${i}=v`);
    assert.equal(h.logs.events('cookie.client_stripped').length, MAX_STRIPPED_NAMES_LOGGED);
    assert.equal(h.logs.events('cookie.stripped_names_limit').length, 1);
    assert.equal(h.deps.strippedCookieNames.size, MAX_STRIPPED_NAMES_LOGGED + 1);
  });
});

describe('a login while the store is known to be unreachable', () => {
  const table: Array<{ name: string; login: boolean; available: boolean; refused: boolean }> = [
    { name: 'a login, store available → goes on', login: true, available: true, refused: false },
    { name: 'a login, store unreachable → 503 before the app', login: true, available: false, refused: true },
    { name: 'not a login, store unreachable → goes on (it needs no new session)', login: false, available: false, refused: false },
  ];
  for (const row of table) {
    test(row.name, () => {
      const h = stageHarness();
      const deps = { ...h.deps, service: { storeAvailable: () => row.available } as unknown as SessionService };
      const ctx = h.context();
      ctx.isLogin = row.login;
      const out = refuseLoginWithoutStore(ctx, deps) as Outcome | undefined;
      if (!row.refused) return assert.equal(out, undefined);
      assert.equal(out?.kind, 'fail');
      assert.equal((out as { error: { code: string; status: number } }).error.code, 'COATCHECK_ERR_STORE_UNAVAILABLE');
      assert.equal((out as { error: { code: string; status: number } }).error.status, 503);
    });
  }
});

describe('running stages', () => {
  test('a new stage is one function in the list: they run in order, sync ones without a promise, and the first Outcome stops the rest', async () => {
    const h = stageHarness();
    const seen: string[] = [];
    const stamp = (name: string): Stage => () => {
      seen.push(name);
      return undefined;
    };
    const ctx = h.context();
    assert.equal(runStages([stamp('a'), stamp('b')], ctx, h.deps), undefined, 'all synchronous: the result is not a promise');
    assert.deepEqual(seen, ['a', 'b']);

    seen.length = 0;
    const later: Stage = async () => {
      seen.push('async');
      return undefined;
    };
    const pending = runStages([stamp('a'), later, stamp('c')], ctx, h.deps);
    assert.ok(pending instanceof Promise);
    assert.equal(await pending, undefined);
    assert.deepEqual(seen, ['a', 'async', 'c']);

    seen.length = 0;
    const stop: Stage = async () => reject('SESSION_EXPIRED');
    assert.equal(await runStages([stamp('a'), stop, stamp('never')], ctx, h.deps), reject('SESSION_EXPIRED'));
    assert.deepEqual(seen, ['a']);

    const failure = fail(new Error('x'));
    assert.equal(runStages([() => failure, stamp('never')], ctx, h.deps), failure);

    const boom: Stage = () => {
      throw new Error('thrown');
    };
    assert.throws(() => runStages([boom], ctx, h.deps), /thrown/, 'a thrown error reaches the handler, which answers it');
    await assert.rejects(async () => runStages([later, boom], ctx, h.deps), /thrown/);
  });
});
