// The stages that decide, one at a time and without sockets: table-driven.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseCookieHeader } from '../../src/cookies/header.js';
import { RequestJar } from '../../src/cookies/jar.js';
import { fail, reject, type Outcome, type Stage } from '../../src/pipeline/context.js';
import { runStages } from '../../src/pipeline/handler.js';
import { buildCookieHeader, checkBinding, forwardHeaders, handleInvalid, identify, matchRules } from '../../src/pipeline/request.js';
import { methodFieldsOf } from '../../src/pipeline/form-method.js';
import { matchRuleList, normalizePath, requestMethods, ruleMatches, rulePath } from '../../src/pipeline/rules.js';
import { bindingOf, ipPrefix } from '../../src/pipeline/session-actions.js';
import type { ConfigInput, Rule } from '../../src/config/schema.js';
import type { Resolution } from '../../src/session/service.js';
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

describe('request target and Host (identify)', () => {
  const table: Array<{ name: string; req: FakeRequestInit; trustProxy?: boolean; bad?: string; publicUrl?: string; pathname?: string; client?: string }> = [
    { name: 'origin-form', req: { url: '/a/../b?q=1', headers: ['Host', 'app.example'] }, publicUrl: 'http://app.example/a/../b', pathname: '/b' },
    { name: 'absolute-form naming Host', req: { url: 'http://app.example/x?y', headers: ['Host', 'app.example'] }, publicUrl: 'http://app.example/x', pathname: '/x' },
    { name: 'absolute-form naming another host', req: { url: 'http://evil.example/x', headers: ['Host', 'app.example'] }, bad: 'unsupported request target' },
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
    },
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
    });
  }
});

describe('forwarded headers', () => {
  function forwarded(headers: string[], opts: { trustProxy?: boolean; remoteAddress?: string; encrypted?: boolean } = {}): Map<string, string[]> {
    const h = stageHarness({ trustProxy: opts.trustProxy ?? false });
    const ctx = h.context(fakeRequest({ headers, remoteAddress: opts.remoteAddress ?? '192.0.2.10', ...(opts.encrypted ? { encrypted: true } : {}) }));
    assert.equal(identify(ctx, h.deps), undefined);
    assert.equal(forwardHeaders(ctx, h.deps), undefined);
    const out = new Map<string, string[]>();
    for (let i = 0; i < ctx.upstreamHeaders.length; i += 2) {
      const name = (ctx.upstreamHeaders[i] as string).toLowerCase();
      out.set(name, [...(out.get(name) ?? []), ctx.upstreamHeaders[i + 1] as string]);
    }
    return out;
  }
  const table: Array<{ name: string; headers: string[]; trustProxy?: boolean; encrypted?: boolean; expect: Record<string, string[] | undefined> }> = [
    {
      name: 'X-Forwarded-* replaced without trustProxy',
      headers: ['Host', 'app.example', 'X-Forwarded-For', '6.6.6.6', 'X-Forwarded-Proto', 'https', 'X-Forwarded-Host', 'evil.example', 'Forwarded', 'for=6.6.6.6'],
      expect: { 'x-forwarded-for': ['192.0.2.10'], 'x-forwarded-proto': ['http'], 'x-forwarded-host': ['app.example'], forwarded: undefined, host: ['app.example'] },
    },
    {
      name: 'X-Forwarded-For appended to with trustProxy',
      trustProxy: true,
      headers: ['Host', 'app.example', 'X-Forwarded-For', '198.51.100.1', 'x-forwarded-for', '203.0.113.9', 'X-Forwarded-Proto', 'https'],
      expect: { 'x-forwarded-for': ['198.51.100.1, 203.0.113.9, 192.0.2.10'], 'x-forwarded-proto': ['https'], 'x-forwarded-host': ['app.example'] },
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
    },
    {
      name: "the client's request id is kept",
      headers: ['Host', 'app.example', 'X-Request-Id', 'abc-123'],
      expect: { 'x-request-id': ['abc-123'] },
    },
  ];
  for (const row of table) {
    test(row.name, () => {
      const got = forwarded(row.headers, { ...(row.trustProxy ? { trustProxy: true } : {}), ...(row.encrypted ? { encrypted: true } : {}) });
      for (const [name, values] of Object.entries(row.expect)) assert.deepEqual(got.get(name), values, name);
      assert.equal(got.get('x-request-id')?.length, 1, 'exactly one request id');
    });
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
