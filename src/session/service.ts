// The session service: tickets in, jars out. HTTP-agnostic; every store failure surfaces as
// StoreUnavailableError and is never mistaken for "no session".
import { randomBytes } from 'node:crypto';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import { StoreUnavailableError } from '../errors.js';
import type { RenewalAlias, SessionStore } from '../store/types.js';
import type { JarChange } from '../cookies/jar.js';
import { bindHash, bindingMatches } from './binding.js';
import { jarKeyOf, LogHasher, seal, sealRecord, storeKeyOf } from './crypto.js';
import { buildJar } from './jar-builder.js';
import { SessionLoader, SUCCESSOR_FIELD } from './load.js';
import { encodeRecord, type SessionMeta } from './record.js';
import { resolveSeveral } from './resolve.js';
import { TicketCodec, type RandomSource } from './ticket.js';
import { TicketCache } from './ticket-cache.js';
import type { CommitInput, CommitOutcome, LiveSession, Resolution, Rotation, SessionLimits, SessionTimeouts } from './types.js';

export type { KnownTicket } from './ticket-cache.js';
export type { CommitInput, CommitOutcome, LiveSession, Resolution, Rotation, SessionLimits, SessionTimeouts } from './types.js';

/** Compare-and-set attempts of one write before giving up (each lost attempt means another write landed). */
const MAX_WRITE_ATTEMPTS = 8;

export interface SessionServiceDeps {
  store: SessionStore;
  secrets: readonly string[];
  timeouts: SessionTimeouts;
  limits: SessionLimits;
  clock: Clock;
  logger: Logger;
  random?: RandomSource;
}

/** Random bytes of a family id (an index key, not a secret: 96 bits keep ids of different logins apart). */
const FAMILY_BYTES = 12;

export class SessionService {
  private readonly codec: TicketCodec;
  private readonly hasher: LogHasher;
  private readonly store: SessionStore;
  private readonly timeouts: SessionTimeouts;
  private readonly limits: SessionLimits;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly random: RandomSource;
  /** A sliding touch is written at most this often per session. */
  private readonly touchInterval: number;
  /** Verified tickets; see TicketCache. */
  private readonly tickets: TicketCache;
  private readonly loader: SessionLoader;

  constructor(deps: SessionServiceDeps) {
    this.store = deps.store;
    this.random = deps.random ?? randomBytes;
    this.codec = new TicketCodec(deps.secrets, this.random);
    this.hasher = new LogHasher(deps.secrets[0] as string);
    this.tickets = new TicketCache(this.codec, this.hasher);
    this.loader = new SessionLoader(deps.store, this.codec, this.tickets, deps.timeouts, deps.clock, deps.logger);
    this.timeouts = deps.timeouts;
    this.limits = deps.limits;
    this.clock = deps.clock;
    this.logger = deps.logger;
    this.touchInterval = Math.min(60_000, Math.floor(deps.timeouts.idleTimeout / 10));
  }

  /** Whether the store is known to be reachable now (no round trip; see SessionStore.available). */
  storeAvailable(): boolean {
    return this.store.available();
  }

  /**
   * Classifies the ticket values a client presented (normally one). A value that fails the
   * signature check never reaches the store.
   */
  async resolve(ticketValues: readonly string[]): Promise<Resolution> {
    if (ticketValues.length === 0) return { state: 'none' };
    if (ticketValues.length > 1) return resolveSeveral(ticketValues, this.tickets, this.loader);
    const v = ticketValues[0] as string;
    const known = this.tickets.get(v) ?? this.tickets.verified(v);
    if (known) return this.loader.resolveKnown(known);
    return TicketCodec.hasTicketShape(v) ? { state: 'forged' } : { state: 'unknown' };
  }


