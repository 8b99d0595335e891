// Writing a session: a response's changes to its session, compare-and-set on the version and
// applied again on top of a concurrent write that won; a new session for a first cookie. In one
// process one write per session is in flight at a time: the responses that come meanwhile are
// applied together in the next one (a group commit), so concurrent responses do not race each
// other here, and the compare-and-set only settles races with other processes.
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

/** A commit waiting for the write in flight on its session (see SessionWriter.update). */
interface QueuedCommit {
  input: CommitInput;
  resolve(outcome: CommitOutcome): void;
  reject(err: unknown): void;
}

/** One write's outcome, and the session as it now is in the store when it wrote it. */
interface Written {
  outcome: CommitOutcome;
  after?: LiveSession;
}

export class SessionWriter extends SessionPartsUser {
  /** A sliding touch is written at most this often per session. */
  readonly touchInterval: number;
  /** Per store key with a write in flight: the commits that arrived since, for the next write. */
  private readonly queued = new Map<string, QueuedCommit[]>();

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
   * process wrote the session first, its record is loaded again and the same changes are
   * applied on top of it (as a browser applies each response's cookies to the current jar).
   * While a write of this session is in flight here, a commit waits and goes with the others
   * that came meanwhile in the next write, on top of the record that write left; each of them
   * gets that write's outcome.
   */
  update(first: LiveSession, input: CommitInput, now: number): Promise<CommitOutcome> {
    const waiting = this.queued.get(first.key);
    if (waiting !== undefined) return new Promise((resolve, reject) => waiting.push({ input, resolve, reject }));
    const queue: QueuedCommit[] = [];
    this.queued.set(first.key, queue);
    const own = this.write(first, [input], now);
    const next = (after: LiveSession | undefined) => void this.drain(first, queue, after);
    own.then((w) => next(w.after), () => next(undefined));
    return own.then((w) => w.outcome);
  }

  /**
   * Writes what queued behind a write of `first`'s session, batch after batch, until none is
   * left: each batch starts from the record the write before it left, or (that write failed or
   * lost for good) from the store. Every queued commit settles exactly once.
   */
  private async drain(first: LiveSession, queue: QueuedCommit[], after: LiveSession | undefined): Promise<void> {
    let session = after;
    while (queue.length > 0) {
      const batch = queue.splice(0);
      try {
        if (session === undefined) {
          const loaded = await this.loader.loadLive(first.sid, this.clock());
          if (loaded.state !== 'live') {
            for (const c of batch) c.resolve({ kind: 'gone' });
            continue;
          }
          session = loaded.session;
        }
        const written = await this.write(session, batch.map((c) => c.input), this.clock());
        session = written.after;
        for (const c of batch) c.resolve(written.outcome);
      } catch (err) {
        session = undefined;
        for (const c of batch) c.reject(err);
      }
    }
    this.queued.delete(first.key);
  }

  /** One write of several responses' changes, in order, retried on top of a concurrent write that won. */
  private async write(first: LiveSession, inputs: readonly CommitInput[], now: number): Promise<Written> {
    const changes = inputs.length === 1 ? (inputs[0] as CommitInput).changes : inputs.flatMap((i) => i.changes);
    let user: string | undefined;
    for (const i of inputs) if (i.user !== undefined) user = i.user;
    let session = first;
    for (let attempt = 1; ; attempt++) {
      const jar = buildJar(session.cookies, changes, session.logId, this.limits, this.logger);
      const userChanged = user !== undefined && user !== session.meta.user;
      const touchDue = now - session.meta.touched >= this.touchInterval;
      if (!jar.changed && !touchDue && !userChanged) return { outcome: { kind: 'unchanged' }, after: session };
      const meta: SessionMeta = { ...session.meta, touched: now };
      if (userChanged) meta.user = user as string;
      const ttlMs = this.ttlAt(meta, now);
      if (ttlMs <= 0) return { outcome: { kind: 'gone' } };
      const data = sealRecord(session.jarKey, encodeRecord(meta, jar.cookies));
      const result = await this.store.update(session.key, session.version, data, ttlMs);
      if (result === 'ok') {
        if (session.cached) this.tickets.remember(session.cached, session.version + 1, data, meta, jar.cookies);
        const frozen = Object.freeze(meta);
        // The user's session list hears of touches and of a new user, not of every cookie change.
        const outcome: CommitOutcome =
          touchDue || userChanged ? { kind: 'updated', ref: { key: session.key, logId: session.logId, meta: frozen }, newUser: userChanged } : { kind: 'updated' };
        return { outcome, after: { ...session, meta: frozen, cookies: jar.cookies, version: session.version + 1 } };
      }
      if (result === 'gone') {
        this.tickets.forget(session.cached);
        return { outcome: { kind: 'gone' } };
      }
      // A touch alone that lost to another write is not needed: that write touched the session too.
      if (!jar.changed && !userChanged) return { outcome: { kind: 'unchanged' } };
      if (attempt >= MAX_WRITE_ATTEMPTS) throw this.contention(session);
      const again = await this.loader.loadLive(session.sid, this.clock());
      if (again.state !== 'live') return { outcome: { kind: 'gone' } };
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
    return { kind: 'created', ticket: minted.ticket, logId, cause: 'created', ref: { key, logId, meta }, newUser: meta.user !== undefined };
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
