// Writing a session: a response's changes to its session, compare-and-set on the version and
// applied again on top of a concurrent write that won; a new session for a first cookie.
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import { StoreUnavailableError } from '../errors.js';
import type { SessionStore } from '../store/types.js';
import { bindHash } from './binding.js';
import { jarKeyOf, type LogHasher, sealRecord, storeKeyOf } from './crypto.js';
import { buildJar } from './jar-builder.js';
import type { SessionLoader } from './load.js';
import { encodeRecord, type SessionMeta } from './record.js';
import type { RandomSource, TicketCodec } from './ticket.js';
import type { TicketCache } from './ticket-cache.js';
import type { CommitInput, CommitOutcome, LiveSession, SessionLimits, SessionTimeouts } from './types.js';

/** Compare-and-set attempts of one write before giving up (each lost attempt means another write landed). */
export const MAX_WRITE_ATTEMPTS = 8;

/** Random bytes of a family id (an index key, not a secret: 96 bits keep ids of different logins apart). */
const FAMILY_BYTES = 12;

/** The parts of the service that writes use, built once by SessionService. */
export interface SessionParts {
  store: SessionStore;
  codec: TicketCodec;
  hasher: LogHasher;
  tickets: TicketCache;
  loader: SessionLoader;
  timeouts: SessionTimeouts;
  limits: SessionLimits;
  clock: Clock;
  logger: Logger;
  random: RandomSource;
}

/**
 * What SessionWriter and SessionRotation share: the service's parts, copied into fields once
 * (plain fields, not a lookup through `parts` on every use).
 */
export abstract class SessionPartsUser {
  protected readonly codec: TicketCodec;
  protected readonly hasher: LogHasher;
  protected readonly store: SessionStore;
  protected readonly tickets: TicketCache;
  protected readonly loader: SessionLoader;
  protected readonly timeouts: SessionTimeouts;
  protected readonly limits: SessionLimits;
  protected readonly clock: Clock;
  protected readonly logger: Logger;
  protected readonly random: RandomSource;

  constructor(parts: SessionParts) {
    this.codec = parts.codec;
    this.hasher = parts.hasher;
    this.store = parts.store;
    this.tickets = parts.tickets;
    this.loader = parts.loader;
    this.timeouts = parts.timeouts;
    this.limits = parts.limits;
    this.clock = parts.clock;
    this.logger = parts.logger;
    this.random = parts.random;
  }
}

export class SessionWriter extends SessionPartsUser {
  /** A sliding touch is written at most this often per session. */
  readonly touchInterval: number;

  constructor(parts: SessionParts) {
    super(parts);
    this.touchInterval = Math.min(60_000, Math.floor(parts.timeouts.idleTimeout / 10));
  }

  /** A write's TTL: the idle timeout, never past the absolute deadline. */
  ttlAt(meta: SessionMeta, now: number): number {
    return Math.min(this.timeouts.idleTimeout, meta.deadline - now);
  }

  /**
   * Writes the changes to the request's session. The store compares versions: when another
   * request wrote the session first, its record is loaded again and the same changes are
   * applied on top of it (as a browser applies each response's cookies to the current jar).
   */
  async update(first: LiveSession, input: CommitInput, now: number): Promise<CommitOutcome> {
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

  /** Logged and thrown when a write lost MAX_WRITE_ATTEMPTS times in a row. */
  contention(session: LiveSession): StoreUnavailableError {
    this.logger.warn({ event: 'session.write_contention', session: session.logId, attempts: MAX_WRITE_ATTEMPTS }, 'gave up writing a session that other requests kept writing');
    return new StoreUnavailableError(`session write lost ${MAX_WRITE_ATTEMPTS} times to concurrent writes`);
  }

  /** A new session (a new id and family) holding the response's cookies, when any is kept. */
  async create(input: CommitInput, now: number): Promise<CommitOutcome> {
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

  /** The metadata of a new family: a fresh deadline and family id, the user and binding when given. */
  newMeta(now: number, input: CommitInput, jarKey: Buffer): SessionMeta {
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
}
