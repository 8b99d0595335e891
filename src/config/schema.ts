// The configuration schema: one zod schema gives the types, the defaults and the checks.
// Loading (YAML, env interpolation, line:col) lives in load.ts; the written forms of durations and
// listen addresses in values.ts.
import { z } from 'zod';
import { isCookieName, isCookieNamePattern, patternToRegExp } from '../cookies/names.js';
import { cookieDomainProblem, formatDuration, headerLocation, parseDuration, parseListen, parseNode, parseTrustedNetwork, suggestDuration } from './values.js';

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
/**
 * Cross-field refinements run even when an unrelated field failed, so that every problem is
 * reported at once (zod skips them by default). Each refinement checks the types it reads.
 */
const always = { when: () => true };

const DURATION_FORMS = 'a duration: a whole number and one unit (ms, s, m, h or d, e.g. "30m"), or whole seconds';
const duration = (opts: { min?: number } = {}) =>
  z.union([z.string(), z.number()], { error: `expected ${DURATION_FORMS}` }).transform((v, ctx) => {
    const ms = parseDuration(v);
    if (ms === undefined) {
      const hint = suggestDuration(v);
      ctx.addIssue({
        code: 'custom',
        message: `expected ${DURATION_FORMS}; got ${JSON.stringify(v)}${hint ? ` (did you mean "${hint}"?)` : ''}`,
      });
      return z.NEVER;
    }
    if (opts.min !== undefined && ms < opts.min) {
      ctx.addIssue({ code: 'custom', message: `must be at least ${formatDuration(opts.min)}, got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    return ms;
  });

const LISTEN_FORMS = '"host:port", ":port" or "[::1]:port"';
const listen = z.union([z.string(), z.number()], { error: `expected ${LISTEN_FORMS}` }).transform((v, ctx) => {
  const addr = typeof v === 'string' ? parseListen(v) : undefined;
  if (!addr) {
    // A bare port (8080, or "8080") is the usual slip: YAML reads the former as a number.
    const port = /^\d{1,5}$/.test(String(v).trim()) ? String(v).trim() : undefined;
    const hint = port ? ` (did you mean ":${port}" for every interface, or "127.0.0.1:${port}" for this machine only? Quote it)` : '';
    ctx.addIssue({ code: 'custom', message: `expected ${LISTEN_FORMS}, got ${typeof v === 'number' ? `the number ${v}` : JSON.stringify(v)}${hint}` });
    return z.NEVER;
  }
  return addr;
});

/** Echoes a URL in a message without its credentials. */
function redactUrlCredentials(v: string): string {
  return v.replace(/^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)[^/?#]*@/, '$1[redacted]@');
}

/**
 * trustProxy: `false` (trust no proxy), `true` (trust the peer, one hop), a hop count, or the
 * addresses/CIDRs of the trusted proxies (a list, or one comma-separated string, as an
 * environment variable gives it). A list is
 * kept as written, each entry checked (parseTrustedNetwork); the matcher is built at start.
 */
const trustProxy = z
  .union([z.boolean(), z.number(), z.string(), z.array(z.string())], {
    error: 'expected true, false, a hop count (1, 2, …) or a list of trusted proxy addresses/CIDRs such as ["10.0.0.0/8"]',
  })
  .transform((v, ctx): boolean | number | string[] => {
    // "${VAR}" interpolation gives a string: "true", "false" and "2" mean what they say.
    if (typeof v === 'string' && /^\s*(?:true|false|\d+)\s*$/.test(v)) v = v.trim() === 'true' ? true : v.trim() === 'false' ? false : Number(v);
    if (typeof v === 'boolean') return v;
    if (typeof v === 'number') {
      if (Number.isSafeInteger(v) && v >= 1) return v;
      ctx.addIssue({ code: 'custom', message: `a hop count must be a whole number of at least 1 (false trusts no proxy), got ${v}` });
      return z.NEVER;
    }
    const list = (typeof v === 'string' ? v.split(',') : v).map((e) => e.trim());
    if (list.length === 0 || (list.length === 1 && list[0] === '')) {
      ctx.addIssue({ code: 'custom', message: 'list at least one trusted proxy address or CIDR, or use false' });
      return z.NEVER;
    }
    list.forEach((entry, i) => {
      const parsed = parseTrustedNetwork(entry);
      if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', path: typeof v === 'string' ? [] : [i], message: parsed });
    });
    return list;
  });

const httpUrl = z.string().transform((v, ctx) => {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    ctx.addIssue({ code: 'custom', message: `expected an http:// or https:// URL, got ${JSON.stringify(redactUrlCredentials(v))}` });
    return z.NEVER;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    ctx.addIssue({ code: 'custom', message: `expected an http:// or https:// URL, got ${JSON.stringify(redactUrlCredentials(v))}` });
    return z.NEVER;
  }
  if ((u.pathname !== '/' && u.pathname !== '') || u.search || u.hash || u.username || u.password) {
    ctx.addIssue({
      code: 'custom',
      message: `expected an origin without path, query or credentials (like "http://127.0.0.1:3000"), got ${JSON.stringify(redactUrlCredentials(v))}`,
    });
    return z.NEVER;
  }
  return u.origin;
});

const cookieName = z.string().refine(isCookieName, { message: 'expected a cookie name (an RFC 6265 token)' });
/** A cookie name, or a pattern with `*` wildcards such as `_ga*`. */
const cookiePattern = z.string().refine(isCookieNamePattern, { message: 'expected a cookie name or a pattern such as "_ga*"' });

const METHOD_RE = /^[A-Z]+$/;
/** A dotted path of JSON keys (`email`, `user.email`): names of letters, digits, `_`, `-`, `$`. */
const JSON_FIELD_RE = /^[A-Za-z0-9_$-]+(?:\.[A-Za-z0-9_$-]+)*$/;

/** Where a login rule reads the user id from, in the login request's body (section "Users" of the README). */
const userSource = z
  .strictObject({
    formField: z.string().min(1).max(256).optional(),
    jsonField: z.string().max(256).regex(JSON_FIELD_RE, { message: 'expected a key or a dotted path of keys, such as email or user.email' }).optional(),
  })
  .superRefine((u: unknown, ctx) => {
    if (isRecord(u) && (u.formField === undefined) === (u.jsonField === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'give exactly one of formField (a urlencoded or multipart form field) or jsonField (a key of a JSON body)' });
    }
  }, always)
  .transform((u): UserSource => (u.formField !== undefined ? { formField: u.formField } : { jsonField: u.jsonField as string }));

export type UserSource = { formField: string } | { jsonField: string };

/** What every login and logout rule has. */
const ruleShape = {
  path: z.string().startsWith('/', { message: 'must start with "/"' }).optional(),
  prefix: z.string().startsWith('/', { message: 'must start with "/"' }).optional(),
  methods: z
    .array(z.string().transform((m) => m.toUpperCase()).pipe(z.string().regex(METHOD_RE, { message: 'expected an HTTP method' })))
    .min(1)
    .optional(),
  /** Rules match case-insensitively unless this is true (README: "How rules match"). */
  caseSensitive: z.boolean().optional(),
};

interface RuleFields {
  path?: string;
  prefix?: string;
  methods?: string[];
  caseSensitive?: boolean;
}

function checkRule(r: unknown, ctx: z.RefinementCtx): void {
  if (!isRecord(r)) return;
  if ((r.path === undefined) === (r.prefix === undefined)) {
    ctx.addIssue({ code: 'custom', message: 'a rule needs exactly one of "path" or "prefix"' });
  }
}

function ruleOf(r: RuleFields) {
  return {
    kind: r.path !== undefined ? ('exact' as const) : ('prefix' as const),
    path: (r.path ?? r.prefix) as string,
    methods: r.methods ?? null,
    caseSensitive: r.caseSensitive ?? false,
  };
}

/** A logout rule; `scope` (default session) says whose sessions it ends. */
const rule = z
  .strictObject({ ...ruleShape, scope: z.enum(['session', 'user', 'others']).optional() })
  .superRefine(checkRule, always)
  .transform((r) => ({ ...ruleOf(r), ...(r.scope !== undefined && r.scope !== 'session' ? { scope: r.scope } : {}) }));

/** A login rule; `user` says where the login request names its user. */
const loginRule = z
  .strictObject({ ...ruleShape, user: userSource.optional() })
  .superRefine(checkRule, always)
  .transform((r) => ({ ...ruleOf(r), ...(r.user !== undefined ? { user: r.user } : {}) }));

export type Rule = z.output<typeof rule> | z.output<typeof loginRule>;

const logoutRules = z.array(rule);
const logoutMapping = z.strictObject({
  rules: z.array(rule).default([]),
  onCookieCleared: z.array(cookieName).default([]),
  clearSiteData: z.boolean().default(false),
});
const logout = z
  .union([logoutRules, logoutMapping], {
    error: 'expected a list of rules, or a mapping with "rules", "onCookieCleared" and "clearSiteData"',
  })
  .default([])
  .transform((v) => (Array.isArray(v) ? { rules: v, onCookieCleared: [] as string[], clearSiteData: false } : v));

const nodeList = (what: string, defaultPort: number) =>
  z
    .array(
      z.string().transform((v, ctx) => {
        const node = parseNode(v, defaultPort);
        if (!node) {
          ctx.addIssue({ code: 'custom', message: `expected a ${what} address "host:port" (or "[::1]:port"), got ${JSON.stringify(v)}` });
          return z.NEVER;
        }
        return node;
      }),
    )
    .min(1, { message: `at least one ${what} address is required` });

const sentinelSchema = z.strictObject({
  /** The monitored master's name, as in the sentinels' `sentinel monitor <name> …`. */
  name: z.string().min(1, { message: 'expected the monitored master\'s name' }),
  nodes: nodeList('sentinel', 26379),
  /** The sentinels' own password (`requirepass` of the sentinels), when they have one. */
  password: z.string().min(1).optional(),
  /** TLS to the sentinels and to the master and replicas they point to. */
  tls: z.boolean().default(false),
});

const clusterSchema = z.strictObject({
  /** Seed nodes: any reachable one is enough, the rest of the cluster is discovered. */
  nodes: nodeList('cluster node', 6379),
});

/** The keys that only mean something with kind: redis (a memory store refuses them). */
const REDIS_ONLY = ['url', 'sentinel', 'cluster', 'username', 'password', 'db', 'replicas', 'replicaTimeout'] as const;
/** The ways to reach Redis: exactly one is given. */
const REDIS_TARGETS = ['url', 'sentinel', 'cluster'] as const;

const storeSchema = z
  .strictObject({
    kind: z.enum(['memory', 'redis']).default('memory'),
    url: z.string().optional(),
    sentinel: sentinelSchema.optional(),
    cluster: clusterSchema.optional(),
    /** ACL user and password of the data nodes (sentinel and cluster; a url carries its own). */
    username: z.string().min(1).optional(),
    password: z.string().min(1).optional(),
    /** Database number (sentinel only: a url names its own, a cluster has db 0 only). */
    db: z.number().int().min(0).optional(),
    /** Replicas that must hold a revocation before the logout is answered (WAIT); 0: no wait. */
    replicas: z.number().int().min(0).max(100).optional(),
    replicaTimeout: duration({ min: 1 }).optional(),
    prefix: z.string().default('coatcheck:'),
    timeout: duration({ min: 1 }).default(250),
    connectTimeout: duration({ min: 1 }).default(5000),
    maxSessions: z.number().int().positive().default(100_000),
  })
  .superRefine((s: unknown, ctx) => {
    if (!isRecord(s)) return;
    if (s.kind !== 'redis') {
      for (const key of REDIS_ONLY) {
        if (s[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: 'only used when kind is "redis"' });
      }
      return;
    }
    const given = REDIS_TARGETS.filter((key) => s[key] !== undefined);
    if (given.length === 0) {
      ctx.addIssue({ code: 'custom', path: ['url'], message: 'required when kind is "redis" (or give sentinel or cluster instead)' });
    }
    for (const extra of given.slice(1)) {
      ctx.addIssue({ code: 'custom', path: [extra], message: `give only one of url, sentinel or cluster (${given[0]} is given already)` });
    }
    if (typeof s.url === 'string') {
      // The url is never echoed: it may carry a password.
      let protocol: string | undefined;
      try {
        protocol = new URL(s.url).protocol;
      } catch {
        protocol = undefined;
      }
      if (protocol !== 'redis:' && protocol !== 'rediss:') {
        ctx.addIssue({
          code: 'custom',
          path: ['url'],
          message: `expected a redis:// or rediss:// URL${protocol ? `, got a ${JSON.stringify(protocol.slice(0, -1))} URL` : ''}`,
        });
      }
      for (const key of ['username', 'password', 'db'] as const) {
        if (s[key] !== undefined) {
          ctx.addIssue({ code: 'custom', path: [key], message: `not used with url: put it in the URL (redis://user:password@host:port/db)` });
        }
      }
    }
    if (s.cluster !== undefined && s.db !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['db'], message: 'Redis Cluster has database 0 only' });
    }
    if (s.cluster !== undefined && typeof s.prefix === 'string' && /[{}]/.test(s.prefix)) {
      ctx.addIssue({ code: 'custom', path: ['prefix'], message: 'must not contain "{" or "}" with cluster: coatcheck places its own hash tags' });
    }
    if (s.replicaTimeout !== undefined && !(typeof s.replicas === 'number' && s.replicas > 0)) {
      ctx.addIssue({ code: 'custom', path: ['replicaTimeout'], message: 'only used when replicas is above 0' });
    }
  }, always)
  .transform((s) => ({ ...s, replicas: s.replicas ?? 0, replicaTimeout: s.replicaTimeout ?? 200 }));

