// The session service: tickets in, jars out. HTTP-agnostic; every store failure surfaces as
// StoreUnavailableError and is never mistaken for "no session". A façade over the parts in
// this folder: ticket-cache.ts (verified tickets), load.ts (one id's state), resolve.ts
// (several tickets), write.ts (compare-and-set writes), rotation.ts (new ids), jar-builder.ts
// (the jar limits), binding.ts.
import { pooledRandomBytes } from '../util/random.js';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import type { SessionStore } from '../store/types.js';
import type { JarChange } from '../cookies/jar.js';
import { bindingMatches } from './binding.js';
import { SessionDirectory } from './directory.js';
import { LogHasher } from './crypto.js';
import { SessionLoader } from './load.js';
import { resolveSeveral } from './resolve.js';
import { SessionRotation } from './rotation.js';
import { TicketCodec, type RandomSource } from './ticket.js';
import { TicketCache } from './ticket-cache.js';
import type { CommitInput, CommitOutcome, LiveSession, Resolution, SessionLimits, SessionTimeouts } from './types.js';
import { SessionWriter } from './write.js';

export type { KnownTicket } from './ticket-cache.js';
export type { CommitInput, CommitOutcome, LiveSession, Resolution, Rotation, SessionLimits, SessionTimeouts } from './types.js';

export interface SessionServiceDeps {
  store: SessionStore;
  secrets: readonly string[];
  timeouts: SessionTimeouts;
  limits: SessionLimits;
  clock: Clock;
  logger: Logger;
  random?: RandomSource;
  /** Live sessions per user; past it a login revokes the least recently seen (session.maxPerUser). */
  maxPerUser?: number | null;
}

export class SessionService {
  private readonly store: SessionStore;
  private readonly clock: Clock;
  /** Verified tickets; see TicketCache. */
  private readonly tickets: TicketCache;
  private readonly loader: SessionLoader;
  private readonly writer: SessionWriter;
  private readonly rotation: SessionRotation;
  /** Users' sessions, log ids, revoke-all (directory.ts). */
  readonly directory: SessionDirectory;
  private readonly maxPerUser: number | null;
  /**
   * The directory's work for one write's outcome, shared by the commits that outcome answers
   * (several responses of one session may go in one write: write.ts).
   */
  private readonly noted = new WeakMap<CommitOutcome, Promise<void>>();

  constructor(deps: SessionServiceDeps) {
    this.store = deps.store;
    this.clock = deps.clock;
    const random = deps.random ?? pooledRandomBytes;
    const codec = new TicketCodec(deps.secrets, random);
    const hasher = new LogHasher(deps.secrets[0] as string);
    this.tickets = new TicketCache(codec, hasher);
    this.loader = new SessionLoader(deps.store, codec, this.tickets, deps.timeouts, deps.clock, deps.logger);
    const parts = { ...deps, codec, hasher, tickets: this.tickets, loader: this.loader, random };
    this.writer = new SessionWriter(parts);
    this.rotation = new SessionRotation(parts, this.writer);
    this.directory = new SessionDirectory(deps);
    this.maxPerUser = deps.maxPerUser ?? null;
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
    // The log id goes down for the store's own log lines (a revocation that replicas did not confirm).
    await this.store.revokeFamily(session.meta.family, session.key, ttl, { logId: session.logId });
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
    return now - session.meta.touched < this.writer.touchInterval && !this.rotation.renewDue(session, now);
  }

  /**
   * Applies the app's cookie changes: updates, creates, renews or rotates a session. The
   * directory hears of the result before it resolves (a failure there fails the commit: the
   * browser never holds a session the directory does not know of).
   */
  async commit(input: CommitInput): Promise<CommitOutcome> {
    const outcome = await this.write(input);
    if ((outcome.kind === 'created' || outcome.kind === 'updated') && outcome.ref !== undefined) {
      let noting = this.noted.get(outcome);
      if (noting === undefined) {
        noting = this.note(outcome, input);
        this.noted.set(outcome, noting);
      }
      await noting;
    }
    return outcome;
  }

  private write(input: CommitInput): Promise<CommitOutcome> {
    const now = this.clock();
    const { session } = input;
    if (session && input.rotate) return this.rotation.rotate(session, input, now, 'rotated');
    if (session && this.rotation.renewDue(session, now)) return this.rotation.rotate(session, input, now, 'renewed');
    if (session) return this.writer.update(session, input, now);
    if (!input.changes.some((c) => c.kind === 'set')) return Promise.resolve({ kind: 'unchanged' });
    return this.writer.create(input, now);
  }

  /** Tells the directory of a written id; a user's new session past maxPerUser evicts the least recently seen. */
  private async note(outcome: Extract<CommitOutcome, { kind: 'created' | 'updated' }>, input: CommitInput): Promise<void> {
    const ref = outcome.ref as NonNullable<typeof outcome.ref>;
    if (outcome.kind === 'created') await this.directory.issued(ref, input.client);
    else await this.directory.seen(ref, input.client);
    const user = ref.meta.user;
    if (outcome.newUser && user !== undefined && this.maxPerUser !== null) {
      const evicted = await this.directory.enforceLimit(user, ref.meta.family, this.maxPerUser);
      if (evicted.length > 0) outcome.evicted = evicted;
    }
  }

  /**
   * Counts a long-lived connection's traffic as activity: writes a sliding touch when one is
   * due (at most every touch interval), never a renewal (the connection could not hand the
   * browser a new ticket). 'gone' when the session ended meanwhile.
   */
  async touch(session: LiveSession): Promise<'touched' | 'unchanged' | 'gone'> {
    const now = this.clock();
    if (now - session.meta.touched < this.writer.touchInterval) return 'unchanged';
    const outcome = await this.writer.update(session, { session, changes: [], rotate: false }, now);
    if (outcome.kind === 'gone') return 'gone';
    return outcome.kind === 'updated' ? 'touched' : 'unchanged';
  }

  /** How often a session's activity is written (the sliding touch), in ms. */
  get touchInterval(): number {
    return this.writer.touchInterval;
  }

  /** Does a request's binding material match what the session was bound to? */
  bindingMatches(session: LiveSession, material: string): boolean {
    return bindingMatches(session.meta, session.jarKey, material);
  }
}
