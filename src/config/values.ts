// The written forms of three kinds of configuration value, parsed and printed back: durations
// ("250ms", "30m", "7d", or whole seconds), listen addresses ("host:port", ":port", "[::1]:port")
// and trusted proxy networks ("10.0.0.0/8", "fd00::/8", "loopback").
import { isIP } from 'node:net';

const DURATION_RE = /^(\d+)(ms|s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses "250ms", "30s", "30m", "12h", "7d" or an integer number of seconds into milliseconds. */
export function parseDuration(input: unknown): number | undefined {
  if (typeof input === 'number') {
    return Number.isSafeInteger(input) && input >= 0 && Number.isSafeInteger(input * 1000) ? input * 1000 : undefined;
  }
  if (typeof input !== 'string') return undefined;
  const s = input.trim();
  if (/^\d+$/.test(s)) {
    const ms = Number(s) * 1000;
    return Number.isSafeInteger(ms) ? ms : undefined;
  }
  const m = DURATION_RE.exec(s);
  if (!m) return undefined;
  const ms = Number(m[1]) * (UNIT_MS[m[2] as string] as number);
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/** Prints milliseconds back as the shortest exact duration string. */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms !== 0 && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

export interface ListenAddress {
  host: string;
  port: number;
}

/** "host:port", ":port", "[::1]:port". */
export function parseListen(input: string): ListenAddress | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]*)):(\d{1,5})$/.exec(input.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  const host = m[1] ?? m[2] ?? '';
  return { host: host === '' ? '0.0.0.0' : host, port };
}

/** A Redis node, "host:port", "[v6]:port" or a bare host (then `defaultPort`). Undefined when malformed. */
export function parseNode(input: string, defaultPort: number): ListenAddress | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s/@]+))(?::(\d{1,5}))?$/.exec(input.trim());
  if (!m) return undefined;
  const port = m[3] === undefined ? defaultPort : Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  return { host: (m[1] ?? m[2]) as string, port };
}

/** Prints an address back as parseListen reads it (an IPv6 host in brackets). */
export function formatListen(addr: ListenAddress): string {
  return addr.host.includes(':') ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
}

const UNIT_WORDS: Record<string, string> = {
  ms: 'ms', msec: 'ms', msecs: 'ms', millisecond: 'ms', milliseconds: 'ms',
  s: 's', sec: 's', secs: 's', second: 's', seconds: 's',
  m: 'm', min: 'm', mins: 'm', minute: 'm', minutes: 'm',
  h: 'h', hr: 'h', hrs: 'h', hour: 'h', hours: 'h',
  d: 'd', day: 'd', days: 'd',
};

/**
 * The one duration a value that is not one probably meant, written as one: "1h30m" → "90m",
 * "1.5h" → "90m", "30 minutes" → "30m", "5S" → "5s". Undefined when there is no clear reading.
 */
export function suggestDuration(input: unknown): string | undefined {
  if (typeof input !== 'string') return undefined;
  const s = input.trim().toLowerCase();
  const part = /(\d+(?:\.\d+)?)\s*([a-z]+)\s*(?:,|and)?\s*/gy;
  let total = 0;
  let end = 0;
  let parts = 0;
  for (let m = part.exec(s); m; m = part.exec(s)) {
    const unit = UNIT_WORDS[m[2] as string];
    if (unit === undefined) return undefined;
    total += Number(m[1]) * (UNIT_MS[unit] as number);
    end = part.lastIndex;
    parts++;
  }
  if (parts === 0 || end !== s.length) return undefined;
  const ms = Math.round(total * 1000) / 1000;
  if (!Number.isSafeInteger(ms)) return undefined;
  const suggestion = formatDuration(ms);
  return suggestion === input ? undefined : suggestion;
}

/** 127.0.0.0/8, ::1 (also as ::ffff:127.x.y.z) and localhost: addresses only this machine can reach. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost') || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

// Header values. Node refuses a header value holding a character above U+00FF (the request
// then fails with 500) and sends U+0080–U+00FF as single Latin-1 bytes, which a browser does not
// read back as the character that was written. So a configured value that goes into a header is
// checked (or made safe) when the configuration is loaded, never at the first request.

// eslint-disable-next-line no-control-regex
const CONTROL_RE = /[\u0000-\u001f\u007f]/;
const LONE_SURROGATE_RE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** "U+000A" for a message. */
function codePoint(ch: string): string {
  return `U+${(ch.codePointAt(0) as number).toString(16).toUpperCase().padStart(4, '0')}`;
}

/**
 * A redirect location as it may go into a `Location` header: control characters are refused;
 * non-ASCII characters in the path, query or fragment are percent-encoded as UTF-8 (what a
 * browser does when it follows such a link, so the meaning is unchanged); non-ASCII in the
 * scheme or host is refused, since there it would need IDNA (the `xn--` form), which is the
 * operator's to write.
 */
