// Several ticket cookies in one request → one Resolution: copies and ids deduplicated, every
// verified one loaded in one batch, the results classified strongest first.
import { TicketCodec } from './ticket.js';
import type { SessionLoader } from './load.js';
import type { KnownTicket, TicketCache } from './ticket-cache.js';
import type { LiveSession, Resolution } from './types.js';

/**
 * Several ticket cookies (cookie tossing from a sibling subdomain, or a changed cookie.domain):
 * every verified one is loaded, in one batch (the loads leave in the same event-loop turn:
 * one MGET on Redis). Copies of one ticket, or two tickets of one id (signed by different
 * secrets, or a renewed id and its successor), are one session. The result, strongest first:
 * - a live session next to a revoked one, or two different live sessions: 'mixed' (never
 *   served; a logout revokes them all; the revoked ones are replays);
 * - else a revoked one: 'revoked';
 * - else the one live session (an expired or forged ticket next to it is ignored);
 * - else expired, forged or unknown, as for one ticket.
 */
export async function resolveSeveral(ticketValues: readonly string[], tickets: TicketCache, loader: SessionLoader): Promise<Resolution> {
  const knowns = new Map<string, KnownTicket>();
  let shaped = false;
  for (const v of new Set(ticketValues)) {
    const known = tickets.get(v) ?? tickets.verified(v);
    if (known) knowns.set(known.key, known);
    else if (TicketCodec.hasTicketShape(v)) shaped = true;
  }
  if (knowns.size === 0) return shaped ? { state: 'forged' } : { state: 'unknown' };
  const results = await Promise.all(Array.from(knowns.values(), (k) => loader.resolveKnown(k)));
  const live = new Map<string, LiveSession>();
  const revoked: Array<Extract<Resolution, { state: 'revoked' }>> = [];
  let expired: Resolution | undefined;
  for (const r of results) {
    if (r.state === 'live') {
      if (!live.has(r.session.key)) live.set(r.session.key, r.session);
    } else if (r.state === 'revoked') revoked.push(r);
    else expired ??= r;
  }
  if (live.size > 1 || (live.size === 1 && revoked.length > 0)) {
    return { state: 'mixed', live: [...live.values()], revoked: revoked.map((r) => r.logId) };
  }
  if (revoked.length > 0) return revoked[0] as Resolution;
  const [session] = live.values();
  if (session) return { state: 'live', session };
  return expired as Resolution;
}