const WORKERS_FORMS = 'a number of processes (1 or more) or "auto" (one per CPU)';
const workers = z.union([z.number(), z.string()], { error: `expected ${WORKERS_FORMS}` }).transform((v, ctx) => {
  if (v === 'auto') return 'auto' as const;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 1024) return v;
  ctx.addIssue({ code: 'custom', message: `expected ${WORKERS_FORMS}, got ${JSON.stringify(v)}` });
  return z.NEVER;
});

const cookieSchema = z
  .strictObject({
    name: cookieName.default('__Host-coatcheck'),
    secure: z.boolean().default(true),
    sameSite: z.enum(['strict', 'lax', 'none']).default('lax'),
    domain: z
      .string()
      .min(1)
      .superRefine((v, ctx) => {
        const problem = cookieDomainProblem(v);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      })
      .nullable()
      .default(null),
    persistent: z.boolean().default(false),
  })
  .superRefine((c: unknown, ctx) => {
    if (!isRecord(c) || typeof c.name !== 'string') return;
    if (c.name.startsWith('__Host-')) {
      if (c.secure === false) ctx.addIssue({ code: 'custom', path: ['secure'], message: 'the "__Host-" prefix requires secure: true' });
      if (typeof c.domain === 'string') ctx.addIssue({ code: 'custom', path: ['domain'], message: 'the "__Host-" prefix forbids a domain' });
    }
    if (c.name.startsWith('__Secure-') && c.secure === false) {
      ctx.addIssue({ code: 'custom', path: ['secure'], message: 'the "__Secure-" prefix requires secure: true' });
    }
    if (c.sameSite === 'none' && c.secure === false) {
      ctx.addIssue({ code: 'custom', path: ['sameSite'], message: 'sameSite: none requires secure: true (browsers drop it otherwise)' });
    }
  }, always);

