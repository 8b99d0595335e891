// The written forms of two kinds of configuration value, parsed and printed back: durations
// ("250ms", "30m", "7d", or whole seconds) and listen addresses ("host:port", ":port", "[::1]:port").

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