export function headerLocation(input: string): { value: string } | { error: string } {
  const control = CONTROL_RE.exec(input);
  if (control) return { error: `holds a control character (${codePoint(control[0])}), which cannot go into a Location header` };
  if (LONE_SURROGATE_RE.test(input)) return { error: 'holds an unpaired UTF-16 surrogate, which is not a character' };
  // The scheme and authority: up to the first "/", "?" or "#" after "scheme://" or "//".
  const authority = /^(?:[a-zA-Z][a-zA-Z0-9+.-]*:)?\/\/[^/?#]*/.exec(input)?.[0] ?? /^[^/?#]*:/.exec(input)?.[0] ?? '';
  // eslint-disable-next-line no-control-regex
  const wide = /[^\u0000-\u007f]/u.exec(authority);
  if (wide) {
    return { error: `has a non-ASCII character (${JSON.stringify(wide[0])}) in its scheme or host; write an internationalized host name in its ASCII "xn--" form` };
  }
  // eslint-disable-next-line no-control-regex
  return { value: input.replace(/[^\u0000-\u007f]/gu, (ch) => encodeURIComponent(ch)) };
}

/**
 * Why a `Domain` attribute value cannot be used, or undefined: a host name of ASCII letters,
 * digits, "-" and "." (an optional leading "." is ignored by browsers), nothing that would end
 * the attribute (";"), split the header (controls) or be read differently by browsers.
 */
export function cookieDomainProblem(input: string): string | undefined {
  const control = CONTROL_RE.exec(input);
  if (control) return `holds a control character (${codePoint(control[0])}); expected a domain name such as "example.com"`;
  // eslint-disable-next-line no-control-regex
  const wide = /[^\u0000-\u007f]/u.exec(input);
  if (wide) return `has a non-ASCII character (${JSON.stringify(wide[0])}); write an internationalized domain name in its ASCII "xn--" form`;
  const bad = /[^A-Za-z0-9.-]/.exec(input);
  if (bad) return `holds ${bad[0] === ' ' ? 'a space' : JSON.stringify(bad[0])}, which a cookie's Domain cannot hold; expected a domain name such as "example.com"`;
  if (!/^\.?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*$/.test(input)) return 'expected a domain name such as "example.com" (labels separated by single dots)';
  return undefined;
}

/** One trusted network: an address family, a network address and a prefix length. */
export interface TrustedNetwork {
  family: 'ipv4' | 'ipv6';
  address: string;
  prefix: number;
}

/** The names Express' trust-proxy setting also accepts, and the networks they stand for. */
const TRUST_PRESETS: Readonly<Record<string, readonly string[]>> = {
  loopback: ['127.0.0.0/8', '::1/128'],
  linklocal: ['169.254.0.0/16', 'fe80::/10'],
  uniquelocal: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'],
};

const MAPPED_V4_RE = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;

/**
 * Parses one `trustProxy` list entry: an IPv4 or IPv6 address, a CIDR ("10.0.0.0/8",
 * "fd00::/8"), or one of `loopback`, `linklocal`, `uniquelocal`. An IPv4-mapped IPv6 address
 * ("::ffff:10.0.0.1", "::ffff:10.0.0.0/104") is read as the IPv4 address it maps. Returns the
 * networks, or a message saying what is wrong.
 */
export function parseTrustedNetwork(input: string): TrustedNetwork[] | string {
  const s = input.trim();
  const preset = TRUST_PRESETS[s.toLowerCase()];
  if (preset) return preset.map((p) => parseTrustedNetwork(p) as TrustedNetwork[]).flat();
  const slash = s.indexOf('/');
  let address = slash === -1 ? s : s.slice(0, slash);
  const bits = slash === -1 ? undefined : s.slice(slash + 1);
  let family = isIP(address);
  if (family === 0) {
    return `expected an IP address, a CIDR such as "10.0.0.0/8" or "fd00::/8", or one of "loopback", "linklocal", "uniquelocal"; got ${JSON.stringify(input)}`;
  }
  const max = family === 4 ? 32 : 128;
  let prefix = max;
  if (bits !== undefined) {
    if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) {
      return `the prefix length of ${JSON.stringify(input)} must be a whole number from 0 to ${max} for an ${family === 4 ? 'IPv4' : 'IPv6'} address`;
    }
    prefix = Number(bits);
  }
  const mapped = family === 6 ? MAPPED_V4_RE.exec(address) : null;
  if (mapped) {
    if (prefix < 96) return `${JSON.stringify(input)} is an IPv4-mapped IPv6 network, so its prefix length must be at least 96`;
    address = mapped[1] as string;
    family = 4;
    prefix -= 96;
  }
  return [{ family: family === 4 ? 'ipv4' : 'ipv6', address, prefix }];
}
