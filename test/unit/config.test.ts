// Configuration: loading (YAML, positions, env interpolation), validation, warnings, printing.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { validateHeaderValue } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../../src/errors.js';
import type { ConfigProblem } from '../../src/errors.js';
import { interpolate } from '../../src/config/interpolate.js';
import { knownKeys, suggest } from '../../src/config/issues.js';
import type { Path } from '../../src/config/positions.js';
import { loadConfigFile, loadConfigText } from '../../src/config/load.js';
import type { LoadedConfig } from '../../src/config/load.js';
import { printConfig, redactUrlPassword } from '../../src/config/print.js';
import type { Config } from '../../src/config/schema.js';
import { formatDuration, formatListen, isLoopbackHost, parseDuration, parseListen, parseTrustedNetwork, suggestDuration } from '../../src/config/values.js';

const CONFIG_DIR = fileURLToPath(new URL('../../../config/', import.meta.url));
const SECRET = 'test-secret-0123456789-abcdefghijklmnop';
const SECRET2 = 'second-secret-ZYXWVUTSRQPONMLKJIHGFEDCBA';
const ENV = { COATCHECK_SECRET: SECRET };
/** The smallest valid configuration: lines 1 and 2 of most test documents. */
const BASE = ['upstream: "http://127.0.0.1:3000"', 'secrets: ["${COATCHECK_SECRET}"]'];
/** A logout rule, so that a test document does not warn that nothing ends a session early. */
const LOGOUT = 'logout: [{ path: /logout }]';

function load(text: string | string[], env: NodeJS.ProcessEnv = ENV): LoadedConfig {
  return loadConfigText(Array.isArray(text) ? text.join('\n') : text, 'test.yaml', env);
}