  /**
   * Revokes a session now, with every id of its family (earlier and later renewals): records
   * go, tombstones stay until the absolute deadline.
   */
  async revoke(session: LiveSession): Promise<void> {
    const ttl = Math.max(1000, session.meta.deadline - this.clock());
    this.tickets.forget(session.cached);
    await this.store.revokeFamily(session.meta.family, session.key, ttl);
  }



  /**
   * True when committing this response would write nothing: no cookie change, no rotation or
   * renewal, the same user, and no touch due. Lets the hot path skip commit() synchronously.
   */
  nothingToWrite(session: LiveSession, changes: readonly JarChange[], rotate: boolean, user: string | undefined): boolean {
    if (rotate) return false;
    for (const change of changes) if (change.kind !== 'rejected') return false;
    if (user !== undefined && user !== session.meta.user) return false;
    const now = this.clock();
    return now - session.meta.touched < this.touchInterval && !this.renewDue(session, now);
  }

  /** Applies the app's cookie changes: updates, creates, renews or rotates a session. */
  async commit(input: CommitInput): Promise<CommitOutcome> {
    const now = this.clock();
    const { session } = input;
    if (session && input.rotate) return this.rotate(session, input, now, 'rotated');
    if (session && this.renewDue(session, now)) return this.rotate(session, input, now, 'renewed');
    if (session) return this.update(session, input, now);
    if (!input.changes.some((c) => c.kind === 'set')) return { kind: 'unchanged' };
    return this.create(input, now);
  }

  private renewDue(session: LiveSession, now: number): boolean {
    const after = this.timeouts.renewAfter;
    // An id reached through its predecessor's alias was just minted: never renew it again here.
    return after !== null && session.successorTicket === undefined && now - session.meta.issued >= after;
  }

  private ttlAt(meta: SessionMeta, now: number): number {
    return Math.min(this.timeouts.idleTimeout, meta.deadline - now);
  }

  /**
   * Writes the changes to the request's session. The store compares versions: when another
   * request wrote the session first, its record is loaded again and the same changes are
   * applied on top of it (as a browser applies each response's cookies to the current jar).
   */
  private async update(first: LiveSession, input: CommitInput, now: number): Promise<CommitOutcome> {
    let session = first;
    for (let attempt = 1; ; attempt++) {
      const jar = buildJar(session.cookies, input.changes, session.logId, this.limits, this.logger);
      const userChanged = input.user !== undefined && input.user !== session.meta.user;
      const touchDue = now - session.meta.touched >= this.touchInterval;
      if (!jar.changed && !touchDue && !userChanged) return { kind: 'unchanged' };
      const meta: SessionMeta = { ...session.meta, touched: now };
      if (userChanged) meta.user = input.user as string;
      const ttlMs = this.ttlAt(meta, now);
      if (ttlMs <= 0) return { kind: 'gone' };
      const data = sealRecord(session.jarKey, encodeRecord(meta, jar.cookies));
      const result = await this.store.update(session.key, session.version, data, ttlMs);
      if (result === 'ok') {
        if (session.cached) this.tickets.remember(session.cached, session.version + 1, data, meta, jar.cookies);
        return { kind: 'updated' };
      }
      if (result === 'gone') {
        this.tickets.forget(session.cached);
        return { kind: 'gone' };
      }
      // A touch alone that lost to another write is not needed: that write touched the session too.
      if (!jar.changed && !userChanged) return { kind: 'unchanged' };
      if (attempt >= MAX_WRITE_ATTEMPTS) throw this.contention(session);
      const again = await this.loader.loadLive(session.sid, this.clock());
      if (again.state !== 'live') return { kind: 'gone' };
      session = again.session;
    }
  }

  private contention(session: LiveSession): StoreUnavailableError {
    this.logger.warn({ event: 'session.write_contention', session: session.logId, attempts: MAX_WRITE_ATTEMPTS }, 'gave up writing a session that other requests kept writing');
    return new StoreUnavailableError(`session write lost ${MAX_WRITE_ATTEMPTS} times to concurrent writes`);
  }

