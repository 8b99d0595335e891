// New ids for live sessions: rotation at a login (a new family; the old id dies at once) and
// periodic renewal (same family; the old id an alias for a grace window), compare-and-set.
import type { RenewalAlias } from '../store/types.js';
import { bindHash } from './binding.js';
import { jarKeyOf, seal, sealRecord, storeKeyOf } from './crypto.js';
import { buildJar } from './jar-builder.js';
import { SUCCESSOR_FIELD } from './load.js';
import { encodeRecord, type SessionMeta } from './record.js';
import type { CommitInput, CommitOutcome, LiveSession, Rotation } from './types.js';
import { MAX_WRITE_ATTEMPTS, SessionPartsUser, type SessionParts, type SessionWriter } from './write.js';

export class SessionRotation extends SessionPartsUser {
  constructor(
    parts: SessionParts,
    private readonly writer: SessionWriter,
  ) {
    super(parts);
  }

  /** Is a periodic renewal due for this session now? */
  renewDue(session: LiveSession, now: number): boolean {
    const after = this.timeouts.renewAfter;
    // An id reached through its predecessor's alias was just minted: never renew it again here.
    return after !== null && session.successorTicket === undefined && now - session.meta.issued >= after;
  }

  /**
   * A new id for a live session, its jar (with this response's changes) moved over, the old id
   * ended in the same atomic step. `cause` says which kind (see newIdMeta); a write that lost
   * to another request starts again from what that request wrote.
   */
  async rotate(first: LiveSession, input: CommitInput, now: number, cause: Rotation): Promise<CommitOutcome> {
    // The new id keeps the old one's lineage, at a login as at a renewal: the store's rotate
    // needs both keys in one lineage (on a cluster, one hash slot).
    const minted = this.codec.mint(first.sid);
    const logId = this.hasher.hash(minted.sid);
    const jarKey = jarKeyOf(minted.sid);
    const newKey = storeKeyOf(minted.sid);
    let session = first;
    for (let attempt = 1; ; attempt++) {
      const jar = buildJar(session.cookies, input.changes, logId, this.limits, this.logger);
      const { meta, alias } = this.newIdMeta(session, input, now, cause, minted.sid, jarKey);
      const ttlMs = this.writer.ttlAt(meta, now);
      if (ttlMs <= 0) return { kind: 'gone' };
      const oldTtl = Math.max(1000, session.meta.deadline - now);
      const data = sealRecord(jarKey, encodeRecord(meta, jar.cookies));
      const result = await this.store.rotate(session.key, session.version, oldTtl, newKey, data, ttlMs, alias, { logId: session.logId });
      if (result === 'ok') {
        // A renewed id stays usable through its alias for the grace window, loaded afresh.
        this.tickets.forget(session.cached);
        this.tickets.remember({ ticket: minted.ticket, sid: minted.sid, key: newKey, logId, jarKey }, 1, data, meta, jar.cookies);
        const newUser = meta.user !== undefined && (cause === 'rotated' || meta.user !== session.meta.user);
        return { kind: 'created', ticket: minted.ticket, logId, cause, ref: { key: newKey, logId, meta }, newUser };
      }
      if (result === 'gone') return cause === 'renewed' ? this.followRenewal(session, input, now) : { kind: 'gone' };
      // A conflict: another request wrote the old id first.
      if (attempt >= MAX_WRITE_ATTEMPTS) throw this.writer.contention(session);
      const again = await this.loader.loadLive(session.sid, this.clock());
      if (again.state !== 'live') return { kind: 'gone' };
      session = again.session;
    }
  }

  /**
   * The metadata of the id that replaces `session`'s, and what its old id becomes:
   * - 'rotated' (a login): a new family and deadline; the old id becomes a tombstone (no alias).
   * - 'renewed' (periodic renewal): same family and deadline; the old id becomes an alias of the
   *   new one for the grace window, so requests already in flight with it still work.
   */
  private newIdMeta(
    session: LiveSession,
    input: CommitInput,
    now: number,
    cause: Rotation,
    sid: Buffer,
    jarKey: Buffer,
  ): { meta: SessionMeta; alias?: RenewalAlias } {
    if (cause === 'rotated') {
      const user = input.user ?? session.meta.user;
      return { meta: this.writer.newMeta(now, { ...input, ...(user !== undefined ? { user } : {}) }, jarKey) };
    }
    const meta: SessionMeta = { ...session.meta, touched: now, issued: now };
    delete meta.bind;
    if (input.bind !== undefined) meta.bind = bindHash(jarKey, input.bind);
    if (input.user !== undefined) meta.user = input.user;
    const alias: RenewalAlias = {
      successor: seal(session.jarKey, SUCCESSOR_FIELD, sid.toString('base64url')),
      graceUntil: now + this.timeouts.renewGrace,
      family: meta.family,
      familyDeadline: meta.deadline,
    };
    return { meta, alias };
  }

  /**
   * A renewal found its old id already gone: when a concurrent request renewed it first, follow
   * that request's alias and write this response's changes to its successor instead.
   */
  private async followRenewal(session: LiveSession, input: CommitInput, now: number): Promise<CommitOutcome> {
    const followed = await this.loader.resolveKnown(this.tickets.know(session.sid));
    if (followed.state !== 'live' || !followed.session.successorTicket) return { kind: 'gone' };
    const outcome = await this.writer.update(followed.session, input, now);
    if (outcome.kind === 'gone') return outcome;
    return { kind: 'created', ticket: followed.session.successorTicket, logId: followed.session.logId, cause: 'renewed' };
  }
}