const sessionSchema = z
  .strictObject({
    idleTimeout: duration({ min: 1000 }).default(30 * 60_000),
    absoluteTimeout: duration({ min: 1000 }).default(12 * 3_600_000),
    managed: z
      .union([z.literal('*'), z.array(cookieName).min(1, { message: 'list at least one cookie name, or use "*"' })], {
        error: 'expected "*" or a list of cookie names',
      })
      .default('*'),
    passthrough: z.array(cookiePattern).default([]),
    renewAfter: duration({ min: 1000 }).nullable().default(null),
    renewGrace: duration().default(30_000),
    bind: z.array(z.enum(['userAgent', 'ipPrefix'])).default([]),
    bindMismatch: z.enum(['log', 'reject', 'revoke']).default('reject'),
    /** Live sessions per user; a login past it revokes the least recently used (null: no limit). */
    maxPerUser: z.number().int().min(1).nullable().default(null),
  })
  .superRefine((s: unknown, ctx) => {
    if (!isRecord(s)) return;
    if (typeof s.renewAfter === 'number' && typeof s.absoluteTimeout === 'number' && s.renewAfter >= s.absoluteTimeout) {
      ctx.addIssue({ code: 'custom', path: ['renewAfter'], message: 'must be shorter than session.absoluteTimeout' });
    }
    if (Array.isArray(s.bind) && new Set(s.bind).size !== s.bind.length) {
      ctx.addIssue({ code: 'custom', path: ['bind'], message: 'lists a check twice' });
    }
    if (typeof s.idleTimeout === 'number' && typeof s.absoluteTimeout === 'number' && s.idleTimeout > s.absoluteTimeout) {
      ctx.addIssue({ code: 'custom', path: ['idleTimeout'], message: 'must not exceed session.absoluteTimeout' });
    }
    const { managed, passthrough } = s;
    if (Array.isArray(managed) && Array.isArray(passthrough)) {
      passthrough.forEach((p: unknown, i) => {
        if (typeof p !== 'string') return;
        const re = patternToRegExp(p);
        for (const name of managed as unknown[]) {
          if (typeof name === 'string' && re.test(name)) {
            ctx.addIssue({ code: 'custom', path: ['passthrough', i], message: `"${name}" is both managed and passthrough` });
          }
        }
      });
    }
  }, always);

