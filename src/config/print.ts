// Prints the effective configuration as YAML (for `check-config`): every key, defaults filled
// in, durations as "30m", the logout key in its mapping form, secrets and passwords redacted.
// With the redactions replaced by the real values, the output loads back to an equal config.
import { Document, isScalar, isSeq, visit } from 'yaml';
import type { Config, Rule } from './schema.js';
import { formatDuration, formatListen } from './values.js';

/** What a secret or a password is printed as. */
export const REDACTED = '[redacted]';

export function printConfig(config: Config): string {
  const effective = {
    listen: formatListen(config.listen),
    upstream: config.upstream,
    mode: config.mode,
    upstreamTimeout: formatDuration(config.upstreamTimeout),
    shutdownTimeout: formatDuration(config.shutdownTimeout),
    trustProxy: config.trustProxy,
    workers: config.workers,
    store: {
      kind: config.store.kind,
      ...(config.store.url !== undefined ? { url: redactUrlPassword(config.store.url) } : {}),
      ...(config.store.sentinel !== undefined
        ? {
            sentinel: {
              name: config.store.sentinel.name,
              nodes: config.store.sentinel.nodes.map(formatListen),
              ...(config.store.sentinel.password !== undefined ? { password: REDACTED } : {}),
              tls: config.store.sentinel.tls,
            },
          }
        : {}),
      ...(config.store.cluster !== undefined ? { cluster: { nodes: config.store.cluster.nodes.map(formatListen) } } : {}),
      ...(config.store.username !== undefined ? { username: config.store.username } : {}),
      ...(config.store.password !== undefined ? { password: REDACTED } : {}),
      ...(config.store.db !== undefined ? { db: config.store.db } : {}),
      ...(config.store.kind === 'redis'
        ? { replicas: config.store.replicas, ...(config.store.replicas > 0 ? { replicaTimeout: formatDuration(config.store.replicaTimeout) } : {}) }
        : {}),
      prefix: config.store.prefix,
      timeout: formatDuration(config.store.timeout),
      connectTimeout: formatDuration(config.store.connectTimeout),
      maxSessions: config.store.maxSessions,
    },
    secrets: config.secrets.map(() => REDACTED),
    cookie: { ...config.cookie },
    session: {
      idleTimeout: formatDuration(config.session.idleTimeout),
      absoluteTimeout: formatDuration(config.session.absoluteTimeout),
      managed: config.session.managed === '*' ? '*' : [...config.session.managed],
      passthrough: [...config.session.passthrough],
      renewAfter: config.session.renewAfter === null ? null : formatDuration(config.session.renewAfter),
      renewGrace: formatDuration(config.session.renewGrace),
      bind: [...config.session.bind],
      bindMismatch: config.session.bindMismatch,
      maxPerUser: config.session.maxPerUser,
    },
    logout: {
      rules: config.logout.rules.map(printRule),
      onCookieCleared: [...config.logout.onCookieCleared],
      clearSiteData: config.logout.clearSiteData,
    },
    login: config.login.map(printRule),
    invalidSession: { ...config.invalidSession },
    log: { ...config.log },
    limits: { ...config.limits },
    websocket: { ...config.websocket },
    admin: { listen: config.admin.listen === null ? null : formatListen(config.admin.listen), token: config.admin.token === null ? null : REDACTED },
    tls:
      config.tls === null
        ? null
        : { ...config.tls, redirectFrom: config.tls.redirectFrom === null ? null : formatListen(config.tls.redirectFrom) },
  };
  const doc = new Document(effective);
  // Lists of plain values (secrets, methods, cookie names) on one line: `methods: [GET, POST]`.
  visit(doc, {
    Seq(_key, node) {
      if (isSeq(node) && node.items.every((item) => isScalar(item))) node.flow = true;
    },
  });
  doc.commentBefore = ' effective configuration; secrets and passwords are redacted';
  return doc.toString({ lineWidth: 0, flowCollectionPadding: false });
}

/**
 * `{path|prefix, methods, caseSensitive, user, scope}`; a rule without methods matches every
 * method; caseSensitive only when true, user when given, scope when not "session".
 */
function printRule(rule: Rule): Record<string, unknown> {
  return {
    [rule.kind === 'exact' ? 'path' : 'prefix']: rule.path,
    ...(rule.methods !== null ? { methods: [...rule.methods] } : {}),
    ...(rule.caseSensitive ? { caseSensitive: true } : {}),
    ...('user' in rule && rule.user !== undefined ? { user: { ...rule.user } } : {}),
    ...('scope' in rule && rule.scope !== undefined ? { scope: rule.scope } : {}),
  };
}

/** `redis://user:pw@host/0` → `redis://user:[redacted]@host/0`; everything else kept as written. */
export function redactUrlPassword(url: string): string {
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)([^/?#]*)@/.exec(url);
  if (!m) return url;
  const userinfo = m[2] as string;
  const colon = userinfo.indexOf(':');
  if (colon === -1) return url;
  return `${m[1]}${userinfo.slice(0, colon)}:${REDACTED}@${url.slice(m[0].length)}`;
}
