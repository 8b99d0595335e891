// Cookie names: the RFC 6265 grammar and `*` name patterns, written once for the config schema,
// the cookie policy and Set-Cookie parsing. Pure.

/** RFC 6265 cookie-name = token (RFC 9110 tchar). `*` is a tchar, so a pattern is a token too. */
const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Is `name` a cookie name a browser would accept? */
export function isCookieName(name: string): boolean {
  return TOKEN_RE.test(name);
}

/** Is `pattern` a cookie name or a name pattern with `*` wildcards, such as `_ga*`? */
export function isCookieNamePattern(pattern: string): boolean {
  return TOKEN_RE.test(pattern);
}

/** `_ga*` → /^_ga.*$/ ; every other character is literal. */
export function patternToRegExp(pattern: string): RegExp {
  const src = pattern
    .split('*')
    .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    .join('.*');
  return new RegExp(`^${src}$`);
}

/** A matcher for exact names and `*` patterns, compiled once. */
export class NameMatcher {
  private readonly exact = new Set<string>();
  private readonly patterns: RegExp[] = [];
  constructor(patterns: readonly string[]) {
    for (const p of patterns) {
      if (p.includes('*')) this.patterns.push(patternToRegExp(p));
      else this.exact.add(p);
    }
  }
  matches(name: string): boolean {
    if (this.exact.has(name)) return true;
    for (const re of this.patterns) if (re.test(name)) return true;
    return false;
  }
}