const invalidSessionSchema = z.strictObject({
  revoked: z.enum(['reject', 'anonymous']).default('reject'),
  expired: z.enum(['reject', 'anonymous']).default('anonymous'),
  status: z.number().int().min(400).max(599).default(401),
  // Goes into the Location header: checked, non-ASCII percent-encoded (values.ts headerLocation).
  redirect: z
    .string()
    .min(1)
    .transform((v, ctx) => {
      const r = headerLocation(v);
      if ('error' in r) {
        ctx.addIssue({ code: 'custom', message: r.error });
        return z.NEVER;
      }
      return r.value;
    })
    .nullable()
    .default(null),
});

const logSchema = z.strictObject({
  level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  access: z.boolean().default(true),
});

/** WebSocket upgrades (README, "WebSocket and long-lived connections"). */
const websocketSchema = z.strictObject({
  enabled: z.boolean().default(true),
  /** Open WebSockets per process; an upgrade past it is answered 503 before the app sees it. */
  maxConnections: z.number().int().positive().max(1_000_000).default(10_000),
});

const adminSchema = z.strictObject({
  listen: listen.nullable().default(null),
  // A message about the token names its length, never its value.
  token: z
    .string()
    .superRefine((v, ctx) => {
      if (v.length < 32) ctx.addIssue({ code: 'custom', message: `the admin token needs at least 32 characters, got ${v.length}` });
    })
    .nullable()
    .default(null),
});