function failure(text: string | string[], env: NodeJS.ProcessEnv = ENV): ConfigError {
  try {
    load(text, env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the configuration to be rejected');
}

function problems(text: string | string[], env: NodeJS.ProcessEnv = ENV): ConfigProblem[] {
  return failure(text, env).problems;
}

/** 1-based line:col of the first occurrence of `snippet` in `lines` (the test's own oracle). */
function pos(lines: string[], snippet: string): { line: number; col: number } {
  for (let i = 0; i < lines.length; i++) {
    const col = (lines[i] as string).indexOf(snippet);
    if (col !== -1) return { line: i + 1, col: col + 1 };
  }
  throw new Error(`snippet ${JSON.stringify(snippet)} not in the test document`);
}

const DEFAULTS: Config = {
  listen: { host: '127.0.0.1', port: 8080 },
  upstream: 'http://127.0.0.1:3000',
  mode: 'enforce',
  upstreamTimeout: 60_000,
  shutdownTimeout: 10_000,
  trustProxy: false,
  workers: 1,
  store: { kind: 'memory', prefix: 'coatcheck:', timeout: 250, connectTimeout: 5000, maxSessions: 100_000, replicas: 0, replicaTimeout: 200 },
  secrets: [SECRET],
  cookie: { name: '__Host-coatcheck', secure: true, sameSite: 'lax', domain: null, persistent: false },
  session: {
    idleTimeout: 1_800_000,
    absoluteTimeout: 43_200_000,
    managed: '*',
    passthrough: [],
    renewAfter: null,
    renewGrace: 30_000,
    bind: [],
    bindMismatch: 'reject',
    maxPerUser: null,
  },
  logout: { rules: [], onCookieCleared: [], clearSiteData: false },
  login: [],
  invalidSession: { revoked: 'reject', expired: 'anonymous', status: 401, redirect: null },
  log: { level: 'info', access: true },
  limits: { maxHeaderSize: 16_384, maxCookiesPerSession: 50, maxJarBytes: 32_768 },
  websocket: { enabled: true, maxConnections: 10_000 },
  admin: { listen: null, token: null },
  tls: null,
};

describe('example configurations in config/', () => {
  it('there are the three documented examples', async () => {
    const files = (await readdir(CONFIG_DIR)).filter((f) => f.endsWith('.yaml')).sort();
    assert.deepEqual(files, ['demo.yaml', 'redis.yaml', 'reference.yaml']);
  });

  for (const name of ['demo.yaml', 'redis.yaml', 'reference.yaml']) {
    it(`${name} loads with COATCHECK_SECRET set`, async () => {
      const { config } = await loadConfigFile(join(CONFIG_DIR, name), ENV);
      assert.deepEqual(config.secrets, [SECRET]);
      assert.equal(config.upstream, 'http://127.0.0.1:3000');
    });
  }

  it('demo.yaml: memory store, plain-http cookie, logout and login rules, warns about all three', async () => {
    const { config, warnings } = await loadConfigFile(join(CONFIG_DIR, 'demo.yaml'), ENV);
    assert.equal(config.store.kind, 'memory');
    assert.deepEqual(config.listen, { host: '127.0.0.1', port: 8080 });
    assert.equal(config.cookie.name, 'coatcheck');
    assert.equal(config.cookie.secure, false);
    assert.deepEqual(config.logout.rules, [{ kind: 'exact', path: '/logout', methods: null, caseSensitive: false }]);
    assert.deepEqual(config.login, [{ kind: 'exact', path: '/login', methods: ['POST'], caseSensitive: false }]);
    assert.equal(warnings.length, 3, warnings.join('\n'));
    assert.match(warnings.join('\n'), /cookie\.name: is "coatcheck", without the "__Host-" prefix/);
    assert.match(warnings.join('\n'), /cookie\.secure: is false/);
    assert.match(warnings.join('\n'), /store\.kind: is memory/);
  });

  it('demo.yaml runs without COATCHECK_SECRET, on a long demo secret, and warns that it is the default', async () => {
    const { config, warnings } = await loadConfigFile(join(CONFIG_DIR, 'demo.yaml'), {});
    const secret = config.secrets[0] as string;
    assert.ok(secret.length >= 40);
    assert.match(secret, /demo/i);
    const w = warnings.find((x) => x.includes('secrets[0]'));
    assert.ok(w, warnings.join('\n'));
    assert.match(w, /"COATCHECK_SECRET" is not set/);
    assert.ok(!w.includes(secret), 'the warning must not echo the secret');
  });

  it('redis.yaml: redis from REDIS_URL (with a default), __Host- cookie, no warnings', async () => {
    const a = await loadConfigFile(join(CONFIG_DIR, 'redis.yaml'), ENV);
    // It listens on every interface behind a TLS-terminating load balancer: it must trust it,
    // or the app's Secure cookies are refused (issue 10 §5).
    assert.deepEqual(a.config.listen, { host: '0.0.0.0', port: 8080 });
    assert.equal(a.config.trustProxy, true);
    assert.equal(a.config.store.kind, 'redis');
    assert.equal(a.config.store.url, 'redis://127.0.0.1:6379/0');
    assert.equal(a.config.cookie.name, '__Host-coatcheck');
    assert.equal(a.config.cookie.secure, true);
    assert.deepEqual(a.warnings, []);
    const b = await loadConfigFile(join(CONFIG_DIR, 'redis.yaml'), { ...ENV, REDIS_URL: 'rediss://:pw@cache:6380/2' });
    assert.equal(b.config.store.url, 'rediss://:pw@cache:6380/2');
  });

  it('redis.yaml refuses to start without COATCHECK_SECRET (no default secret)', async () => {
    await assert.rejects(loadConfigFile(join(CONFIG_DIR, 'redis.yaml'), {}), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.problems.length, 1);
      assert.equal(err.problems[0]?.path, 'secrets[0]');
      assert.match(err.problems[0]?.message ?? '', /"COATCHECK_SECRET" is not set/);
      return true;
    });
  });

  it('reference.yaml sets every key to its default', async () => {
    const { config } = await loadConfigFile(join(CONFIG_DIR, 'reference.yaml'), ENV);
    assert.deepEqual(config, DEFAULTS);
  });

  it('reference.yaml names every key the schema has (compared with the printed defaults)', async () => {
    const { readFile } = await import('node:fs/promises');
    const keyPaths = (v: unknown, prefix = ''): string[] =>
      v && typeof v === 'object' && !Array.isArray(v)
        ? Object.entries(v).flatMap(([k, child]) => [`${prefix}${k}`, ...keyPaths(child, `${prefix}${k}.`)])
        : [];
    const reference = keyPaths(parseYaml(await readFile(join(CONFIG_DIR, 'reference.yaml'), 'utf8'))).sort();
    const printed = keyPaths(parseYaml(printConfig(DEFAULTS))).sort();
    assert.deepEqual(reference, printed);
    // store.url is only valid with kind: redis, so the reference documents it in a comment.
    assert.match(await readFile(join(CONFIG_DIR, 'reference.yaml'), 'utf8'), /^\s*# url: "redis:\/\//m);
  });
});

describe('defaults', () => {
  it('a minimal file gets every default', () => {
    assert.deepEqual(load(BASE).config, DEFAULTS);
  });

  it('an empty mapping section gets that section\'s defaults', () => {
    assert.deepEqual(load([...BASE, 'cookie: {}', 'session: {}', 'store: {}']).config, DEFAULTS);
  });

  it('the short logout form becomes the mapping form', () => {
    const { config } = load([...BASE, 'logout:', '  - path: /logout', '    methods: [get, post]', '  - prefix: /signout']);
    assert.deepEqual(config.logout, {
      rules: [
        { kind: 'exact', path: '/logout', methods: ['GET', 'POST'], caseSensitive: false },
        { kind: 'prefix', path: '/signout', methods: null, caseSensitive: false },
      ],
      onCookieCleared: [],
      clearSiteData: false,
    });
  });

  it('the mapping logout form keeps its keys', () => {
    const { config } = load([...BASE, 'logout:', '  rules: [{ path: /bye }]', '  onCookieCleared: [JSESSIONID]', '  clearSiteData: true']);
    assert.deepEqual(config.logout, {
      rules: [{ kind: 'exact', path: '/bye', methods: null, caseSensitive: false }],
      onCookieCleared: ['JSESSIONID'],
      clearSiteData: true,
    });
  });
});

describe('problems: path, message and line:col', () => {
  interface Case {
    name: string;
    lines: string[];
    env?: NodeJS.ProcessEnv;
    path: string;
    message: string | RegExp;
    /** The snippet the problem points at; null for no position. */
    at: string | null;
  }
  const cases: Case[] = [
    {
      name: 'bad duration',
      lines: [...BASE, 'session:', '  idleTimeout: 30 minutes'],
      path: 'session.idleTimeout',
      message: 'expected a duration: a whole number and one unit (ms, s, m, h or d, e.g. "30m"), or whole seconds; got "30 minutes" (did you mean "30m"?)',
      at: '30 minutes',
    },
    {
      name: 'duration below the minimum',
      lines: [...BASE, 'session:', '  idleTimeout: 500ms'],
      path: 'session.idleTimeout',
      message: 'must be at least 1s, got "500ms"',
      at: '500ms',
    },
    {
      name: 'idle timeout longer than the absolute timeout',
      lines: [...BASE, 'session:', '  idleTimeout: 2h', '  absoluteTimeout: 1h'],
      path: 'session.idleTimeout',
      message: 'must not exceed session.absoluteTimeout',
      at: '2h',
    },
    {
      name: 'unknown key with a suggestion points at the key',
      lines: [...BASE, 'session:', '  idelTimeout: 30m'],
      path: 'session.idelTimeout',
      message: 'unknown key "idelTimeout" (did you mean "idleTimeout"?)',
      at: 'idelTimeout',
    },
    {
      name: 'unknown top-level key without an obvious suggestion',
      lines: [...BASE, 'frobnicate: true'],
      path: 'frobnicate',
      message: 'unknown key "frobnicate"',
      at: 'frobnicate',
    },
    {
      name: 'unknown key inside a rule',
      lines: [...BASE, 'logout:', '  - path: /logout', '    method: [POST]'],
      path: 'logout[0].method',
      message: 'unknown key "method" (did you mean "methods"?)',
      at: 'method:',
    },
    {
      name: 'unknown key in the mapping form of logout',
      lines: [...BASE, 'logout:', '  rules: []', '  clearSiteDate: true'],
      path: 'logout.clearSiteDate',
      message: 'unknown key "clearSiteDate" (did you mean "clearSiteData"?)',
      at: 'clearSiteDate',
    },
    {
      name: 'missing upstream points at the document',
      lines: ['secrets: ["${COATCHECK_SECRET}"]'],
      path: 'upstream',
      message: 'required',
      at: 'secrets',
    },
    {
      name: 'missing redis url points at the nearest parent key',
      lines: [...BASE, 'store:', '  kind: redis'],
      path: 'store.url',
      message: 'required when kind is "redis" (or give sentinel or cluster instead)',
      at: 'store',
    },
    {
      name: 'a url for the memory store',
      lines: [...BASE, 'store:', '  url: "redis://x:6379"'],
      path: 'store.url',
      message: 'only used when kind is "redis"',
      at: '"redis://x:6379"',
    },
    {
      name: 'a redis url with the wrong scheme (never echoed)',
      lines: [...BASE, 'store:', '  kind: redis', '  url: "http://:hunter2@x:6379"'],
      path: 'store.url',
      message: 'expected a redis:// or rediss:// URL, got a "http" URL',
      at: '"http://:hunter2',
    },
    {
      name: 'url and sentinel together',
      lines: [...BASE, 'store:', '  kind: redis', '  url: "redis://x:6379"', '  sentinel: { name: m, nodes: ["a:26379"] }'],
      path: 'store.sentinel',
      message: 'give only one of url, sentinel or cluster (url is given already)',
      at: '{ name: m',
    },
    {
      name: 'sentinel and cluster together',
      lines: [...BASE, 'store:', '  kind: redis', '  sentinel: { name: m, nodes: ["a:26379"] }', '  cluster: { nodes: ["a:7000"] }'],
      path: 'store.cluster',
      message: 'give only one of url, sentinel or cluster (sentinel is given already)',
      at: '{ nodes: ["a:7000"] }',
    },
    {
      name: 'a sentinel without nodes',
      lines: [...BASE, 'store:', '  kind: redis', '  sentinel: { name: m, nodes: [] }'],
      path: 'store.sentinel.nodes',
      message: 'at least one sentinel address is required',
      at: '[]',
    },
    {
      name: 'a sentinel without a name',
      lines: [...BASE, 'store:', '  kind: redis', '  sentinel: { nodes: ["a:26379"] }'],
      path: 'store.sentinel.name',
      message: 'required',
      at: 'sentinel',
    },
    {
      name: 'a malformed cluster node',
      lines: [...BASE, 'store:', '  kind: redis', '  cluster:', '    nodes: ["a:7000", "redis://b:7001"]'],
      path: 'store.cluster.nodes[1]',
      message: 'expected a cluster node address "host:port" (or "[::1]:port"), got "redis://b:7001"',
      at: '"redis://b:7001"',
    },
    {
      name: 'a cluster node port out of range',
      lines: [...BASE, 'store:', '  kind: redis', '  cluster: { nodes: ["a:70000"] }'],
      path: 'store.cluster.nodes[0]',
      message: 'expected a cluster node address "host:port" (or "[::1]:port"), got "a:70000"',
      at: '"a:70000"',
    },
    {
      name: 'a short admin token',
      lines: [...BASE, 'admin: { listen: "127.0.0.1:9090", token: short-token }'],
      path: 'admin.token',
      message: 'the admin token needs at least 32 characters, got 11',
      at: 'short-token',
    },
    {
      name: 'an admin token without the admin listener',
      lines: [...BASE, 'admin:', '  token: "0123456789abcdef0123456789abcdef"'],
      path: 'admin.token',
      message: 'needs admin.listen: the sessions API is served on the admin listener',
      at: '"0123456789abcdef0123456789abcdef"',
    },
    {
      name: 'a scope that does not exist',
      lines: [...BASE, 'logout: [{ path: /logout, scope: everyone }]'],
      path: 'logout[0].scope',
      message: 'expected one of "session", "user", "others", got "everyone"',
      at: 'everyone',
    },
    {
      name: 'a user source of neither kind',
      lines: [...BASE, 'login: [{ path: /login, user: {} }]'],
      path: 'login[0].user',
      message: 'give exactly one of formField (a urlencoded or multipart form field) or jsonField (a key of a JSON body)',
      at: '{}',
    },
    {
      name: 'a JSON field that is no dotted path',
      lines: [...BASE, 'login: [{ path: /login, user: { jsonField: "user..email" } }]'],
      path: 'login[0].user.jsonField',
      message: 'expected a key or a dotted path of keys, such as email or user.email',
      at: '"user..email"',
    },
    {
      name: 'maxPerUser below 1',
      lines: [...BASE, 'session: { maxPerUser: -3 }'],
      path: 'session.maxPerUser',
      message: 'must be at least 1, got -3',
      at: '-3',
    },
    {
      name: 'db with a cluster',
      lines: [...BASE, 'store:', '  kind: redis', '  cluster: { nodes: ["a:7000"] }', '  db: 9'],
      path: 'store.db',
      message: 'Redis Cluster has database 0 only',
      at: '9',
    },
    {
      name: 'a password next to a url',
      lines: [...BASE, 'store:', '  kind: redis', '  url: "redis://x:6379"', '  password: hunter2'],
      path: 'store.password',
      message: 'not used with url: put it in the URL (redis://user:password@host:port/db)',
      at: 'hunter2',
    },
    {
      name: 'a hash tag in the prefix with a cluster',
      lines: [...BASE, 'store:', '  kind: redis', '  cluster: { nodes: ["a:7000"] }', '  prefix: "{cc}:"'],
      path: 'store.prefix',
      message: 'must not contain "{" or "}" with cluster: coatcheck places its own hash tags',
      at: '"{cc}:"',
    },
    {
      name: 'replicas below 0',
      lines: [...BASE, 'store:', '  kind: redis', '  url: "redis://x:6379"', '  replicas: -1'],
      path: 'store.replicas',
      message: 'must be at least 0, got -1',
      at: '-1',
    },
    {
      name: 'replicaTimeout without replicas',
      lines: [...BASE, 'store:', '  kind: redis', '  url: "redis://x:6379"', '  replicaTimeout: 1s'],
      path: 'store.replicaTimeout',
      message: 'only used when replicas is above 0',
      at: '1s',
    },
    {
      name: 'replicas with the memory store',
      lines: [...BASE, 'store:', '  kind: memory', '  replicas: 5'],
      path: 'store.replicas',
      message: 'only used when kind is "redis"',
      at: '5',
    },
    {
      name: 'a sentinel with the memory store',
      lines: [...BASE, 'store:', '  sentinel: { name: m, nodes: ["a:26379"] }'],
      path: 'store.sentinel',
      message: 'only used when kind is "redis"',
      at: '{ name: m',
    },
    {
      name: 'several workers with the memory store',
      lines: [...BASE, 'workers: 4'],
      path: 'workers',
      message: 'needs store kind "redis": the memory store lives in one process, so several workers would not share sessions',
      at: '4',
    },
    {
      name: 'workers that is neither a count nor auto',
      lines: [...BASE, 'store:', '  kind: redis', '  url: "redis://x:6379"', 'workers: many'],
      path: 'workers',
      message: 'expected a number of processes (1 or more) or "auto" (one per CPU), got "many"',
      at: 'many',
    },
    {
      name: 'a key with no value',
      lines: ['upstream:', 'secrets: ["${COATCHECK_SECRET}"]'],
      path: 'upstream',
      message: 'expected a string, got null',
      at: 'upstream',
    },
    {
      name: 'upstream with a path',
      lines: ['upstream: "http://app:3000/base"', 'secrets: ["${COATCHECK_SECRET}"]'],
      path: 'upstream',
      message: /^expected an origin without path, query or credentials .*got "http:\/\/app:3000\/base"$/,
      at: '"http',
    },
    {
      name: 'upstream that is not http',
      lines: ['upstream: "ftp://app"', 'secrets: ["${COATCHECK_SECRET}"]'],
      path: 'upstream',
      message: 'expected an http:// or https:// URL, got "ftp://app"',
      at: '"ftp',
    },
    {
      name: 'a boolean written as yes',
      lines: [...BASE, 'cookie:', '  secure: yes'],
      path: 'cookie.secure',
      message: 'expected true or false, got "yes"',
      at: 'yes',
    },
    {
      name: 'an enum value in the wrong case',
      lines: [...BASE, 'cookie:', '  sameSite: Lax'],
      path: 'cookie.sameSite',
      message: 'expected one of "strict", "lax", "none", got "Lax"',
      at: 'Lax',
    },
    {
      name: 'a string where a number belongs',
      lines: [...BASE, 'store:', '  maxSessions: many'],
      path: 'store.maxSessions',
      message: 'expected a number, got "many"',
      at: 'many',
    },
    {
      name: 'a fraction where a whole number belongs',
      lines: [...BASE, 'limits:', '  maxCookiesPerSession: 2.5'],
      path: 'limits.maxCookiesPerSession',
      message: 'expected a whole number, got 2.5',
      at: '2.5',
    },
    {
      name: 'a status out of range',
      lines: [...BASE, 'invalidSession:', '  status: 302'],
      path: 'invalidSession.status',
      message: 'must be at least 400, got 302',
      at: '302',
    },
    {
      name: 'listen without a port: a bare port, quoted',
      lines: ['listen: "8080"', ...BASE],
      path: 'listen',
      message: 'expected "host:port", ":port" or "[::1]:port", got "8080" (did you mean ":8080" for every interface, or "127.0.0.1:8080" for this machine only? Quote it)',
      at: '"8080"',
    },
    {
      name: 'listen with a port out of range',
      lines: ['listen: ":70000"', ...BASE],
      path: 'listen',
      message: 'expected "host:port", ":port" or "[::1]:port", got ":70000"',
      at: '":70000"',
    },
    {
      name: 'a rule with both path and prefix',
      lines: [...BASE, 'logout:', '  - path: /a', '    prefix: /b'],
      path: 'logout[0]',
      message: 'a rule needs exactly one of "path" or "prefix"',
      at: 'path: /a',
    },
    {
      name: 'a rule with neither path nor prefix',
      lines: [...BASE, 'login:', '  - path: /login', '  - methods: [POST]'],
      path: 'login[1]',
      message: 'a rule needs exactly one of "path" or "prefix"',
      at: 'methods',
    },
    {
      name: 'a rule in the mapping form of logout',
      lines: [...BASE, 'logout:', '  rules:', '    - prefix: account/logout'],
      path: 'logout.rules[0].prefix',
      message: 'must start with "/"',
      at: 'account/logout',
    },
    {
      name: 'a rule with an empty method list',
      lines: [...BASE, 'login:', '  - path: /login', '    methods: []'],
      path: 'login[0].methods',
      message: 'needs at least 1 item',
      at: '[]',
    },
    {
      name: 'a rule that is not a mapping',
      lines: [...BASE, 'logout:', '  - /logout'],
      path: 'logout[0]',
      message: 'expected a mapping, got "/logout"',
      at: '/logout',
    },
    {
      name: 'logout that is neither form',
      lines: [...BASE, 'logout: /logout'],
      path: 'logout',
      message: 'expected a list of rules, or a mapping with "rules", "onCookieCleared" and "clearSiteData", got "/logout"',
      at: '/logout',
    },
    {
      name: 'managed that is neither "*" nor a list',
      lines: [...BASE, 'session:', '  managed: all'],
      path: 'session.managed',
      message: 'expected "*" or a list of cookie names, got "all"',
      at: 'all',
    },
    {
      name: 'managed as an empty list',
      lines: [...BASE, 'session:', '  managed: []'],
      path: 'session.managed',
      message: 'list at least one cookie name, or use "*"',
      at: '[]',
    },
    {
      name: 'managed with a name that is not a cookie name',
      lines: [...BASE, 'session:', '  managed: [JSESSIONID, "bad name"]'],
      path: 'session.managed[1]',
      message: 'expected a cookie name (an RFC 6265 token)',
      at: '"bad name"',
    },
    {
      name: 'a cookie both managed and passthrough',
      lines: [...BASE, 'session:', '  managed: [JSESSIONID, theme]', '  passthrough: [_ga*, th*]'],
      path: 'session.passthrough[1]',
      message: '"theme" is both managed and passthrough',
      at: 'th*',
    },
    {
      name: 'the ticket listed as managed',
      lines: [...BASE, 'cookie:', '  name: cc', 'session:', '  managed: [JSESSIONID, cc]'],
      path: 'session.managed[1]',
      message: 'must not include the ticket cookie "cc"',
      at: 'cc]',
    },
    {
      name: 'a passthrough pattern matching the ticket',
      lines: [...BASE, 'session:', '  passthrough: ["__Host-*"]'],
      path: 'session.passthrough[0]',
      message: 'must not match the ticket cookie "__Host-coatcheck"',
      at: '"__Host-*"',
    },
    {
      name: '__Host- cookie without secure',
      lines: [...BASE, 'cookie:', '  secure: false'],
      path: 'cookie.secure',
      message: 'the "__Host-" prefix requires secure: true',
      at: 'false',
    },
    {
      name: '__Host- cookie with a domain',
      lines: [...BASE, 'cookie:', '  domain: example.com'],
      path: 'cookie.domain',
      message: 'the "__Host-" prefix forbids a domain',
      at: 'example.com',
    },
    {
      name: '__Secure- cookie without secure',
      lines: [...BASE, 'cookie:', '  name: __Secure-cc', '  secure: false'],
      path: 'cookie.secure',
      message: 'the "__Secure-" prefix requires secure: true',
      at: 'false',
    },
    {
      name: 'sameSite none without secure',
      lines: [...BASE, 'cookie:', '  name: cc', '  secure: false', '  sameSite: none'],
      path: 'cookie.sameSite',
      message: 'sameSite: none requires secure: true (browsers drop it otherwise)',
      at: 'none',
    },
    {
      name: 'a cookie name that is not a token',
      lines: [...BASE, 'cookie:', '  name: "my ticket"'],
      path: 'cookie.name',
      message: 'expected a cookie name (an RFC 6265 token)',
      at: '"my ticket"',
    },
    {
      name: 'a short secret: index and length only',
      lines: ['upstream: "http://127.0.0.1:3000"', 'secrets:', '  - "${COATCHECK_SECRET}"', '  - "too-short-Hunter2"'],
      path: 'secrets[1]',
      message: 'a secret needs at least 32 characters, got 17',
      at: '"too-short',
    },
    {
      name: 'a secret that is not a string',
      lines: ['upstream: "http://127.0.0.1:3000"', 'secrets: [12345678901234567890123456789012345]'],
      path: 'secrets[0]',
      message: 'expected a string, got a number',
      at: '1234',
    },
    {
      name: 'no secrets',
      lines: ['upstream: "http://127.0.0.1:3000"', 'secrets: []'],
      path: 'secrets',
      message: 'at least one secret is required',
      at: '[]',
    },
    {
      name: 'an unset variable without default',
      lines: ['upstream: "http://${APP_HOST}:3000"', 'secrets: ["${COATCHECK_SECRET}"]'],
      path: 'upstream',
      message: 'environment variable "APP_HOST" is not set (give a default with ${NAME:-default})',
      at: '"http',
    },
    {
      name: 'a malformed variable reference',
      lines: ['upstream: "http://${APP HOST}:3000"', 'secrets: ["${COATCHECK_SECRET}"]'],
      path: 'upstream',
      message: /^malformed variable reference/,
      at: '"http',
    },
    {
      name: 'an unterminated variable reference',
      lines: ['upstream: "http://${APP_HOST:3000"', 'secrets: ["${COATCHECK_SECRET}"]'],
      path: 'upstream',
      message: /^unterminated "\$\{"/,
      at: '"http',
    },
    {
      name: 'duplicate keys',
      lines: [...BASE, 'cookie:', '  name: a', '  secure: true', '  name: b'],
      path: 'cookie.name',
      message: 'duplicate key "name"',
      at: 'name: b',
    },
    {
      name: 'a duplicate top-level key that does not follow its first occurrence',
      lines: ['upstream: "http://127.0.0.1:3000"', 'secrets: ["${COATCHECK_SECRET}"]', 'upstream: "http://127.0.0.1:3001"'],
      path: 'upstream',
      message: 'duplicate key "upstream"',
      at: 'upstream: "http://127.0.0.1:3001"',
    },
    {
      name: 'a YAML syntax error',
      lines: [...BASE, 'cookie:', '  name: a', ' secure: true'],
      path: '',
      message: 'All mapping items must start at the same column (usually indentation: keys of one mapping, and items of one list, must start at the same column)',
      at: ' secure',
    },
    {
      name: 'an alias to an unknown anchor',
      lines: [...BASE, 'cookie:', '  name: *ticket'],
      path: '',
      message: 'unknown alias "*ticket" (no anchor "&ticket" before it; a value that starts with "*" or "&", such as a "*" pattern, must be quoted: "*")',
      at: '*ticket',
    },
    // Friendlier messages (issue 10 §5): durations name their units and suggest one; a bare
    // port suggests ":port"; YAML errors carry a hint at their usual cause.
    ...(
      [
        ['1h30m', '90m'],
        ['1.5h', '90m'],
        ['2 hours', '2h'],
        ['5S', '5s'],
        ['1m30s', '90s'],
        ['1.5s', '1500ms'],
      ] as const
    ).map(([written, meant]): Case => ({
      name: `duration ${JSON.stringify(written)} suggests ${JSON.stringify(meant)}`,
      lines: [...BASE, 'session:', `  idleTimeout: ${written}`],
      path: 'session.idleTimeout',
      message: `expected a duration: a whole number and one unit (ms, s, m, h or d, e.g. "30m"), or whole seconds; got ${JSON.stringify(written)} (did you mean "${meant}"?)`,
      at: written,
    })),
    {
      name: 'a duration with no clear reading suggests nothing',
      lines: [...BASE, 'session:', '  idleTimeout: soon'],
      path: 'session.idleTimeout',
      message: 'expected a duration: a whole number and one unit (ms, s, m, h or d, e.g. "30m"), or whole seconds; got "soon"',
      at: 'soon',
    },
    {
      name: 'a duration of the wrong type lists the units too',
      lines: [...BASE, 'session:', '  idleTimeout: true'],
      path: 'session.idleTimeout',
      message: 'expected a duration: a whole number and one unit (ms, s, m, h or d, e.g. "30m"), or whole seconds, got true',
      at: 'true',
    },
    {
      name: 'listen: 8080, a number, suggests ":8080"',
      lines: ['listen: 8080', ...BASE],
      path: 'listen',
      message: 'expected "host:port", ":port" or "[::1]:port", got the number 8080 (did you mean ":8080" for every interface, or "127.0.0.1:8080" for this machine only? Quote it)',
      at: '8080',
    },
    {
      name: 'admin.listen: 9090, a number, suggests ":9090"',
      lines: [...BASE, 'admin:', '  listen: 9090'],
      path: 'admin.listen',
      message: /^expected "host:port", ":port" or "\[::1\]:port", got the number 9090 \(did you mean ":9090"/,
      at: '9090',
    },
    {
      name: 'listen of the wrong type',
      lines: ['listen: [a]', ...BASE],
      path: 'listen',
      message: 'expected "host:port", ":port" or "[::1]:port", got a list',
      at: '[a]',
    },
    {
      name: 'YAML: a tab as indentation',
      lines: [...BASE, 'cookie:', '\tname: a'],
      path: '',
      message: 'Tabs are not allowed as indentation (indent with spaces: YAML does not allow tabs there)',
      at: '\tname',
    },
    {
      name: 'YAML: an unquoted ": " in a value',
      lines: [...BASE, 'invalidSession:', '  redirect: /login?next=a: b'],
      path: '',
      message: 'Nested mappings are not allowed in compact mappings (usually a value holding ": " that is not quoted, or a line indented deeper than the key above it)',
      at: '/login',
    },
    {
      name: 'YAML: an unquoted "*"',
      lines: [...BASE, 'session:', '  managed: *'],
      path: '',
      message: /^Alias cannot be an empty string \(a value that starts with "\*" or "&", such as a "\*" pattern, must be quoted: "\*"\)$/,
      at: '*',
    },
    {
      name: 'YAML: a " #" inside a flow list starts a comment',
      lines: [...BASE, 'session:', '  passthrough: [a, #b]', 'log: {}'],
      path: '',
      message: /\(usually an unclosed "\[" or "\{", or a " #" inside one that starts a comment: quote such values\)$/,
      at: 'log: {}',
    },
    {
      name: 'YAML: a list item out of line',
      lines: [...BASE, 'logout:', '- path: /x', ' methods: [GET]'],
      path: '',
      message: 'Sequence item without - indicator (usually indentation: every "- " of a list must start at the same column; or a key without ":")',
      at: ' methods',
    },
    {
      name: 'YAML: a value starting with "@"',
      lines: [...BASE, 'invalidSession:', '  redirect: @login'],
      path: '',
      message: 'Plain value cannot start with reserved character @ (a value that starts with "@", "`", "%", "|" or ">" must be quoted)',
      at: '@login',
    },
    // Values that go into a header (issue 10 §5).
    {
      name: 'a redirect with CR LF (header injection)',
      lines: [...BASE, 'invalidSession:', '  redirect: "/x\\r\\nSet-Cookie: a=b"'],
      path: 'invalidSession.redirect',
      message: 'holds a control character (U+000D), which cannot go into a Location header',
      at: '"/x',
    },
    {
      name: 'a redirect with a tab',
      lines: [...BASE, 'invalidSession:', '  redirect: "/x\\ty"'],
      path: 'invalidSession.redirect',
      message: 'holds a control character (U+0009), which cannot go into a Location header',
      at: '"/x',
    },
    {
      name: 'a redirect with a non-ASCII host',
      lines: [...BASE, 'invalidSession:', '  redirect: "https://bücher.example/signed-out"'],
      path: 'invalidSession.redirect',
      message: 'has a non-ASCII character ("ü") in its scheme or host; write an internationalized host name in its ASCII "xn--" form',
      at: '"https',
    },
    {
      name: 'a redirect with a non-ASCII host, scheme-relative',
      lines: [...BASE, 'invalidSession:', '  redirect: "//bücher.example/"'],
      path: 'invalidSession.redirect',
      message: /^has a non-ASCII character \("ü"\) in its scheme or host/,
      at: '"//',
    },
    {
      name: 'a redirect with an unpaired surrogate',
      lines: [...BASE, 'invalidSession:', '  redirect: "/x\\ud800"'],
      path: 'invalidSession.redirect',
      message: 'holds an unpaired UTF-16 surrogate, which is not a character',
      at: '"/x',
    },
    ...(
      [
        ['"example.com; Secure"', 'holds ";", which a cookie\'s Domain cannot hold; expected a domain name such as "example.com"'],
        ['"exa mple.com"', 'holds a space, which a cookie\'s Domain cannot hold; expected a domain name such as "example.com"'],
        ['"example.com\\n"', 'holds a control character (U+000A); expected a domain name such as "example.com"'],
        ['"bücher.example"', 'has a non-ASCII character ("ü"); write an internationalized domain name in its ASCII "xn--" form'],
        ['"example.com,evil.com"', 'holds ",", which a cookie\'s Domain cannot hold; expected a domain name such as "example.com"'],
        ['"example..com"', 'expected a domain name such as "example.com" (labels separated by single dots)'],
      ] as const
    ).map(([written, message]): Case => ({
      name: `cookie.domain ${written} is refused`,
      lines: [...BASE, 'cookie:', '  name: cc', `  domain: ${written}`],
      path: 'cookie.domain',
      message,
      at: written,
    })),
    {
      name: 'a top level that is not a mapping',
      lines: ['- upstream: "http://127.0.0.1:3000"'],
      path: '',
      message: 'expected a mapping of configuration keys at the top level',
      at: '- upstream',
    },
  ];

  for (const c of cases) {
    it(c.name, () => {
      const got = problems(c.lines, c.env ?? ENV);
      assert.equal(got.length, 1, JSON.stringify(got));
      const [p] = got as [ConfigProblem];
      assert.equal(p.path, c.path);
      if (typeof c.message === 'string') assert.equal(p.message, c.message);
      else assert.match(p.message, c.message);
      const where = c.at === null ? {} : pos(c.lines, c.at);
      assert.deepEqual({ line: p.line, col: p.col }, c.at === null ? { line: undefined, col: undefined } : where);
    });
  }

  it('the formatted message is file:line:col: path: message', () => {
    const err = failure([...BASE, 'session:', '  idleTimeout: 30 minutes']);
    assert.equal(
      err.message,
      'invalid configuration (1 problem):\n  test.yaml:4:16: session.idleTimeout: expected a duration: a whole number and one unit (ms, s, m, h or d, e.g. "30m"), or whole seconds; got "30 minutes" (did you mean "30m"?)',
    );
    assert.equal(err.code, 'COATCHECK_ERR_CONFIG_INVALID');
  });

  it('YAML: an unclosed quote gets its hint (placed at the end of the document)', () => {
    const got = problems([...BASE, 'invalidSession:', '  redirect: "/login', 'log: {}']);
    assert.deepEqual(
      got.map((p) => p.message),
      ['Missing closing "quote (a quoted value is not closed on its line)'],
    );
  });

  it('websocket keys are checked like the rest: each problem at its key path and line:col, unknown keys rejected', () => {
    const lines = [...BASE, 'websocket:', '  enabled: "yes"', '  maxConnections: 0', '  maxConections: 5'];
    const got = problems(lines);
    const at = (path: string) => got.find((p) => p.path === path);
    // A bad value is located at the value.
    assert.deepEqual({ line: at('websocket.enabled')?.line, col: at('websocket.enabled')?.col }, pos(lines, '"yes"'));
    const zero = pos(lines, 'maxConnections: 0');
    assert.deepEqual({ line: at('websocket.maxConnections')?.line, col: at('websocket.maxConnections')?.col }, { line: zero.line, col: zero.col + 'maxConnections: '.length });
    assert.match(at('websocket.maxConnections')?.message ?? '', /greater than 0/);
    assert.ok(got.some((p) => p.path.startsWith('websocket') && /maxConections/.test(`${p.path} ${p.message}`)), JSON.stringify(got));
  });

  it('an empty file (or only comments) reports the required keys, without a position', () => {
    for (const text of ['', '# nothing here\n', '---\n']) {
      assert.deepEqual(problems(text), [
        { path: 'upstream', message: 'required' },
        { path: 'secrets', message: 'required' },
      ]);
    }
  });

  it('a file that does not exist is one problem', async () => {
    await assert.rejects(loadConfigFile('/nonexistent/coatcheck.yaml', ENV), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.deepEqual(err.problems, [{ path: '', message: 'configuration file not found' }]);
      assert.equal(err.file, '/nonexistent/coatcheck.yaml');
      return true;
    });
  });

  it('a directory, or an unreadable file, is one problem', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'coatcheck-config-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await assert.rejects(loadConfigFile(dir, ENV), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.problems.length, 1);
      assert.match(err.problems[0]?.message ?? '', /directory/);
      return true;
    });
    if (process.getuid?.() !== 0) {
      const file = join(dir, 'locked.yaml');
      await writeFile(file, BASE.join('\n'));
      await chmod(file, 0o000);
      await assert.rejects(loadConfigFile(file, ENV), (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.deepEqual(err.problems, [{ path: '', message: 'configuration file is not readable (permission denied)' }]);
        return true;
      });
    }
  });

  it('anchors and aliases work; alias bombs are refused', () => {
    const { config } = load([...BASE, 'login: &rules [{ path: /login }]', 'logout: *rules']);
    assert.deepEqual(config.logout.rules, config.login);
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]', 'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]', 'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]'];
    const got = problems([...BASE, ...bomb]);
    assert.equal(got.length, 1, JSON.stringify(got));
    assert.match(got[0]?.message ?? '', /^cannot read the document: .*alias/i);
  });

  it('a file on disk loads', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'coatcheck-config-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'c.yaml');
    await writeFile(file, `\ufeff${BASE.join('\n')}\n`);
    assert.deepEqual((await loadConfigFile(file, ENV)).config, DEFAULTS);
  });
});

