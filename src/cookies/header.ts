// Pure helpers for the request `Cookie` header and `Set-Cookie` names. No I/O.
import { isCookieName } from './names.js';

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

/** The cookie name of a `Set-Cookie` value, or undefined when it has none that a browser would accept. */
export function setCookieName(value: string): string | undefined {
  const semi = value.indexOf(';');
  const pair = semi === -1 ? value : value.slice(0, semi);
  const eq = pair.indexOf('=');
  if (eq <= 0) return undefined;
  const name = pair.slice(0, eq).trim();
  return isCookieName(name) ? name : undefined;
}