const limitsSchema = z.strictObject({
  maxHeaderSize: z.number().int().min(1024).max(1024 * 1024).default(16 * 1024),
  maxCookiesPerSession: z.number().int().positive().default(50),
  maxJarBytes: z.number().int().positive().default(32 * 1024),
});

/**
 * TLS on the proxy's own listener (README "TLS"): PEM files, read at start and again on reload.
 * `redirectFrom` adds a plain-HTTP listener that only redirects to https.
 */
const tlsSchema = z.strictObject({
  cert: z.string().min(1),
  key: z.string().min(1),
  minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
  redirectFrom: listen.nullable().default(null),
});

export const configSchema = z
  .strictObject({
    listen: listen.default({ host: '127.0.0.1', port: 8080 }),
    upstream: httpUrl,
    /** enforce: cookies kept server-side; report-only: every cookie forwarded untouched, replays only reported (pipeline/report-only.ts). */
    mode: z.enum(['enforce', 'report-only']).default('enforce'),
    upstreamTimeout: duration({ min: 1 }).default(60_000),
    shutdownTimeout: duration().default(10_000),
    trustProxy: trustProxy.default(false),
    store: storeSchema.prefault({}),
    /** Processes sharing the listener (node:cluster); redis store only when above 1. */
    workers: workers.default(1),
    // A message about a secret names its index (the path) and its length, never its value.
    secrets: z
      .array(
        z.string().superRefine((v, ctx) => {
          if (v.length < 32) ctx.addIssue({ code: 'custom', message: `a secret needs at least 32 characters, got ${v.length}` });
        }),
      )
      .min(1, { message: 'at least one secret is required' }),
    cookie: cookieSchema.prefault({}),
    session: sessionSchema.prefault({}),
    logout,
    login: z.array(loginRule).default([]),
    invalidSession: invalidSessionSchema.prefault({}),
    log: logSchema.prefault({}),
    limits: limitsSchema.prefault({}),
    websocket: websocketSchema.prefault({}),
    admin: adminSchema.prefault({}),
    tls: tlsSchema.nullable().default(null),
  })
  .superRefine((c: unknown, ctx) => {
    if (isRecord(c) && isRecord(c.admin) && typeof c.admin.token === 'string' && (c.admin.listen === undefined || c.admin.listen === null)) {
      ctx.addIssue({ code: 'custom', path: ['admin', 'token'], message: 'needs admin.listen: the sessions API is served on the admin listener' });
    }
    if (isRecord(c) && isRecord(c.store) && c.store.kind === 'memory' && c.workers !== undefined && c.workers !== 1) {
      ctx.addIssue({
        code: 'custom',
        path: ['workers'],
        message: 'needs store kind "redis": the memory store lives in one process, so several workers would not share sessions',
      });
    }
    if (!isRecord(c) || !isRecord(c.cookie) || !isRecord(c.session)) return;
    const ticket = c.cookie.name;
    if (typeof ticket !== 'string') return;
    const { managed, passthrough } = c.session;
    if (Array.isArray(managed)) {
      managed.forEach((name: unknown, i) => {
        if (name === ticket) {
          ctx.addIssue({ code: 'custom', path: ['session', 'managed', i], message: `must not include the ticket cookie "${ticket}"` });
        }
      });
    }
    if (Array.isArray(passthrough)) {
      passthrough.forEach((p: unknown, i) => {
        if (typeof p === 'string' && patternToRegExp(p).test(ticket)) {
          ctx.addIssue({ code: 'custom', path: ['session', 'passthrough', i], message: `must not match the ticket cookie "${ticket}"` });
        }
      });
    }
  }, always);

export type ConfigInput = z.input<typeof configSchema>;
export type Config = z.output<typeof configSchema>;