describe('several problems at once', () => {
  it('reports every problem, in document order, including cross-field checks', () => {
    const lines = [
      'listen: "nope"', // 1
      'upstream: "http://127.0.0.1:3000"',
      'store:',
      '  kind: redis', // no url
      '  timeout: soon', // 5
      'secrets:',
      '  - "${COATCHECK_SECRET}"',
      '  - "${MISSING_SECRET}"',
      'cookie:',
      '  secure: false', // 10 (__Host-)
      '  sameSite: Lax',
      'session:',
      '  idelTimeout: 30m',
      'logout:',
      '  - path: /a', // 15
      '    prefix: /b',
      'log:',
      '  level: loud',
    ];
    const got = problems(lines);
    assert.deepEqual(
      got.map((p) => [p.path, p.line, p.col]),
      [
        ['listen', 1, 9],
        ['store.url', 3, 1],
        ['store.timeout', 5, 12],
        ['secrets[1]', 8, 5],
        ['cookie.secure', 10, 11],
        ['cookie.sameSite', 11, 13],
        ['session.idelTimeout', 13, 3],
        ['logout[0]', 15, 5],
        ['log.level', 18, 10],
      ],
    );
    const err = failure(lines);
    assert.match(err.message, /^invalid configuration \(9 problems\):/);
  });

  it('a failed interpolation is not reported a second time by the schema', () => {
    const got = problems(['upstream: "${UPSTREAM}"', 'secrets: ["${SECRET_A}", "${SECRET_B}"]']);
    assert.deepEqual(
      got.map((p) => p.path),
      ['upstream', 'secrets[0]', 'secrets[1]'],
    );
    assert.ok(got.every((p) => p.message.includes('is not set')));
  });
});

