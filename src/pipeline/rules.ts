// Logout and login rules: the path they are matched against, and the match. Pure.
import type { Rule } from '../config/schema.js';

/**
 * A path with nothing to resolve or decode: segments of unreserved and sub-delim characters
 * (no %, no empty segment), optionally one trailing "/". Each repetition starts with "/", so the
 * match is linear (an earlier form, `(?:[…]+\/?)*`, backtracked exponentially on a long segment
 * followed by a "%").
 */
const PLAIN_PATH_RE = /^(?:\/[A-Za-z0-9\-._~!$&'()*+,;=:@]+)*\/?$/;
const DOT_SEGMENT_RE = /\/\.\.?(?:\/|$)/;
const ESCAPE_RE = /%([0-9A-Fa-f]{2})/g;
const UNRESERVED_RE = /[A-Za-z0-9\-._~]/;

/** The path rules are matched against: dot segments resolved, `//` collapsed, unreserved escapes decoded. */
export function normalizePath(rawPath: string): string {
  // Fast path: nothing to resolve or decode (no dot segments, no %, no //).
  if (PLAIN_PATH_RE.test(rawPath) && !DOT_SEGMENT_RE.test(rawPath)) return rawPath;
  let p: string;
  try {
    // Appended to an origin, not resolved against one: "//logout" is a path here, never an
    // authority (new URL('//logout', base) would read a host "logout" and the path "/").
    p = new URL(`http://x${rawPath}`).pathname;
  } catch {
    return rawPath;
  }
  p = p.replace(/\/{2,}/g, '/');
  // Decode only unreserved characters, so /%6Cogout matches /logout but %2F stays a literal.
  return p.replace(ESCAPE_RE, (m, hex: string) => {
    const c = String.fromCharCode(parseInt(hex, 16));
    return UNRESERVED_RE.test(c) ? c : m.toUpperCase();
  });
}

/** Does any rule match this method and normalized path? */
export function ruleMatches(rules: readonly Rule[], method: string, pathname: string): boolean {
  for (const r of rules) {
    if (r.methods && !r.methods.includes(method)) continue;
    if (r.kind === 'exact') {
      if (pathname === r.path || (pathname.length === r.path.length + 1 && pathname.endsWith('/') && pathname.startsWith(r.path))) return true;
    } else {
      const p = r.path.endsWith('/') ? r.path : `${r.path}/`;
      if (pathname === r.path || pathname.startsWith(p)) return true;
    }
  }
  return false;
}
