// Cookie names, written once: the names a browser takes in traffic (RFC 6265bis, as Chromium and
// Firefox read them), the stricter RFC 6265 token grammar that configuration uses, and `*` name
// patterns. Pure.
//
// Header strings reach coatcheck decoded as latin1 (Node's HTTP server and the undici engine both
// do), one character per byte, and are written out as latin1 again: a UTF-8 name such as `prénom`
// is carried as its bytes (`prÃ©nom` in JS) from the app's Set-Cookie through the jar to the
// Cookie header the app gets back, and compared byte for byte. Nothing here may decode it, or
// trim a byte that happens to be a Unicode space (0xA0, the tail of `à`, is one: String#trim()
// would cut it); only SP and HTAB are whitespace to a cookie parser.

/** RFC 6265 cookie-name = token (RFC 9110 tchar). `*` is a tchar, so a pattern is a token too. */
const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * A name a browser keeps (RFC 6265bis §5.6, Chromium's and Firefox's parsers): any byte but the
 * controls (0x00-0x1F, 0x7F), `=` and `;`; not empty; no SP at either end (the parser trims it).
 * A tab inside a name is refused as tough-cookie refuses it (RFC 6265bis would keep it). Nothing
 * above 0xFF: a header string holds bytes.
 */
const BROWSER_NAME_RE = /^[\x21-\x3A\x3C\x3E-\x7E\x80-\xFF](?:[\x20-\x3A\x3C\x3E-\x7E\x80-\xFF]*[\x21-\x3A\x3C\x3E-\x7E\x80-\xFF])?$/;

/** Is `name` an RFC 6265 token? The names configuration accepts (`cookie.name`, `managed`, `onCookieCleared`). */
export function isCookieName(name: string): boolean {
  return TOKEN_RE.test(name);
}

/** Is `name` (already trimmed) a cookie name a browser accepts in a Set-Cookie or sends in a Cookie header? */
export function isBrowserCookieName(name: string): boolean {
  return BROWSER_NAME_RE.test(name);
}

/** Is `pattern` a cookie name or a name pattern with `*` wildcards, such as `_ga*`? (Configuration: tokens.) */
export function isCookieNamePattern(pattern: string): boolean {
  return TOKEN_RE.test(pattern);
}

/** Removes leading and trailing SP and HTAB, and nothing else (see the note at the top). */
export function trimWsp(s: string): string {
  let start = 0;
  let end = s.length;
  while (start < end && isWsp(s.charCodeAt(start))) start++;
  while (end > start && isWsp(s.charCodeAt(end - 1))) end--;
  return start === 0 && end === s.length ? s : s.slice(start, end);
}

function isWsp(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

/**
 * A cookie's name and value from its name-value pair (the text before a Set-Cookie's first `;`,
 * or one segment of a Cookie header), as RFC 6265bis splits it: at the first `=`, each side
 * trimmed of SP and HTAB. Undefined when there is no `=`, or the name is not one a browser takes
 * (empty, a control character): a nameless cookie (`Set-Cookie: foo`, `=foo`), which RFC 6265bis
 * and current browsers keep, is refused here as tough-cookie's strict parser and the http-state
 * corpus refuse it, because the app could not tell `=a=b` from a cookie named `a`.
 */
export function splitCookiePair(pair: string): { name: string; value: string } | undefined {
  const eq = pair.indexOf('=');
  if (eq === -1) return undefined;
  const name = trimWsp(pair.slice(0, eq));
  if (!isBrowserCookieName(name)) return undefined;
  return { name, value: trimWsp(pair.slice(eq + 1)) };
}

/** `_ga*` → /^_ga.*$/ ; every other character is literal. */
export function patternToRegExp(pattern: string): RegExp {
  const src = pattern
    .split('*')
    .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    .join('.*');
  return new RegExp(`^${src}$`);
}

/** A matcher for exact names and `*` patterns, compiled once. Names are compared byte for byte. */
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
