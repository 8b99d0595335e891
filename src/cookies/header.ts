// Pure helpers for the request `Cookie` header and `Set-Cookie` names. No I/O.
import { splitCookiePair } from './names.js';

export interface CookiePair {
  name: string;
  value: string;
}

/**
 * Splits a `Cookie` header into name/value pairs the way browsers write it and servers read it:
 * `;`-separated, SP and HTAB trimmed, segments without `=` or without a name a browser would take
 * skipped (never thrown on). Names and values are kept byte-for-byte (latin1 header strings, no
 * decoding, no Unicode trimming), so passthrough cookies reach the app unchanged.
 */
export function parseCookieHeader(header: string | undefined): CookiePair[] {
  if (!header) return [];
  const out: CookiePair[] = [];
  for (const segment of header.split(';')) {
    const pair = splitCookiePair(segment);
    if (pair !== undefined) out.push(pair);
  }
  return out;
}

/**
 * The cookie name of a `Set-Cookie` value, or undefined when it has none that a browser would
 * accept (see splitCookiePair: no `=`, an empty name, a control character).
 */
export function setCookieName(value: string): string | undefined {
  const semi = value.indexOf(';');
  return splitCookiePair(semi === -1 ? value : value.slice(0, semi))?.name;
}
