// Warnings: a valid configuration that is allowed but risky (a ticket name without __Host-,
// plain-HTTP ticket, memory store, weak, repeated or defaulted secrets, Secure cookies behind a
// proxy that is not trusted, nothing in the configuration that ends a session early), as
// "file:line:col: key.path: message". Never a secret's value.
import type { Document } from 'yaml';
import { formatConfigProblem } from '../errors.js';
import { dotted, locate, sortProblems } from './positions.js';
import type { At, Located, Path } from './positions.js';
import type { Config } from './schema.js';
import { formatListen, isLoopbackHost } from './values.js';

export interface WarningSource {
  file: string;
  doc: Document;
  at: At;
  /** Dotted path of a value → the first variable whose `${VAR:-default}` default it used. */
  defaulted: ReadonlyMap<string, string>;
}

export function collectWarnings(config: Config, { file, doc, at, defaulted }: WarningSource): string[] {
  const out: Located[] = [];
  const warn = (path: Path, message: string): void => {
    // A warning about a default points at the parent key when there is one, else nowhere.
    const found = locate(doc, path);
    out.push({ path: dotted(path), message, ...at(found.exists ? (found.offset ?? found.keyOffset) : found.keyOffset) });
  };
  if (!config.cookie.name.startsWith('__Host-')) {
    warn(
      ['cookie', 'name'],
      `is ${JSON.stringify(config.cookie.name)}, without the "__Host-" prefix, so another host of the site (a sibling subdomain${config.cookie.domain ? ` under ${config.cookie.domain}` : ''}, or a page served over plain HTTP) can plant a ticket cookie of this name, for example with Path=/logout so that browsers send it before the real one; coatcheck revokes every live ticket a logout carries and refuses a request with two live ones, but a planted ticket still makes users log in again; use "__Host-coatcheck" with cookie.secure: true and no cookie.domain unless the ticket must be shared across subdomains`,
    );
  }
  if (!config.cookie.secure) {
    warn(['cookie', 'secure'], 'is false, so the ticket cookie travels over plain HTTP, where anyone on the network can copy it and take over the session; use only for local development');
  }
  if (config.store.kind === 'memory') {
    const explicit = locate(doc, ['store', 'kind']).exists;
    warn(
      ['store', 'kind'],
      `is memory${explicit ? '' : ' (the default)'}: sessions live in this process only, are not shared between instances and are lost on restart; use redis in production`,
    );
  }
  if (config.cookie.secure && config.trustProxy === false && !isLoopbackHost(config.listen.host)) {
    warn(
      ['trustProxy'],
      `is false, yet listen is ${formatListen(config.listen)} (not loopback) and cookie.secure is true. coatcheck speaks plain HTTP, so browsers reach it through a TLS-terminating proxy; without trustProxy every request counts as plain HTTP, and the app's Secure cookies are refused (upstream.set_cookie_rejected), so its users get no session. Fix: set trustProxy: true, and let only that proxy reach coatcheck`,
    );
  }
  if (config.logout.rules.length === 0 && config.logout.onCookieCleared.length === 0) {
    warn(
      ['logout'],
      'has no rule and no onCookieCleared: coatcheck itself never ends a session early, so a logout in the app leaves the session (and a copied ticket) alive until session.idleTimeout or session.absoluteTimeout, unless the app answers its logout with the header "Coatcheck-Session: revoke". Add the logout path(s) as rules, or the app\'s session cookie to logout.onCookieCleared',
    );
  }
  if (config.mode === 'report-only') {
    warn(
      ['mode'],
      'is report-only: every cookie is forwarded untouched and nothing is enforced (no jar, no ticket, no stripping, no rejection; a store failure lets every request through); logged-out cookies presented again are only reported. A rollout step: switch to enforce once the reports are understood (README, "Report-only rollout")',
    );
  }
  const seen = new Map<string, number>();
  config.secrets.forEach((secret, i) => {
    const first = seen.get(secret);
    if (first !== undefined) {
      warn(['secrets', i], `is the same as secrets[${first}]`);
    } else {
      seen.set(secret, i);
    }
    const variable = defaulted.get(`secrets[${i}]`);
    if (variable !== undefined) {
      warn(['secrets', i], `environment variable ${JSON.stringify(variable)} is not set, so the default written in the configuration file is used; anyone who can read the file can forge tickets`);
    } else if (new Set(secret).size < 8) {
      warn(['secrets', i], `has only ${new Set(secret).size} distinct characters and looks like a placeholder; use a random value, e.g. \`openssl rand -base64 48\``);
    }
  });
  return sortProblems(out).map((w) => formatConfigProblem(file, w));
}
