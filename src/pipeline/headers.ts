// Header helpers both directions share: what never crosses the proxy. Pure.

/** Headers that belong to one connection and never cross the proxy (RFC 9110 §7.6.1). */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/**
 * The header names listed in every `Connection` header of a raw header list (lower case): they
 * are hop-by-hop too. undefined when there is no `Connection` header, so the common case
 * allocates nothing.
 */
export function connectionListed(raw: readonly string[]): Set<string> | undefined {
  let listed: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 10 && name.toLowerCase() === 'connection') {
      listed ??= new Set<string>();
      for (const t of (raw[i + 1] as string).split(',')) listed.add(t.trim().toLowerCase());
    }
  }
  return listed;
}

/** The first value of a header Node may have joined into an array. */
export function firstHeader(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
