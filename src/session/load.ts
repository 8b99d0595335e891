// A verified id → what the store holds for it: live (its record opened, or reused while its
// version and tag are unchanged), expired, revoked, or followed through a renewal alias.
import type { Cookie } from 'tough-cookie';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import type { SessionStore } from '../store/types.js';
import { hasTag, jarKeyOf, open, openRecord } from './crypto.js';
import { decodeRecord, type OpenedRecord } from './record.js';
import { SID_BYTES, type TicketCodec } from './ticket.js';
import type { KnownTicket, TicketCache } from './ticket-cache.js';
import type { LiveSession, Resolution, SessionTimeouts } from './types.js';

/** Additional data that binds a sealed successor id to its purpose. */
export const SUCCESSOR_FIELD = '@n';

export class SessionLoader {
  constructor(
    private readonly store: SessionStore,
    private readonly codec: TicketCodec,
    private readonly tickets: TicketCache,
    private readonly timeouts: SessionTimeouts,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  async resolveKnown(known: KnownTicket): Promise<Resolution> {
    const { sid, key, logId } = known;
    // The revoke-all time goes with the load (one read per event-loop turn: DirectoryStore). Both
    // are asked for now and awaited in turn (no Promise.all per request): a failed revoke-all
    // read is never left unhandled (DirectoryStore.revokedBefore).
    const revokedBefore = this.store.directory.revokedBefore();
    const found = await this.store.load(key);
    const before = await revokedBefore;
    const now = this.clock();
    switch (found.state) {
      case 'none':
        return { state: 'expired', logId };
      case 'revoked':
        return { state: 'revoked', logId };
      case 'renewed': {
        // Past its grace window a renewed id is as dead as a revoked one: presenting it is a replay.
        if (now >= found.graceUntil) return { state: 'revoked', logId, family: found.family };
        const successor = this.openSuccessor(sid, found.successor);
        if (!successor) return { state: 'revoked', logId, family: found.family };
        const next = await this.loadLive(successor, now);
        if (next.state !== 'live') return next.state === 'revoked' ? { state: 'revoked', logId, family: found.family } : { state: 'expired', logId };
        next.session.successorTicket = this.codec.sign(successor);
        return next;
      }
      case 'live':
        return this.live(known, found.version, found.data, now, before);
    }
  }

  async loadLive(sid: Buffer, now: number): Promise<Resolution> {
    const known = this.tickets.know(sid);
    const revokedBefore = this.store.directory.revokedBefore();
    const found = await this.store.load(known.key);
    const before = await revokedBefore;
    if (found.state === 'live') return this.live(known, found.version, found.data, now, before);
    if (found.state === 'none') return { state: 'expired', logId: known.logId };
    return { state: 'revoked', logId: known.logId };
  }

  /** `before`: the revoke-all time (0: none); a session created by then counts as revoked. */
  private live(known: KnownTicket, version: number, data: Buffer, now: number, before: number): Resolution {
    const { sid, key, logId } = known;
    const jarKey = (known.jarKey ??= jarKeyOf(sid));
    const hit = known.opened;
    let record: OpenedRecord | undefined;
    if (hit !== undefined && hit.version === version && hasTag(data, hit.tag)) {
      record = hit.record;
    } else {
      const plain = openRecord(jarKey, data);
      record = plain === undefined ? undefined : decodeRecord(plain);
      if (!record) {
        // Tampered with, copied from another session, or damaged: nothing in it can be trusted.
        this.logger.warn({ event: 'session.record_unreadable', session: logId }, 'a session record could not be opened; the session is treated as expired');
        return { state: 'expired', logId };
      }
      this.tickets.opened(known, version, data, record);
    }
    const { meta } = record;
    if (meta.created <= before) return { state: 'revoked', logId, family: meta.family };
    if (now >= meta.deadline || now >= meta.touched + this.timeouts.idleTimeout) return { state: 'expired', logId };
    const cookies = now < record.firstExpiry ? record.cookies : unexpired(record.cookies, now);
    const session: LiveSession = { sid, key, logId, meta, jarKey, cookies, version };
    if (known.ticket !== undefined) session.cached = known;
    return { state: 'live', session };
  }

  private openSuccessor(sid: Buffer, sealed: string): Buffer | undefined {
    const text = open(jarKeyOf(sid), SUCCESSOR_FIELD, sealed);
    if (text === undefined) return undefined;
    const next = Buffer.from(text, 'base64url');
    return next.length === SID_BYTES ? next : undefined;
  }
}

/** The cookies of a jar that have not expired at `now`. */
function unexpired(cookies: ReadonlyMap<string, Cookie>, now: number): Map<string, Cookie> {
  const out = new Map<string, Cookie>();
  for (const [field, cookie] of cookies) {
    if (cookie.expires instanceof Date && cookie.expires.getTime() <= now) continue;
    out.set(field, cookie);
  }
  return out;
}