describe('environment interpolation', () => {
  const cases: { text: string; env: Record<string, string>; want: string; defaulted?: string[] }[] = [
    { text: 'plain', env: {}, want: 'plain' },
    { text: '${A}', env: { A: 'x' }, want: 'x' },
    { text: 'a-${A}-${B}-z', env: { A: '1', B: '2' }, want: 'a-1-2-z' },
    { text: '${A:-fallback}', env: {}, want: 'fallback', defaulted: ['A'] },
    { text: '${A:-fallback}', env: { A: '' }, want: 'fallback', defaulted: ['A'] },
    { text: '${A:-fallback}', env: { A: 'set' }, want: 'set' },
    { text: '${A:-}', env: {}, want: '', defaulted: ['A'] },
    { text: '${A:-redis://h:1/0}', env: {}, want: 'redis://h:1/0', defaulted: ['A'] },
    { text: '${A}', env: { A: '' }, want: '' },
    { text: '$$', env: {}, want: '$' },
    { text: '$${A}', env: { A: 'x' }, want: '${A}' },
    { text: 'pa$$word$', env: {}, want: 'pa$word$' },
    { text: 'cost: $5', env: {}, want: 'cost: $5' },
    { text: '${A}', env: { A: '${B}' }, want: '${B}' }, // no recursive expansion
    { text: '${A:-x}', env: { A: '$${B}' }, want: '$${B}' }, // a value is never re-read
    // $ at the end, and runs of $
    { text: '$', env: {}, want: '$' },
    { text: 'a$', env: {}, want: 'a$' },
    { text: 'x${A}$', env: { A: '1' }, want: 'x1$' },
    { text: '$$$', env: {}, want: '$$' },
    { text: '$$$$', env: {}, want: '$$' },
    { text: '$${', env: {}, want: '${' },
    { text: '$$${A}', env: { A: 'x' }, want: '$x' },
    { text: '$A', env: { A: 'x' }, want: '$A' }, // only the braced form
    // ${A:-}: unset and empty both take the (empty) default; set does not
    { text: '${A:-}', env: { A: '' }, want: '', defaulted: ['A'] },
    { text: '${A:-}', env: { A: 'v' }, want: 'v' },
    // nested-looking defaults are not nested: the reference ends at the first "}"
    { text: '${A:-${B}}', env: {}, want: '${B}', defaulted: ['A'] },
    { text: '${A:-${B}}', env: { B: 'w' }, want: '${B}', defaulted: ['A'] },
    { text: '${A:-${B}}', env: { A: 'v' }, want: 'v}' },
    { text: '${A:-}}', env: {}, want: '}', defaulted: ['A'] },
    { text: '${A:-a:-b}', env: {}, want: 'a:-b', defaulted: ['A'] }, // the first ":-" separates
    { text: '${A:-x}${B:-y}', env: {}, want: 'xy', defaulted: ['A', 'B'] },
    { text: '${_}', env: { _: 'u' }, want: 'u' },
  ];
  for (const c of cases) {
    it(`${JSON.stringify(c.text)} with ${JSON.stringify(c.env)} → ${JSON.stringify(c.want)}`, () => {
      assert.deepEqual(interpolate(c.text, c.env), { value: c.want, defaulted: c.defaulted ?? [] });
    });
  }

  const UNSET = 'environment variable "A" is not set (give a default with ${NAME:-default})';
  const MALFORMED = 'malformed variable reference (write ${NAME} or ${NAME:-default}, and $$ for a literal "$")';
  const UNTERMINATED = 'unterminated "${" (write ${NAME} or ${NAME:-default}, and $$ for a literal "$")';
  const errors: { text: string; env: Record<string, string>; error: string }[] = [
    { text: '${A}', env: {}, error: UNSET }, // unset is an error, empty (above) is not
    { text: 'x-${A}-y', env: { B: 'b' }, error: UNSET },
    { text: '${}', env: {}, error: MALFORMED },
    { text: '${ A }', env: { A: 'x' }, error: MALFORMED },
    { text: '${1A}', env: {}, error: MALFORMED },
    { text: '${A-x}', env: {}, error: MALFORMED }, // only ":-" gives a default
    { text: '${A:=x}', env: {}, error: MALFORMED },
    { text: '${', env: {}, error: UNTERMINATED },
    { text: '${A', env: { A: 'x' }, error: UNTERMINATED },
    { text: '${MISSING}${', env: {}, error: UNTERMINATED }, // a broken reference is reported instead of unset names
  ];
  for (const c of errors) {
    it(`${JSON.stringify(c.text)} with ${JSON.stringify(c.env)} is refused`, () => {
      assert.deepEqual(interpolate(c.text, c.env), { error: c.error });
    });
  }

  it('names every unset variable, never the text', () => {
    assert.deepEqual(interpolate('secret-${A}-${B}', {}), {
      error: 'environment variables "A", "B" are not set (give a default with ${NAME:-default})',
    });
  });

  it('works in nested values, quoted or not, and in lists', () => {
    const { config } = load(
      [
        'listen: ${HOST:-127.0.0.1}:${PORT}',
        "upstream: 'http://${APP:-app}:3000'",
        'secrets:',
        '  - ${S1}',
        '  - "${S2}"',
        'store:',
        '  prefix: "cc$$"',
        'session:',
        '  idleTimeout: ${IDLE:-15m}',
        '  passthrough: ["${P:-_ga*}"]',
      ],
      { PORT: '9090', S1: SECRET, S2: SECRET2 },
    );
    assert.deepEqual(config.listen, { host: '127.0.0.1', port: 9090 });
    assert.equal(config.upstream, 'http://app:3000');
    assert.deepEqual(config.secrets, [SECRET, SECRET2]);
    assert.equal(config.store.prefix, 'cc$');
    assert.equal(config.session.idleTimeout, 15 * 60_000);
    assert.deepEqual(config.session.passthrough, ['_ga*']);
  });

  it('does not interpolate keys', () => {
    const got = problems([...BASE, '${KEY}: 1'], { ...ENV, KEY: 'trustProxy' });
    assert.deepEqual(got.map((p) => [p.path, p.message]), [['${KEY}', 'unknown key "${KEY}"']]);
  });

  it('reports an unset variable at its value, with its path', () => {
    const lines = [...BASE, 'store:', '  kind: redis', '  url: "${REDIS_URL}"'];
    assert.deepEqual(problems(lines), [
      {
        path: 'store.url',
        message: 'environment variable "REDIS_URL" is not set (give a default with ${NAME:-default})',
        ...pos(lines, '"${REDIS_URL}"'),
      },
    ]);
  });
});