  /** Does a request's binding material match what the session was bound to? */
  bindingMatches(session: LiveSession, material: string): boolean {
    return bindingMatches(session.meta, session.jarKey, material);
  }

  private async create(input: CommitInput, now: number): Promise<CommitOutcome> {
    const minted = this.codec.mint();
    const logId = this.hasher.hash(minted.sid);
    const jarKey = jarKeyOf(minted.sid);
    const jar = buildJar(new Map(), input.changes, logId, this.limits, this.logger);
    if (jar.cookies.size === 0) return { kind: 'unchanged' };
    const meta = this.newMeta(now, input, jarKey);
    const key = storeKeyOf(minted.sid);
    const data = sealRecord(jarKey, encodeRecord(meta, jar.cookies));
    const ok = await this.store.create(key, data, this.ttlAt(meta, now));
    // A collision of 256-bit random ids does not happen; if the store says so, fail loudly.
    if (!ok) throw new Error('session id collision in the store');
    this.tickets.remember({ ticket: minted.ticket, sid: minted.sid, key, logId, jarKey }, 1, data, meta, jar.cookies);
    return { kind: 'created', ticket: minted.ticket, logId, cause: 'created' };
  }

  private newMeta(now: number, input: CommitInput, jarKey: Buffer): SessionMeta {
    const meta: SessionMeta = {
      created: now,
      deadline: now + this.timeouts.absoluteTimeout,
      touched: now,
      issued: now,
      family: this.random(FAMILY_BYTES).toString('base64url'),
    };
    if (input.user !== undefined) meta.user = input.user;
    if (input.bind !== undefined) meta.bind = bindHash(jarKey, input.bind);
    return meta;
  }

  /**
   * A new id for a live session, its jar (with this response's changes) moved over, the old id
   * ended in the same atomic step. `cause` says which kind (see newIdMeta); a write that lost
   * to another request starts again from what that request wrote.
   */
  private async rotate(first: LiveSession, input: CommitInput, now: number, cause: Rotation): Promise<CommitOutcome> {
    const minted = this.codec.mint();
    const logId = this.hasher.hash(minted.sid);
    const jarKey = jarKeyOf(minted.sid);
    const newKey = storeKeyOf(minted.sid);
    let session = first;
    for (let attempt = 1; ; attempt++) {
      const jar = buildJar(session.cookies, input.changes, logId, this.limits, this.logger);
      const { meta, alias } = this.newIdMeta(session, input, now, cause, minted.sid, jarKey);
      const ttlMs = this.ttlAt(meta, now);
      if (ttlMs <= 0) return { kind: 'gone' };
      const oldTtl = Math.max(1000, session.meta.deadline - now);
      const data = sealRecord(jarKey, encodeRecord(meta, jar.cookies));
      const result = await this.store.rotate(session.key, session.version, oldTtl, newKey, data, ttlMs, alias);
      if (result === 'ok') {
        // A renewed id stays usable through its alias for the grace window, loaded afresh.
        this.tickets.forget(session.cached);
        this.tickets.remember({ ticket: minted.ticket, sid: minted.sid, key: newKey, logId, jarKey }, 1, data, meta, jar.cookies);
        return { kind: 'created', ticket: minted.ticket, logId, cause };
      }
      if (result === 'gone') return cause === 'renewed' ? this.followRenewal(session, input, now) : { kind: 'gone' };
      // A conflict: another request wrote the old id first.
      if (attempt >= MAX_WRITE_ATTEMPTS) throw this.contention(session);
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
      return { meta: this.newMeta(now, { ...input, ...(user !== undefined ? { user } : {}) }, jarKey) };
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
    const outcome = await this.update(followed.session, input, now);
    if (outcome.kind === 'gone') return outcome;
    return { kind: 'created', ticket: followed.session.successorTicket, logId: followed.session.logId, cause: 'renewed' };
  }
}
