// `coatcheck init`: a commented starter configuration with a fresh random secret. The secret is
// written into the file only (never printed); the file is created with mode 0600 and never
// overwrites one that exists.
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { loadConfigText } from './config/load.js';
import { ConfigError, UsageError } from './errors.js';

export interface InitOptions {
  upstream: string;
  /** A redis:// or rediss:// URL; without it the starter uses the memory store. */
  redis?: string;
  out: string;
}

/** The starter configuration's text; throws UsageError when `upstream` or `redis` is not valid. */
export function starterConfig(opts: { upstream: string; redis?: string }, secret: string): string {
  const q = (v: string) => JSON.stringify(v);
  const store =
    opts.redis === undefined
      ? [
          'store:',
          '  # Sessions live in this process: lost on restart, not shared between instances. For',
          '  # production use Redis: `coatcheck init --redis redis://host:6379/0`, or see README "Redis".',
          '  kind: memory',
        ]
      : [
          'store:',
          '  kind: redis',
          '  # A password in this URL is as secret as the secret below; it may come from the',
          '  # environment instead: url: "${REDIS_URL}".',
          `  url: ${q(opts.redis)}`,
        ];
  const text = [
    '# coatcheck configuration, written by `coatcheck init`.',
    '#   check it:  coatcheck check-config --config THIS_FILE',
    '#   run it:    coatcheck --config THIS_FILE',
    '# Every key with its default and what it does: config/reference.yaml (in the package).',
    '',
    '# Where browsers (or your load balancer) reach coatcheck. ":8080" listens on every interface.',
    'listen: "127.0.0.1:8080"',
    '# The app coatcheck stands in front of: its cookies stay here, the browser gets a ticket.',
    `upstream: ${q(opts.upstream)}`,
    '',
    ...store,
    '',
    'secrets:',
    '  # Signs the tickets. Generated for this file, printed nowhere: keep the file private (it',
    '  # was written readable by its owner only), or move the secret to the environment:',
    '  #   - "${COATCHECK_SECRET}"',
    '  # To rotate without logging anyone out, put the new secret first and keep this one second',
    '  # until the tickets it signed have expired (session.absoluteTimeout); then send SIGHUP.',
    `  - ${q(secret)}`,
    '',
    'cookie:',
    '  # "__Host-" cookies are Secure: serve coatcheck over https (tls, or a proxy in front with',
    '  # trustProxy). For a first try over plain http on another host than localhost, use',
    '  # name: coatcheck and secure: false, never in production.',
    '  name: "__Host-coatcheck"',
    '  secure: true',
    '  sameSite: lax',
    '',
    'session:',
    '  # A session ends after this long without a request, and this long after login at most.',
    '  idleTimeout: 30m',
    '  absoluteTimeout: 12h',
    '',
    "# Your app's logout and login URLs (adjust them): a logout revokes the session before the app",
    '# sees the request; a login gives the browser a new ticket.',
    'logout:',
    '  - path: /logout',
    'login:',
    '  - path: /login',
    '    methods: [POST]',
    '',
    'admin:',
    '  # /healthz, /readyz and /metrics (Prometheus). Keep it off the public network.',
    '  listen: "127.0.0.1:9090"',
    '',
  ].join('\n');
  // The same checks as any configuration file; a problem is told as the flag that caused it.
  try {
    loadConfigText(text, 'the generated configuration', {});
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const flag = (path: string) => (path === 'upstream' ? '--upstream' : path.startsWith('store') ? '--redis' : path);
    throw new UsageError(err.problems.map((p) => `${flag(p.path)}: ${p.message}`).join('; '));
  }
  return text;
}

/** Writes the starter configuration to `opts.out`; UsageError when the file exists or a value is bad. */
export async function writeStarterConfig(opts: InitOptions): Promise<void> {
  const text = starterConfig(opts, randomBytes(48).toString('base64url'));
  try {
    // wx: fails when the file exists, without a window between a check and the write.
    await writeFile(opts.out, text, { flag: 'wx', mode: 0o600 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new UsageError(`${opts.out} exists already; not overwriting it (remove it, or choose another file with --out)`);
    throw new UsageError(`cannot write ${opts.out}${code ? ` (${code})` : ''}`);
  }
}