describe('durations', () => {
  const parse: [unknown, number | undefined][] = [
    ['250ms', 250],
    ['30s', 30_000],
    ['30m', 1_800_000],
    ['12h', 43_200_000],
    ['7d', 604_800_000],
    ['0ms', 0],
    ['90', 90_000],
    [90, 90_000],
    [0, 0],
    [' 5m ', 300_000],
    ['30 minutes', undefined],
    ['1.5h', undefined],
    ['-5s', undefined],
    ['5S', undefined],
    ['5w', undefined],
    ['', undefined],
    [1.5, undefined],
    [-1, undefined],
    ['99999999999999999999d', undefined],
    ['9007199254740991', undefined], // seconds that overflow as milliseconds
    [9_007_199_254_740_991, undefined],
    [null, undefined],
    [true, undefined],
  ];
  for (const [input, want] of parse) {
    it(`parseDuration(${JSON.stringify(input)}) = ${want}`, () => assert.equal(parseDuration(input), want));
  }

  const format: [number, string][] = [
    [0, '0ms'],
    [250, '250ms'],
    [1500, '1500ms'],
    [1000, '1s'],
    [90_000, '90s'],
    [1_800_000, '30m'],
    [5_400_000, '90m'],
    [43_200_000, '12h'],
    [86_400_000, '1d'],
    [604_800_000, '7d'],
  ];
  for (const [ms, want] of format) {
    it(`formatDuration(${ms}) = ${want}, which parses back`, () => {
      assert.equal(formatDuration(ms), want);
      assert.equal(parseDuration(want), ms);
    });
  }

  it('integer seconds in YAML are seconds', () => {
    const { config } = load([...BASE, 'session:', '  idleTimeout: 600', '  absoluteTimeout: "3600"']);
    assert.equal(config.session.idleTimeout, 600_000);
    assert.equal(config.session.absoluteTimeout, 3_600_000);
  });
});

describe('listen', () => {
  const cases: [string, { host: string; port: number } | undefined][] = [
    ['127.0.0.1:8080', { host: '127.0.0.1', port: 8080 }],
    [':8080', { host: '0.0.0.0', port: 8080 }],
    ['[::1]:8080', { host: '::1', port: 8080 }],
    ['[::]:443', { host: '::', port: 443 }],
    ['localhost:0', { host: 'localhost', port: 0 }],
    ['0.0.0.0:65535', { host: '0.0.0.0', port: 65535 }],
    ['8080', undefined],
    ['host:', undefined],
    ['host:65536', undefined],
    ['::1:8080', undefined],
    ['[::1]8080', undefined],
    ['host:80:80', undefined],
    ['ho st:80', undefined],
    ['[zz]:80', undefined],
  ];
  for (const [input, want] of cases) {
    it(`parseListen(${JSON.stringify(input)})`, () => assert.deepEqual(parseListen(input), want));
  }

  it('":8080" and "[::1]:8080" in a config file', () => {
    assert.deepEqual(load(['listen: ":8080"', ...BASE]).config.listen, { host: '0.0.0.0', port: 8080 });
    assert.deepEqual(load(['listen: "[::1]:8080"', ...BASE]).config.listen, { host: '::1', port: 8080 });
  });

  it('formatListen brackets IPv6 and parses back', () => {
    for (const addr of [{ host: '::1', port: 8080 }, { host: '127.0.0.1', port: 1 }, { host: 'example.com', port: 80 }]) {
      assert.deepEqual(parseListen(formatListen(addr)), addr);
    }
    assert.equal(formatListen({ host: '::1', port: 8080 }), '[::1]:8080');
  });
});

describe('suggestDuration, isLoopbackHost', () => {
  const suggestions: [unknown, string | undefined][] = [
    ['1h30m', '90m'],
    ['1h 30m', '90m'],
    ['1 hour and 30 minutes', '90m'],
    ['2d12h', '60h'],
    ['1.5h', '90m'],
    ['0.5s', '500ms'],
    ['30 minutes', '30m'],
    ['30 mins', '30m'],
    ['10 Seconds', '10s'],
    ['5S', '5s'],
    ['1w', undefined],
    ['soon', undefined],
    ['30m extra', undefined],
    ['-5s', undefined],
    ['0.0001s', undefined],
    [90, undefined],
    ['', undefined],
  ];
  for (const [input, want] of suggestions) {
    it(`suggestDuration(${JSON.stringify(input)}) = ${want}`, () => {
      assert.equal(suggestDuration(input), want);
      if (want !== undefined) assert.notEqual(parseDuration(want), undefined);
    });
  }

  const hosts: [string, boolean][] = [
    ['127.0.0.1', true],
    ['127.255.0.9', true],
    ['::1', true],
    ['::ffff:127.0.0.1', true],
    ['localhost', true],
    ['LOCALHOST', true],
    ['app.localhost', true],
    ['0.0.0.0', false],
    ['::', false],
    ['10.0.0.5', false],
    ['128.0.0.1', false],
    ['localhost.example.com', false],
    ['example.com', false],
  ];
  for (const [host, want] of hosts) {
    it(`isLoopbackHost(${JSON.stringify(host)}) = ${want}`, () => assert.equal(isLoopbackHost(host), want));
  }
});

