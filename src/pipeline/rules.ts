// Logout and login rules: the path and methods they are matched against, and the match. Pure.
// The normalization is documented, with examples, in README.md ("How rules match").
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

/**
 * The path rules are matched against, from the request target (path and query) and its
 * normalized path: `;` parameters removed from every segment (as Java servlet containers do,
 * before dot segments are resolved, so `/a/..;/logout` is `/logout`), then normalized. A path
 * without `;` is the normalized path itself (no work, no allocation).
 */
export function rulePath(target: string, pathname: string): string {
  const q = target.indexOf('?');
  const semi = target.indexOf(';');
  if (semi === -1 || (q !== -1 && semi > q)) return pathname;
  const raw = q === -1 ? target : target.slice(0, q);
  return normalizePath(raw.replace(PATH_PARAM_RE, ''));
}

const PATH_PARAM_RE = /;[^/]*/g;
const METHOD_TOKEN_RE = /^[A-Z]+$/;
const OVERRIDE_HEADERS = ['x-http-method-override', 'x-http-method', 'x-method-override'] as const;

/** Adds a method (and GET for HEAD) to a candidate list, once each. */
function addMethod(list: string[], value: string): void {
  const m = value.trim().toUpperCase();
  if (!METHOD_TOKEN_RE.test(m)) return;
  if (!list.includes(m)) list.push(m);
  if (m === 'HEAD' && !list.includes('GET')) list.push('GET');
}

/**
 * The methods a request counts as for rule matching: its own; GET for HEAD (frameworks answer
 * HEAD with the GET handler); and every method named by the override headers
 * (X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override; a list counts each entry) and by
 * `extra` (the `_method` fields of a POST). A plain request gets its method back, unallocated.
 */
export function requestMethods(method: string, headers: Readonly<Record<string, string | string[] | undefined>>, extra?: readonly string[]): string | readonly string[] {
  let list: string[] | undefined;
  if (method === 'HEAD') list = ['HEAD', 'GET'];
  for (const name of OVERRIDE_HEADERS) {
    const v = headers[name];
    if (v === undefined) continue;
    list ??= [method];
    for (const item of Array.isArray(v) ? v : [v]) for (const m of item.split(',')) addMethod(list, m);
  }
  if (extra !== undefined && extra.length > 0) {
    list ??= [method];
    for (const m of extra) addMethod(list, m);
  }
  return list ?? method;
}

/**
 * How a rule list matched a request: `path` when a rule took the path but none the method (a
 * `_method` field may still decide).
 */
export type RuleMatch = 'none' | 'path' | 'match';

/** A rule as the matcher uses it: its path without a trailing "/", lower-cased unless case-sensitive. */
interface CompiledRule {
  readonly exact: boolean;
  /** "" for the root. */
  readonly base: string;
  readonly caseSensitive: boolean;
  readonly methods: readonly string[] | null;
}

const compiled = new WeakMap<readonly Rule[], readonly CompiledRule[]>();

function compile(rules: readonly Rule[]): readonly CompiledRule[] {
  let out = compiled.get(rules);
  if (out === undefined) {
    out = rules.map((r) => {
      const base = r.path.endsWith('/') ? r.path.slice(0, -1) : r.path;
      return { exact: r.kind === 'exact', base: r.caseSensitive ? base : base.toLowerCase(), caseSensitive: r.caseSensitive, methods: r.methods };
    });
    compiled.set(rules, out);
  }
  return out;
}

/**
 * Does a rule take this path (already through rulePath)? With q the path without one trailing
 * "/" and b the rule's path without one:
 * - exact: q is b, or b followed by a format suffix: "." and anything without "/" (`/logout.json`);
 * - prefix: the same, or the path goes on below b (`b/…`); a root prefix takes every path.
 * Compared lower-cased unless the rule is case-sensitive.
 */
function pathMatches(r: CompiledRule, path: string, lower: string): boolean {
  const p = r.caseSensitive ? path : lower;
  const b = r.base;
  if (b === '') return r.exact ? p === '/' : true;
  const q = p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p;
  if (!q.startsWith(b)) return false;
  if (q.length === b.length) return true;
  const next = q.charCodeAt(b.length);
  if (next === 0x2e /* . */ && q.indexOf('/', b.length) === -1) return true;
  return !r.exact && next === 0x2f /* / */;
}

/**
 * Matches a request against a rule list: `match` when a rule takes its path and one of its methods
 * (see requestMethods), `path` when a rule takes the path but not the method.
 */
export function matchRuleList(rules: readonly Rule[], methods: string | readonly string[], path: string): RuleMatch {
  if (rules.length === 0) return 'none';
  const lower = path.toLowerCase();
  let result: RuleMatch = 'none';
  for (const r of compile(rules)) {
    if (!pathMatches(r, path, lower)) continue;
    const allowed = r.methods;
    if (allowed === null) return 'match';
    if (typeof methods === 'string' ? allowed.includes(methods) : methods.some((m) => allowed.includes(m))) return 'match';
    result = 'path';
  }
  return result;
}

/** Does any rule match this method (or methods) and rule path? */
export function ruleMatches(rules: readonly Rule[], methods: string | readonly string[], path: string): boolean {
  return matchRuleList(rules, methods, path) === 'match';
}

/** The first rule that takes this path and one of these methods (the one whose options apply), if any. */
export function findRule<R extends Rule>(rules: readonly R[], methods: string | readonly string[], path: string): R | undefined {
  if (rules.length === 0) return undefined;
  const lower = path.toLowerCase();
  const list = compile(rules);
  for (let i = 0; i < list.length; i++) {
    const r = list[i] as CompiledRule;
    if (!pathMatches(r, path, lower)) continue;
    const allowed = r.methods;
    if (allowed === null || (typeof methods === 'string' ? allowed.includes(methods) : methods.some((m) => allowed.includes(m)))) return rules[i];
  }
  return undefined;
}
