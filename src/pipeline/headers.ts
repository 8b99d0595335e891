// Header helpers: what never crosses the proxy, which peers are trusted proxies and who the
// client is, the request id. Pure.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { BlockList, isIP } from 'node:net';
import type { Config } from '../config/schema.js';
import { parseTrustedNetwork, type TrustedNetwork } from '../config/values.js';
import { FifoCache } from '../util/fifo-cache.js';

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

/**
 * Which hops are trusted proxies (`trustProxy`), as Express' trust-proxy setting: `hop` is the
 * distance from coatcheck (0: the peer on our socket, 1: the last X-Forwarded-For entry, …).
 * `true` trusts the peer only, one hop; a count n trusts n hops; a list trusts the addresses in it.
 */
export interface ProxyTrust {
  /** false when nothing is ever trusted (`trustProxy: false`): the common case costs one check. */
  readonly any: boolean;
  trusts(address: string, hop: number): boolean;
}

/** Addresses whose trust is remembered (a few hundred KB at most). */
const TRUST_CACHE = 4096;

export function proxyTrust(setting: Config['trustProxy']): ProxyTrust {
  if (setting === false) return { any: false, trusts: () => false };
  if (setting === true || typeof setting === 'number') {
    const hops = setting === true ? 1 : setting;
    return { any: true, trusts: (_address, hop) => hop < hops };
  }
  const list = new BlockList();
  for (const entry of setting) {
    // The schema has checked every entry.
    for (const n of parseTrustedNetwork(entry) as TrustedNetwork[]) list.addSubnet(n.address, n.prefix, n.family);
  }
  // BlockList.check costs about 10 µs (it builds a SocketAddress); peers and clients recur, so
  // answers are kept in a bounded cache.
  const known = new FifoCache<string, boolean>(TRUST_CACHE);
  return {
    any: true,
    // BlockList matches an IPv4-mapped IPv6 address (::ffff:10.0.0.1) against IPv4 networks.
    trusts: (address) => {
      let trusted = known.get(address);
      if (trusted === undefined) {
        const family = isIP(address);
        trusted = family !== 0 && list.check(address, family === 4 ? 'ipv4' : 'ipv6');
        known.set(address, trusted);
      }
      return trusted;
    },
  };
}

/** An X-Forwarded-For entry's address: brackets and a port taken off; undefined if not an IP. */
function forwardedAddress(entry: string): string | undefined {
  let a = entry;
  if (a.startsWith('[')) {
    const end = a.indexOf(']');
    a = end === -1 ? '' : a.slice(1, end);
  } else if (a.indexOf(':') !== -1 && a.indexOf(':') === a.lastIndexOf(':')) {
    a = a.slice(0, a.indexOf(':')); // IPv4 with a port
  }
  return isIP(a) !== 0 ? a : undefined;
}

export interface ClientAddress {
  /** The client, as coatcheck determined it. */
  client: string;
  /** The peer is a trusted proxy: its X-Forwarded-* are believed. */
  proxied: boolean;
}

/**
 * Who the client is. An untrusted peer is the client, and its X-Forwarded-For is not read.
 * Behind a trusted peer, X-Forwarded-For (every line, joined) is walked from the right: the
 * client is the first address that is not trusted, or the leftmost when all are. An entry that
 * is not an IP address ends the walk, and the hop that forwarded it is the client.
 */
export function clientAddress(peer: string, xff: string | undefined, trust: ProxyTrust): ClientAddress {
  if (!trust.any || !trust.trusts(peer, 0)) return { client: peer, proxied: false };
  let client = peer;
  if (xff === undefined) return { client, proxied: true };
  const entries = xff.split(',');
  let hop = 1;
  for (let i = entries.length - 1; i >= 0; i--) {
    const entry = (entries[i] as string).trim();
    if (entry === '') continue;
    const address = forwardedAddress(entry);
    if (address === undefined) break;
    client = address;
    if (!trust.trusts(address, hop++)) break;
  }
  return { client, proxied: true };
}

const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * The request's id: the client's `X-Request-Id` when there is exactly one and it is a plain
 * token (letters, digits, `.`, `_`, `:`, `-`, at most 128), else a new UUID. It is the id
 * coatcheck logs and the only `X-Request-Id` the app receives.
 */
export function requestIdOf(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && REQUEST_ID_RE.test(given) ? given : randomUUID();
}