describe('invalidSession.redirect goes into a Location header', () => {
  const cases: [string, string][] = [
    ['/login', '/login'],
    ['https://sso.example.com/login?next=%2F', 'https://sso.example.com/login?next=%2F'],
    ['/ログイン', '/%E3%83%AD%E3%82%B0%E3%82%A4%E3%83%B3'],
    ['/connexion?raison=expirée#haut', '/connexion?raison=expir%C3%A9e#haut'],
    ['https://sso.example.com/ü?q=ü#ü', 'https://sso.example.com/%C3%BC?q=%C3%BC#%C3%BC'],
    ['/emoji/😀', '/emoji/%F0%9F%98%80'],
    ['/a b', '/a b'],
  ];
  for (const [written, sent] of cases) {
    it(`${JSON.stringify(written)} is sent as ${JSON.stringify(sent)}, which Node accepts as a header value`, () => {
      const { config } = load([...BASE, 'invalidSession:', `  redirect: ${JSON.stringify(written)}`]);
      assert.equal(config.invalidSession.redirect, sent);
      assert.doesNotThrow(() => validateHeaderValue('location', sent));
      assert.equal(decodeURI(sent), written, 'the encoding changes no character that was written');
    });
  }

  it('check-config prints the value as it is sent', () => {
    const { config } = load([...BASE, 'invalidSession:', '  redirect: "/ログイン"']);
    assert.match(printConfig(config), /redirect: \/%E3%83%AD%E3%82%B0%E3%82%A4%E3%83%B3/);
  });
});

describe('trustProxy', () => {
  const accepted: [string, Config['trustProxy']][] = [
    ['false', false],
    ['true', true],
    ['1', 1],
    ['3', 3],
    ['[10.0.0.0/8]', ['10.0.0.0/8']],
    ['[10.0.0.1, "fd00::/8", "::1", loopback, uniquelocal, linklocal]', ['10.0.0.1', 'fd00::/8', '::1', 'loopback', 'uniquelocal', 'linklocal']],
    ['["::ffff:10.0.0.0/104", "::ffff:192.0.2.1"]', ['::ffff:10.0.0.0/104', '::ffff:192.0.2.1']],
    ['"10.0.0.1, 192.168.0.0/16"', ['10.0.0.1', '192.168.0.0/16']],
    ['[" 10.0.0.1 "]', ['10.0.0.1']],
    ['[0.0.0.0/0, "::/0"]', ['0.0.0.0/0', '::/0']],
    // As "${VAR}" gives them: strings.
    ['"false"', false],
    ['" true "', true],
    ['"2"', 2],
  ];
  for (const [value, want] of accepted) {
    it(`trustProxy: ${value} is accepted`, () => assert.deepEqual(load([...BASE, `trustProxy: ${value}`]).config.trustProxy, want));
  }

  const refused: [string, string, string][] = [
    ['0', 'trustProxy', 'a hop count must be a whole number of at least 1 (false trusts no proxy), got 0'],
    ['-1', 'trustProxy', 'a hop count must be a whole number of at least 1 (false trusts no proxy), got -1'],
    ['1.5', 'trustProxy', 'a hop count must be a whole number of at least 1 (false trusts no proxy), got 1.5'],
    ['[]', 'trustProxy', 'list at least one trusted proxy address or CIDR, or use false'],
    ['""', 'trustProxy', 'list at least one trusted proxy address or CIDR, or use false'],
    ['{ a: 1 }', 'trustProxy', 'expected true, false, a hop count (1, 2, …) or a list of trusted proxy addresses/CIDRs such as ["10.0.0.0/8"], got a mapping'],
    ['[10.0.0.0/33]', 'trustProxy[0]', 'the prefix length of "10.0.0.0/33" must be a whole number from 0 to 32 for an IPv4 address'],
    ['[10.0.0.1, "fd00::/129"]', 'trustProxy[1]', 'the prefix length of "fd00::/129" must be a whole number from 0 to 128 for an IPv6 address'],
    ['[10.0.0.0/]', 'trustProxy[0]', 'the prefix length of "10.0.0.0/" must be a whole number from 0 to 32 for an IPv4 address'],
    ['[10.0.0.0/-8]', 'trustProxy[0]', 'the prefix length of "10.0.0.0/-8" must be a whole number from 0 to 32 for an IPv4 address'],
    ['[10.0.0/8]', 'trustProxy[0]', 'expected an IP address, a CIDR such as "10.0.0.0/8" or "fd00::/8", or one of "loopback", "linklocal", "uniquelocal"; got "10.0.0/8"'],
    ['[lb.internal]', 'trustProxy[0]', 'expected an IP address, a CIDR such as "10.0.0.0/8" or "fd00::/8", or one of "loopback", "linklocal", "uniquelocal"; got "lb.internal"'],
    ['["::ffff:10.0.0.0/64"]', 'trustProxy[0]', '"::ffff:10.0.0.0/64" is an IPv4-mapped IPv6 network, so its prefix length must be at least 96'],
    ['"0"', 'trustProxy', 'a hop count must be a whole number of at least 1 (false trusts no proxy), got 0'],
    ['"10.0.0.1, 300.0.0.1"', 'trustProxy', 'expected an IP address, a CIDR such as "10.0.0.0/8" or "fd00::/8", or one of "loopback", "linklocal", "uniquelocal"; got "300.0.0.1"'],
  ];
  for (const [value, path, message] of refused) {
    it(`trustProxy: ${value} is refused: ${message}`, () => {
      const lines = [...BASE, `trustProxy: ${value}`];
      const got = problems(lines);
      assert.deepEqual(
        got.map((p) => ({ path: p.path, message: p.message, line: p.line })),
        [{ path, message, line: 3 }],
      );
    });
  }

  it('parseTrustedNetwork: presets expand, IPv4-mapped networks become IPv4', () => {
    assert.deepEqual(parseTrustedNetwork('loopback'), [
      { family: 'ipv4', address: '127.0.0.0', prefix: 8 },
      { family: 'ipv6', address: '::1', prefix: 128 },
    ]);
    assert.deepEqual(parseTrustedNetwork('::ffff:10.0.0.0/104'), [{ family: 'ipv4', address: '10.0.0.0', prefix: 8 }]);
    assert.deepEqual(parseTrustedNetwork('::FFFF:192.0.2.1'), [{ family: 'ipv4', address: '192.0.2.1', prefix: 32 }]);
    assert.deepEqual(parseTrustedNetwork('2001:db8::/32'), [{ family: 'ipv6', address: '2001:db8::', prefix: 32 }]);
  });
});

describe('rules', () => {
  it('path is exact, prefix is a prefix, methods are upper-cased, no methods means every method', () => {
    const { config } = load([...BASE, 'login:', '  - path: /login', '    methods: [post, Put]', '  - prefix: /sso/']);
    assert.deepEqual(config.login, [
      { kind: 'exact', path: '/login', methods: ['POST', 'PUT'], caseSensitive: false },
      { kind: 'prefix', path: '/sso/', methods: null, caseSensitive: false },
    ]);
  });

  it('needs exactly one of path or prefix, in every rule list', () => {
    for (const key of ['login', 'logout']) {
      assert.deepEqual(
        problems([...BASE, `${key}:`, '  - {}', '  - { path: /a, prefix: /a }', '  - { path: /ok }']).map((p) => [p.path, p.message]),
        [
          [`${key}[0]`, 'a rule needs exactly one of "path" or "prefix"'],
          [`${key}[1]`, 'a rule needs exactly one of "path" or "prefix"'],
        ],
      );
    }
  });

  it('caseSensitive: false unless the rule says true; anything but a boolean is refused', () => {
    const { config } = load([...BASE, 'logout: [{ path: /a }, { path: /B, caseSensitive: true }, { prefix: /c, caseSensitive: false }]']);
    assert.deepEqual(
      config.logout.rules.map((r) => [r.path, r.caseSensitive]),
      [
        ['/a', false],
        ['/B', true],
        ['/c', false],
      ],
    );
    assert.deepEqual(
      problems([...BASE, 'login: [{ path: /login, caseSensitive: "yes" }]']).map((p) => p.path),
      ['login[0].caseSensitive'],
    );
  });

  it('rejects a method that is not a token', () => {
    assert.deepEqual(
      problems([...BASE, 'login:', '  - { path: /login, methods: ["PO ST"] }']).map((p) => [p.path, p.message]),
      [['login[0].methods[0]', 'expected an HTTP method']],
    );
  });
});

describe('managed and passthrough', () => {
  it('accepts "*" with passthrough names and patterns', () => {
    const { config } = load([...BASE, 'session:', '  managed: "*"', '  passthrough: [theme, "_ga*"]']);
    assert.equal(config.session.managed, '*');
    assert.deepEqual(config.session.passthrough, ['theme', '_ga*']);
  });

  it('accepts disjoint lists', () => {
    const { config } = load([...BASE, 'session:', '  managed: [JSESSIONID, csrf]', '  passthrough: [theme, "_ga*"]']);
    assert.deepEqual(config.session.managed, ['JSESSIONID', 'csrf']);
  });

  it('reports every overlap, at the passthrough entry', () => {
    assert.deepEqual(
      problems([...BASE, 'session:', '  managed: [_gid, _ga, theme]', '  passthrough: ["_g*", other]']).map((p) => [p.path, p.message]),
      [
        ['session.passthrough[0]', '"_gid" is both managed and passthrough'],
        ['session.passthrough[0]', '"_ga" is both managed and passthrough'],
      ],
    );
  });
});

describe('renewal, binding and the admin listener', () => {
  it('renewal, grace, binding and admin.listen parse', () => {
    const { config } = load([
      ...BASE,
      'session:',
      '  renewAfter: 15m',
      '  renewGrace: 10s',
      '  bind: [userAgent, ipPrefix]',
      '  bindMismatch: revoke',
      'admin:',
      '  listen: "127.0.0.1:9090"',
    ]);
    assert.equal(config.session.renewAfter, 15 * 60_000);
    assert.equal(config.session.renewGrace, 10_000);
    assert.deepEqual(config.session.bind, ['userAgent', 'ipPrefix']);
    assert.equal(config.session.bindMismatch, 'revoke');
    assert.deepEqual(config.admin.listen, { host: '127.0.0.1', port: 9090 });
  });

  it('reports a renewal no shorter than the session, unknown checks, a check listed twice and a bad action', () => {
    assert.deepEqual(
      problems([...BASE, 'session:', '  absoluteTimeout: 1h', '  renewAfter: 2h', '  bind: [userAgent, userAgent]', '  bindMismatch: ban']).map((p) => p.path),
      ['session.renewAfter', 'session.bind', 'session.bindMismatch'],
    );
    assert.deepEqual(
      problems([...BASE, 'session:', '  bind: [cookie]']).map((p) => p.path),
      ['session.bind[0]'],
    );
    assert.deepEqual(
      problems([...BASE, 'admin:', '  listen: "nowhere"']).map((p) => [p.path, p.message]),
      [['admin.listen', 'expected "host:port", ":port" or "[::1]:port", got "nowhere"']],
    );
  });
});

