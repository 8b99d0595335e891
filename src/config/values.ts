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

/** Prints an address back as parseListen reads it (an IPv6 host in brackets). */
export function formatListen(addr: ListenAddress): string {
  return addr.host.includes(':') ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
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
