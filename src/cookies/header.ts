// Pure helpers for the request `Cookie` header and `Set-Cookie` names. No I/O.
import { patternToRegExp } from '../config/schema.js';

export interface CookiePair {
  name: string;
  value: string;
}

/**
 * Splits a `Cookie` header into name/value pairs the way servers read it: `;`-separated,
 * whitespace trimmed, segments without `=` or with an empty name skipped (never thrown on).
 * Values are kept byte-for-byte (no decoding), so passthrough cookies reach the app unchanged.
 */
export function parseCookieHeader(header: string | undefined): CookiePair[] {
  if (!header) return [];
  const out: CookiePair[] = [];
  for (const segment of header.split(';')) {
    const eq = segment.indexOf('=');
    if (eq <= 0) continue;
    const name = segment.slice(0, eq).trim();
    if (name === '') continue;
    out.push({ name, value: segment.slice(eq + 1).trim() });
  }
  return out;
}

export function serializeCookiePairs(pairs: readonly CookiePair[]): string {
  let s = '';
  for (const p of pairs) s += (s === '' ? '' : '; ') + p.name + '=' + p.value;
  return s;
}

const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** The cookie name of a `Set-Cookie` value, or undefined when it has none that a browser would accept. */
export function setCookieName(value: string): string | undefined {
  const semi = value.indexOf(';');
  const pair = semi === -1 ? value : value.slice(0, semi);
  const eq = pair.indexOf('=');
  if (eq <= 0) return undefined;
  const name = pair.slice(0, eq).trim();
  return TOKEN_RE.test(name) ? name : undefined;
}

/** A name matcher for exact names and `*` patterns, compiled once. */
export class NameMatcher {
  private readonly exact = new Set<string>();
  private readonly patterns: RegExp[] = [];
  constructor(patterns: readonly string[]) {
    for (const p of patterns) {
      if (p.includes('*')) {
        this.patterns.push(patternToRegExp(p));
      } else {
        this.exact.add(p);
      }
    }
  }
  matches(name: string): boolean {
    if (this.exact.has(name)) return true;
    for (const re of this.patterns) if (re.test(name)) return true;
    return false;
  }
}