describe('cookie prefixes', () => {
  it('__Host- with secure and no domain is fine', () => {
    assert.equal(load([...BASE, 'cookie:', '  name: __Host-x', '  secure: true']).config.cookie.name, '__Host-x');
  });

  it('__Host- reports both a missing secure and a domain', () => {
    assert.deepEqual(
      problems([...BASE, 'cookie:', '  name: __Host-x', '  secure: false', '  domain: example.com']).map((p) => p.path),
      ['cookie.secure', 'cookie.domain'],
    );
  });

  it('cookie.domain: ASCII host names, with or without a leading dot, are taken as written', () => {
    for (const domain of ['example.com', '.example.com', 'xn--bcher-kva.example', 'a-b.c1.example', 'localhost']) {
      assert.equal(load([...BASE, 'cookie:', '  name: cc', `  domain: "${domain}"`]).config.cookie.domain, domain);
    }
  });

  it('a plain name may have a domain and no secure (with a warning)', () => {
    const { config, warnings } = load([...BASE, 'cookie:', '  name: ticket', '  secure: false', '  domain: example.com']);
    assert.equal(config.cookie.domain, 'example.com');
    assert.ok(warnings.some((w) => w.includes('cookie.secure')));
  });
});

describe('secrets', () => {
  it('the first signs, all are kept in order', () => {
    const { config } = load(['upstream: "http://127.0.0.1:3000"', 'secrets: ["${A}", "${B}"]'], { A: SECRET, B: SECRET2 });
    assert.deepEqual(config.secrets, [SECRET, SECRET2]);
  });

  it('exactly 32 characters is enough, 31 is not', () => {
    assert.equal(load(['upstream: "http://x"', `secrets: ["${'Ab3$'.repeat(8)}"]`]).config.secrets[0]?.length, 32);
    assert.deepEqual(problems(['upstream: "http://x"', `secrets: ["${'Ab3%'.repeat(8).slice(1)}"]`]).map((p) => p.message), [
      'a secret needs at least 32 characters, got 31',
    ]);
  });

  it('never echoes a secret value in problems or warnings', () => {
    const short = 'Sh0rt-S3cret-Value';
    const secretish = [short, 'Unterminated-S3cret${', 'S3cret-${UNSET}', SECRET, SECRET2];
    const err = failure([
      'upstream: "http://u:Sh0rt-S3cret-Value@x/"',
      'secrets:',
      `  - "${short}"`,
      '  - "Unterminated-S3cret${"',
      '  - "S3cret-${UNSET}"',
      '  - 42',
      '  - [a, b]',
      'store:',
      '  kind: redis',
      `  url: "http://:${SECRET2}@x"`,
    ]);
    assert.equal(err.problems.length, 7, err.message);
    for (const s of secretish) assert.ok(!err.message.includes(s), `message leaks ${s}:\n${err.message}`);

    const { warnings } = load(['upstream: "http://x"', 'secrets: ["${A}", "${A}", "${B:-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}"]', LOGOUT], { A: SECRET });
    assert.equal(warnings.length, 3, warnings.join('\n'));
    for (const s of [SECRET, 'aaaaaaaaaa']) assert.ok(!warnings.join('\n').includes(s));
  });
});

