// What a reload (SIGHUP) may change, and what changed: pure, so that the single process, each
// worker and the library apply the same plan. The running process keeps its sockets, its store
// connection and its workers; everything read per request (secrets, rules, timeouts, limits,
// log level, TLS files) takes the new value.
import type { Config } from './schema.js';

/**
 * Keys bound to something made once at start: the listening sockets (listen, admin.listen and
 * the sessions API's token, whether TLS is on and its redirect listener, the header size limit
 * of the HTTP parser), the store connection (store.*), the worker processes, and the mode. A
 * new value is named in a warning and the running one kept.
 */
const FIXED: ReadonlyArray<{ key: string; of: (c: Config) => unknown }> = [
  { key: 'listen', of: (c) => c.listen },
  { key: 'store', of: (c) => c.store },
  { key: 'workers', of: (c) => c.workers },
  // Switching between report-only and enforce is a rollout step done by a restart (README
  // "Report-only rollout"); not tried live.
  { key: 'mode', of: (c) => c.mode },
  { key: 'admin.listen', of: (c) => c.admin.listen },
  // Whether the sessions API is on, and its token, are fixed with the admin listener.
  { key: 'admin.token', of: (c) => c.admin.token },
  { key: 'limits.maxHeaderSize', of: (c) => c.limits.maxHeaderSize },
  { key: 'tls (on or off)', of: (c) => c.tls === null },
  { key: 'tls.redirectFrom', of: (c) => c.tls?.redirectFrom ?? null },
];

export interface ReloadPlan {
  /** The configuration to run: the new one, with the fixed keys' running values. */
  config: Config;
  /** Dotted key paths whose value changes (a list is one key: "login", "secrets"). Never a value. */
  changed: string[];
  /** Fixed keys the new file changes, which keep their running value. */
  kept: string[];
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

export function planReload(running: Readonly<Config>, next: Readonly<Config>): ReloadPlan {
  const kept = FIXED.filter(({ of }) => !same(of(running), of(next))).map(({ key }) => key);
  const config: Config = {
    ...next,
    listen: running.listen,
    store: running.store,
    workers: running.workers,
    mode: running.mode,
    admin: { ...next.admin, listen: running.admin.listen, token: running.admin.token },
    limits: { ...next.limits, maxHeaderSize: running.limits.maxHeaderSize },
    tls: running.tls === null || next.tls === null ? running.tls : { ...next.tls, redirectFrom: running.tls.redirectFrom },
  };
  return { config, changed: changedPaths(running, config), kept };
}

/** Leaf key paths of plain mappings whose values differ; lists and scalars compare whole. */
function changedPaths(a: unknown, b: unknown, prefix = ''): string[] {
  const isMap = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (isMap(a) && isMap(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((k) => changedPaths(a[k], b[k], prefix ? `${prefix}.${k}` : k));
  }
  return same(a, b) ? [] : [prefix];
}