describe('warnings', () => {
  /** Redis and a logout rule: a configuration with no warning of its own (lines 1-4). */
  const PROD = [...BASE, 'store: { kind: redis, url: "redis://r" }', LOGOUT];
  const cases: { name: string; lines: string[]; env?: NodeJS.ProcessEnv; want: (string | RegExp)[] }[] = [
    {
      name: 'none for a production-like config',
      lines: [...BASE, 'store:', '  kind: redis', '  url: "redis://127.0.0.1:6379/0"', LOGOUT],
      want: [],
    },
    {
      name: 'memory store (the default)',
      lines: [...BASE, LOGOUT],
      want: [/^test\.yaml: store\.kind: is memory \(the default\): .*not shared.*lost on restart/],
    },
    {
      name: 'memory store, explicit, with its position',
      lines: [...BASE, 'store:', '  kind: memory', LOGOUT],
      want: [/^test\.yaml:4:9: store\.kind: is memory: /],
    },
    {
      name: 'cookie.secure: false',
      lines: [...BASE, 'store: { kind: redis, url: "redis://r" }', 'cookie:', '  name: cc', '  secure: false', LOGOUT],
      want: [/^test\.yaml:5:9: cookie\.name: is "cc", without/, /^test\.yaml:6:11: cookie\.secure: is false, so the ticket cookie travels over plain HTTP/],
    },
    {
      name: 'a ticket name without the __Host- prefix: the risk and the fix',
      lines: [...BASE, 'store: { kind: redis, url: "redis://r" }', 'cookie:', '  name: ticket', LOGOUT],
      want: [
        /^test\.yaml:5:9: cookie\.name: is "ticket", without the "__Host-" prefix, so another host of the site \(a sibling subdomain, or a page served over plain HTTP\) can plant a ticket cookie of this name.*Path=\/logout.*use "__Host-coatcheck" with cookie\.secure: true and no cookie\.domain/,
      ],
    },
    {
      name: 'a __Secure- ticket name with a domain: the warning names the domain',
      lines: [...BASE, 'store: { kind: redis, url: "redis://r" }', 'cookie:', '  name: __Secure-t', '  domain: example.com', LOGOUT],
      want: [/^test\.yaml:5:9: cookie\.name: is "__Secure-t", without the "__Host-" prefix, so another host of the site \(a sibling subdomain under example\.com,/],
    },
    {
      name: 'the default __Host- name: no warning',
      lines: [...BASE, 'store: { kind: redis, url: "redis://r" }', 'cookie:', '  name: __Host-t', LOGOUT],
      want: [],
    },
    {
      name: 'a duplicated secret',
      lines: ['upstream: "http://x"', 'store: { kind: redis, url: "redis://r" }', 'secrets: ["${A}", "${B}", "${A}"]', LOGOUT],
      env: { A: SECRET, B: SECRET2 },
      want: ['test.yaml:3:27: secrets[2]: is the same as secrets[0]'],
    },
    {
      name: 'a secret taken from the default in the file',
      lines: ['upstream: "http://x"', 'store: { kind: redis, url: "redis://r" }', `secrets: ["\${S:-${SECRET}}"]`, LOGOUT],
      env: {},
      want: [/^test\.yaml:3:11: secrets\[0\]: environment variable "S" is not set, so the default written in the configuration file is used/],
    },
    {
      name: 'a secret with very few distinct characters',
      lines: ['upstream: "http://x"', 'store: { kind: redis, url: "redis://r" }', `secrets: ["${'x'.repeat(40)}", "${'abc1'.repeat(10)}"]`, LOGOUT],
      want: [/secrets\[0\]: has only 1 distinct characters/, /secrets\[1\]: has only 4 distinct characters/],
    },
    // Secure cookies behind a proxy that is not trusted (issue 10 §5).
    ...['":8080"', '"0.0.0.0:8080"', '"[::]:8080"', '"10.0.0.5:8080"', '"app.internal:8080"'].map((listen) => ({
      name: `trustProxy off, secure ticket, listen ${listen}: names the fix`,
      lines: [...PROD, `listen: ${listen}`],
      want: [/^test\.yaml: trustProxy: is false, yet listen is \S+ \(not loopback\) and cookie\.secure is true\. .*the app's Secure cookies are refused \(upstream\.set_cookie_rejected\).* Fix: set trustProxy: true, and let only that proxy reach coatcheck$/],
    })),
    {
      name: 'trustProxy: false written out: the warning points at it',
      lines: [...PROD, 'listen: ":8080"', 'trustProxy: false'],
      want: [/^test\.yaml:6:13: trustProxy: is false, yet listen is 0\.0\.0\.0:8080 /],
    },
    ...['"127.0.0.1:8080"', '"127.1.2.3:8080"', '"[::1]:8080"', '"localhost:8080"'].map((listen) => ({
      name: `no trustProxy warning on loopback (${listen})`,
      lines: [...PROD, `listen: ${listen}`],
      want: [],
    })),
    { name: 'no trustProxy warning when the proxy is trusted', lines: [...PROD, 'listen: ":8080"', 'trustProxy: true'], want: [] },
    {
      name: 'no trustProxy warning without a Secure ticket (that one warns about itself)',
      lines: [...PROD, 'listen: ":8080"', 'cookie: { name: cc, secure: false }'],
      want: [/cookie\.name: is "cc", without the "__Host-" prefix/, /cookie\.secure: is false/],
    },
    // Nothing in the configuration ends a session early (issue 10 §5).
    {
      name: 'no logout rule and no onCookieCleared (the default): only the app header can end a session',
      lines: PROD.filter((l) => l !== LOGOUT),
      want: [
        'test.yaml: logout: has no rule and no onCookieCleared: coatcheck itself never ends a session early, so a logout in the app leaves the session (and a copied ticket) alive until session.idleTimeout or session.absoluteTimeout, unless the app answers its logout with the header "Coatcheck-Session: revoke". Add the logout path(s) as rules, or the app\'s session cookie to logout.onCookieCleared',
      ],
    },
    {
      name: 'an empty logout mapping written out: the warning points at it',
      lines: [...PROD.filter((l) => l !== LOGOUT), 'logout:', '  rules: []'],
      want: [/^test\.yaml:5:3: logout: has no rule and no onCookieCleared: .*"Coatcheck-Session: revoke"/],
    },
    { name: 'onCookieCleared alone is enough', lines: [...PROD.filter((l) => l !== LOGOUT), 'logout: { onCookieCleared: [sid] }'], want: [] },
    { name: 'a logout rule alone is enough', lines: PROD, want: [] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const { warnings } = load(c.lines, c.env ?? ENV);
      assert.equal(warnings.length, c.want.length, warnings.join('\n'));
      c.want.forEach((w, i) => (typeof w === 'string' ? assert.equal(warnings[i], w) : assert.match(warnings[i] as string, w)));
    });
  }
});

describe('unknown keys', () => {
  const known = ['idleTimeout', 'absoluteTimeout', 'managed', 'passthrough'];
  const cases: [string, readonly string[], string | undefined][] = [
    ['idelTimeout', known, 'idleTimeout'],
    ['idle_timeout', known, 'idleTimeout'],
    ['IdleTimeout', known, 'idleTimeout'],
    ['passthru', known, 'passthrough'],
    ['manage', known, 'managed'],
    ['timeout', known, undefined],
    ['zzz', known, undefined],
    ['samesite', ['name', 'secure', 'sameSite', 'domain', 'persistent'], 'sameSite'],
    ['secret', ['upstream', 'secrets', 'store'], 'secrets'],
    ['upstrem', ['upstream', 'secrets', 'store'], 'upstream'],
  ];
  for (const [key, list, want] of cases) {
    it(`suggest(${JSON.stringify(key)}) = ${want}`, () => assert.equal(suggest(key, list), want));
  }

  const levels: [Path, string[]][] = [
    [[], ['listen', 'upstream', 'mode', 'upstreamTimeout', 'shutdownTimeout', 'trustProxy', 'store', 'workers', 'secrets', 'cookie', 'session', 'logout', 'login', 'invalidSession', 'log', 'limits', 'websocket', 'admin', 'tls']],
    [['store'], ['kind', 'url', 'sentinel', 'cluster', 'username', 'password', 'db', 'replicas', 'replicaTimeout', 'prefix', 'timeout', 'connectTimeout', 'maxSessions']],
    [['store', 'sentinel'], ['name', 'nodes', 'password', 'tls']],
    [['store', 'cluster'], ['nodes']],
    [['cookie'], ['name', 'secure', 'sameSite', 'domain', 'persistent']],
    [['logout'], ['rules', 'onCookieCleared', 'clearSiteData']], // the mapping form, through default, pipe and union
    [['logout', 0], ['path', 'prefix', 'methods', 'caseSensitive', 'scope']], // a rule of the list form
    [['logout', 'rules', 0], ['path', 'prefix', 'methods', 'caseSensitive', 'scope']],
    [['login', 0], ['path', 'prefix', 'methods', 'caseSensitive', 'user']],
    [['login'], []], // a list, not a mapping
    [['login', 'x'], []],
    [['secrets', 0], []],
    [['nope'], []],
  ];
  for (const [path, want] of levels) {
    it(`knownKeys(${JSON.stringify(path)})`, () => assert.deepEqual(knownKeys(path), want));
  }

  it('suggests from the right level of the document', () => {
    assert.deepEqual(
      problems([...BASE, 'sameSite: lax', 'cookie:', '  samesite: lax', 'limits:', '  maxCookies: 3']).map((p) => p.message),
      [
        'unknown key "sameSite"',
        'unknown key "samesite" (did you mean "sameSite"?)',
        'unknown key "maxCookies"',
      ],
    );
  });
});

describe('the result', () => {
  it('is deep-frozen', () => {
    const { config } = load([...BASE, 'logout: [{ path: /logout, methods: [POST] }]']);
    const mutations: [string, () => void][] = [
      ['top', () => ((config as { upstream: string }).upstream = 'http://evil')],
      ['nested', () => ((config.cookie as { secure: boolean }).secure = false)],
      ['listen', () => ((config.listen as { port: number }).port = 1)],
      ['array', () => (config.secrets as string[]).push('x')],
      ['rule', () => ((config.logout.rules[0] as { path: string }).path = '/')],
      ['methods', () => (config.logout.rules[0]?.methods as string[]).push('GET')],
    ];
    for (const [name, mutate] of mutations) assert.throws(mutate, TypeError, name);
    assert.ok(Object.isFrozen(config.session.passthrough));
  });

  it('does not share (frozen) defaults between loads', () => {
    const a = load(BASE).config;
    const b = load(BASE).config;
    assert.notEqual(a.listen, b.listen);
    assert.notEqual(a.session.passthrough, b.session.passthrough);
    assert.deepEqual(a, b);
  });
});

describe('printConfig', () => {
  function roundTrip(config: Readonly<Config>, replacements: string[]): { printed: string; again: Readonly<Config> } {
    const printed = printConfig(config);
    let i = 0;
    const substituted = printed.replace(/\[redacted\]/g, () => {
      const r = replacements[i++];
      assert.ok(r !== undefined, 'more redactions than expected');
      return r;
    });
    assert.equal(i, replacements.length, 'fewer redactions than expected');
    return { printed, again: loadConfigText(substituted, 'printed.yaml', {}).config };
  }

  const cases: { name: string; lines: string[]; env?: NodeJS.ProcessEnv; replacements: string[] }[] = [
    { name: 'defaults', lines: BASE, replacements: [SECRET] },
    {
      name: 'a full production config with a redis password and two secrets',
      lines: [
        'listen: "[::1]:9443"',
        'upstream: "https://app.internal:8443"',
        'upstreamTimeout: 90',
        'shutdownTimeout: 0',
        'trustProxy: true',
        'store:',
        '  kind: redis',
        '  url: "rediss://coat:p%40ss:w0rd@cache:6380/3?family=6"',
        '  prefix: "cc:"',
        '  timeout: 1500ms',
        '  connectTimeout: 2m',
        '  maxSessions: 7',
        'secrets: ["${A}", "${B}"]',
        'cookie: { name: __Secure-cc, secure: true, sameSite: strict, domain: example.com, persistent: true }',
        'session: { idleTimeout: 45m, absoluteTimeout: 1d, managed: [JSESSIONID, csrf], passthrough: [theme, "_ga*"] }',
        'logout:',
        '  rules: [{ prefix: /logout, methods: [POST] }, { path: /bye }]',
        '  onCookieCleared: [JSESSIONID]',
        '  clearSiteData: true',
        'login: [{ path: /login, methods: [post] }, { prefix: /sso, caseSensitive: true }]',
        'invalidSession: { revoked: anonymous, expired: reject, status: 403, redirect: /login }',
        'log: { level: debug, access: false }',
        'limits: { maxHeaderSize: 8192, maxCookiesPerSession: 10, maxJarBytes: 4096 }',
      ],
      env: { A: SECRET, B: SECRET2 },
      replacements: ['p%40ss:w0rd', SECRET, SECRET2],
    },
    {
      name: 'a sentinel store with every key, two workers',
      lines: [
        ...BASE,
        'workers: 2',
        'store:',
        '  kind: redis',
        '  sentinel: { name: mymaster, nodes: ["10.0.0.1:26379", "[fd00::2]:26380", sentinel3], password: "${SP}", tls: true }',
        '  username: coat',
        '  password: "${RP}"',
        '  db: 3',
        '  replicas: 1',
        '  replicaTimeout: 150ms',
      ],
      env: { ...ENV, SP: 'sentinel-w0rd', RP: 'redis-w0rd' },
      replacements: ['sentinel-w0rd', 'redis-w0rd', SECRET],
    },
    { name: 'a cluster store, workers auto', lines: [...BASE, 'workers: auto', 'store: { kind: redis, cluster: { nodes: ["10.0.0.1:7000", "10.0.0.2"] } }'], replacements: [SECRET] },
    {
      name: 'a cluster store with durable revocation',
      lines: [...BASE, 'store: { kind: redis, cluster: { nodes: ["10.0.0.1:7000"] }, replicas: 1, replicaTimeout: 300ms }'],
      replacements: [SECRET],
    },
    { name: 'the short logout form', lines: [...BASE, 'logout: [{ path: /logout, methods: [GET, POST] }]', 'listen: ":80"'], replacements: [SECRET] },
    { name: 'trustProxy as a list of networks', lines: [...BASE, 'trustProxy: [10.0.0.0/8, "fd00::/8", "::ffff:192.0.2.1", loopback]'], replacements: [SECRET] },
    { name: 'trustProxy as a hop count', lines: [...BASE, 'trustProxy: 2'], replacements: [SECRET] },
  ];
  for (const c of cases) {
    it(`round trip: ${c.name}`, () => {
      const { config } = load(c.lines, c.env ?? ENV);
      const { printed, again } = roundTrip(config, c.replacements);
      assert.deepEqual(again, config);
      for (const s of [SECRET, SECRET2, 'w0rd']) assert.ok(!printed.includes(s), `printed output leaks ${s}`);
    });
  }

  it('trustProxy is printed as written: a list on one line, a hop count, a boolean', () => {
    const printed = (value: string): string | undefined =>
      printConfig(load([...BASE, `trustProxy: ${value}`]).config)
        .split('\n')
        .find((l) => l.startsWith('trustProxy:'));
    assert.equal(printed('[10.0.0.0/8, "fd00::/8", loopback]'), 'trustProxy: [10.0.0.0/8, fd00::/8, loopback]');
    assert.equal(printed('"10.0.0.1, 10.0.0.2"'), 'trustProxy: [10.0.0.1, 10.0.0.2]');
    assert.equal(printed('2'), 'trustProxy: 2');
    assert.equal(printed('true'), 'trustProxy: true');
  });

  for (const name of ['demo.yaml', 'redis.yaml', 'reference.yaml']) {
    it(`round trip: config/${name}`, async () => {
      const { config } = await loadConfigFile(join(CONFIG_DIR, name), ENV);
      assert.deepEqual(roundTrip(config, [SECRET]).again, config);
    });
  }

  it('prints the mapping form of logout, rules as {path|prefix, methods}, formatted durations and listen', () => {
    const { config } = load([...BASE, 'listen: ":8080"', 'logout: [{ path: /a, methods: [GET] }, { prefix: /b }, { path: /C, caseSensitive: true }]', 'session: { idleTimeout: 1800 }']);
    const printed = parseYaml(printConfig(config)) as Record<string, Record<string, unknown>>;
    assert.deepEqual(printed.logout, {
      rules: [{ path: '/a', methods: ['GET'] }, { prefix: '/b' }, { path: '/C', caseSensitive: true }],
      onCookieCleared: [],
      clearSiteData: false,
    });
    assert.equal(printed.session?.idleTimeout, '30m');
    assert.equal(printed.session?.absoluteTimeout, '12h');
    assert.equal(printed.store?.timeout, '250ms');
    assert.equal(printed.listen, '0.0.0.0:8080');
    assert.deepEqual(printed.secrets, ['[redacted]']);
  });

  it('redacts only the password of a url', () => {
    const cases: [string, string][] = [
      ['redis://127.0.0.1:6379/0', 'redis://127.0.0.1:6379/0'],
      ['redis://:pw@h:1/0', 'redis://:[redacted]@h:1/0'],
      ['redis://user:pw@h:1/0', 'redis://user:[redacted]@h:1/0'],
      ['rediss://user:p@ss@h/0?x=y', 'rediss://user:[redacted]@h/0?x=y'],
      ['redis://user@h/0', 'redis://user@h/0'],
    ];
    for (const [input, want] of cases) assert.equal(redactUrlPassword(input), want);
  });
});
