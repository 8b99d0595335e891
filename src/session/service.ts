// The session service: tickets in, jars out. HTTP-agnostic; every store failure surfaces as
// StoreUnavailableError and is never mistaken for "no session".
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Cookie } from 'tough-cookie';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import type { RenewalAlias, SessionMeta, SessionStore } from '../store/types.js';
import { decodeCookie, encodeCookie, type JarChange } from '../cookies/jar.js';
import { jarKeyOf, LogHasher, open, seal, storeKeyOf } from './crypto.js';
import { SID_BYTES, TicketCodec } from './ticket.js';
import { Lru } from '../util/lru.js';

/** A verified ticket, remembered so a busy session does not pay for HMACs and hashes on every request. */
interface KnownTicket {
  sid: Buffer;
  key: string;
  logId: string;
}

/** Bounds of the per-process caches (entries). */
const TICKET_CACHE = 20_000;
const COOKIE_CACHE = 20_000;

export interface SessionTimeouts {
  idleTimeout: number;
  absoluteTimeout: number;
  /** Periodic renewal: a new id once the current one is this old (null: off). */
  renewAfter: number | null;
  /** How long a renewed id stays usable as an alias of its successor. */
  renewGrace: number;
}

export interface SessionLimits {
  maxCookiesPerSession: number;
  maxJarBytes: number;
}

/** A session found live for this request, its jar opened. */
export interface LiveSession {
  sid: Buffer;
  key: string;
  /** Short keyed hash of the id, for logs. */
  logId: string;
  meta: SessionMeta;
  jarKey: Buffer;
  /** field → cookie, decrypted; cookies already expired at load time are left out. */
  cookies: Map<string, Cookie>;
  /** field → sealed value size, for the jar size limit. */
  sizes: Map<string, number>;
  /**
   * Set when the client presented a renewed id inside its grace window: this is the successor
   * session, and the browser should be given its ticket.
   */
  successorTicket?: string;
}

export type Resolution =
  | { state: 'none' }
  /** A value with a ticket's shape whose signature does not verify (crafted or tampered with). */
  | { state: 'forged' }
  /** A value that is not a ticket at all (garbage, truncated, another version). */
  | { state: 'unknown' }
  | { state: 'expired'; logId: string }
  | { state: 'revoked'; logId: string; family?: string }
  | { state: 'live'; session: LiveSession };

export type CommitOutcome =
  /** Nothing to write, or written to the request's session. */
  | { kind: 'unchanged' }
  | { kind: 'updated' }
  /** A new id (first managed cookie, rotation at login, renewal): give the browser this ticket. */
  | { kind: 'created'; ticket: string; logId: string; cause: 'created' | 'rotated' | 'renewed' }
  /** The session was revoked or expired while the request was in flight: the changes are dropped. */
  | { kind: 'gone' };

export interface CommitInput {
  session: LiveSession | undefined;
  changes: readonly JarChange[];
  /** A login (or the app asked for it): a new id and a new family; the old id dies at once. */
  rotate: boolean;
  /** The app's user id (Coatcheck-User), when it named one. */
  user?: string;
  /**
   * What the request is bound to (user agent, address prefix), when binding is on. Sessions
   * keep only a hash of it, keyed by their own id, so secret rotation never breaks a binding.
   */
  bind?: string;
}

export interface SessionServiceDeps {
  store: SessionStore;
  secrets: readonly string[];
  timeouts: SessionTimeouts;
  limits: SessionLimits;
  clock: Clock;
  logger: Logger;
  random?: (size: number) => Buffer;
}

type SetChange = Extract<JarChange, { kind: 'set' }>;

/** Additional data that binds a sealed successor id to its purpose. */
const SUCCESSOR_FIELD = '@n';

export class SessionService {
  readonly codec: TicketCodec;
  readonly hasher: LogHasher;
  private readonly store: SessionStore;
  private readonly timeouts: SessionTimeouts;
  private readonly limits: SessionLimits;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly random: (size: number) => Buffer;
  /** A sliding touch is written at most this often per session. */
  readonly touchInterval: number;
  /**
   * Verified tickets (ticket → id, store key, log id) and their jar keys. Only tickets whose
   * signature verified are kept, so garbage cannot fill the cache with anything useful.
   */
  private readonly tickets = new Lru<string, KnownTicket>(TICKET_CACHE);
  private readonly jarKeys = new Lru<string, Buffer>(TICKET_CACHE);
  /**
   * Opened jar cookies by (store key, field, sealed value): a value that did not change since
   * the last request is not decrypted and parsed again. Keyed by the session too, so a sealed
   * value copied into another session's record is never taken from here.
   */
  private readonly opened = new Lru<string, { sealed: string; cookie: Cookie }>(COOKIE_CACHE);

  constructor(deps: SessionServiceDeps) {
    this.store = deps.store;
    this.random = deps.random ?? randomBytes;
    this.codec = new TicketCodec(deps.secrets, this.random);
    this.hasher = new LogHasher(deps.secrets[0] as string);
    this.timeouts = deps.timeouts;
    this.limits = deps.limits;
    this.clock = deps.clock;
    this.logger = deps.logger;
    this.touchInterval = Math.min(60_000, Math.floor(deps.timeouts.idleTimeout / 10));
  }

  /**
   * Classifies the ticket values a client presented (normally one). A value that fails the
   * signature check never reaches the store.
   */
  async resolve(ticketValues: readonly string[]): Promise<Resolution> {
    if (ticketValues.length === 0) return { state: 'none' };
    for (const v of ticketValues) {
      const known = this.tickets.get(v);
      if (known) return this.resolveKnown(known);
    }
    for (const v of ticketValues) {
      const sid = this.codec.verify(v);
      if (!sid) continue;
      const known = this.know(sid);
      this.tickets.set(v, known);
      return this.resolveKnown(known);
    }
    return ticketValues.some((v) => TicketCodec.hasTicketShape(v)) ? { state: 'forged' } : { state: 'unknown' };
  }

  private know(sid: Buffer): KnownTicket {
    return { sid, key: storeKeyOf(sid), logId: this.hasher.hash(sid) };
  }

  private jarKey(known: { sid: Buffer; key: string }): Buffer {
    let k = this.jarKeys.get(known.key);
    if (!k) {
      k = jarKeyOf(known.sid);
      this.jarKeys.set(known.key, k);
    }
    return k;
  }

  /** What the store holds for a verified id, following a renewal alias inside its grace window. */
  private resolveSid(sid: Buffer): Promise<Resolution> {
    return this.resolveKnown(this.know(sid));
  }

  private async resolveKnown(known: KnownTicket): Promise<Resolution> {
    const { sid, key, logId } = known;
    const found = await this.store.load(key);
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
        return this.live(sid, key, logId, found.meta, found.fields, now);
    }
  }

  private async loadLive(sid: Buffer, now: number): Promise<Resolution> {
    const { key, logId } = this.know(sid);
    const found = await this.store.load(key);
    if (found.state === 'live') return this.live(sid, key, logId, found.meta, found.fields, now);
    if (found.state === 'none') return { state: 'expired', logId };
    return { state: 'revoked', logId };
  }

  private live(sid: Buffer, key: string, logId: string, meta: SessionMeta, fields: Map<string, string>, now: number): Resolution {
    if (now >= meta.deadline || now >= meta.touched + this.timeouts.idleTimeout) return { state: 'expired', logId };
    const jarKey = this.jarKey({ sid, key });
    const cookies = new Map<string, Cookie>();
    const sizes = new Map<string, number>();
    for (const [field, sealed] of fields) {
      const cacheKey = `${key}\n${field}`;
      const hit = this.opened.get(cacheKey);
      let cookie = hit !== undefined && hit.sealed === sealed ? hit.cookie : undefined;
      if (!cookie) {
        const plain = open(jarKey, field, sealed);
        cookie = plain === undefined ? undefined : decodeCookie(field, plain);
        if (!cookie) {
          this.logger.warn({ event: 'session.jar_field_unreadable', session: logId }, 'a jar field could not be opened; it is ignored');
          continue;
        }
        this.opened.set(cacheKey, { sealed, cookie });
      }
      if (cookie.expires instanceof Date && cookie.expires.getTime() <= now) continue;
      cookies.set(field, cookie);
      sizes.set(field, field.length + sealed.length);
    }
    return { state: 'live', session: { sid, key, logId, meta, jarKey, cookies, sizes } };
  }

  private openSuccessor(sid: Buffer, sealed: string): Buffer | undefined {
    const text = open(this.jarKey({ sid, key: storeKeyOf(sid) }), SUCCESSOR_FIELD, sealed);
    if (text === undefined) return undefined;
    const next = Buffer.from(text, 'base64url');
    return next.length === SID_BYTES ? next : undefined;
  }

  /**
   * Revokes a session now, with every id of its family (earlier and later renewals): records
   * go, tombstones stay until the absolute deadline.
   */
  async revoke(session: LiveSession): Promise<void> {
    const ttl = Math.max(1000, session.meta.deadline - this.clock());
    const revoked = await this.store.revokeFamily(session.meta.family, ttl);
    // The family index is only an index: make sure this id is dead whatever it holds.
    if (revoked === 0) await this.store.revoke(session.key, ttl);
  }

  /** Applies the app's cookie changes: updates, creates, renews or rotates a session. */
  async commit(input: CommitInput): Promise<CommitOutcome> {
    const now = this.clock();
    const { session } = input;
    if (session && input.rotate) return this.rotate(session, input, now, false);
    if (session && this.renewDue(session, now)) return this.rotate(session, input, now, true);
    if (session) return this.update(session, input, now);
    const sets = input.changes.filter((c): c is SetChange => c.kind === 'set');
    if (sets.length === 0) return { kind: 'unchanged' };
    return this.create(sets, input, now);
  }

  private renewDue(session: LiveSession, now: number): boolean {
    const after = this.timeouts.renewAfter;
    // An id reached through its predecessor's alias was just minted: never renew it again here.
    return after !== null && session.successorTicket === undefined && now - session.meta.issued >= after;
  }

  private ttlAt(meta: SessionMeta, now: number): number {
    return Math.min(this.timeouts.idleTimeout, meta.deadline - now);
  }

  private async update(session: LiveSession, input: CommitInput, now: number): Promise<CommitOutcome> {
    const set = new Map<string, string>();
    const del: string[] = [];
    const sizes = new Map(session.sizes);
    for (const change of input.changes) {
      if (change.kind === 'set') {
        const sealed = seal(session.jarKey, change.field, encodeCookie(change.cookie));
        if (!this.fits(sizes, change.field, sealed, session.logId, change.name)) continue;
        sizes.set(change.field, change.field.length + sealed.length);
        set.set(change.field, sealed);
        const d = del.indexOf(change.field);
        if (d !== -1) del.splice(d, 1);
      } else if (change.kind === 'delete') {
        set.delete(change.field);
        sizes.delete(change.field);
        if (session.cookies.has(change.field) && !del.includes(change.field)) del.push(change.field);
      }
    }
    const userChanged = input.user !== undefined && input.user !== session.meta.user;
    const touchDue = now - session.meta.touched >= this.touchInterval;
    if (set.size === 0 && del.length === 0 && !touchDue && !userChanged) return { kind: 'unchanged' };
    const ttlMs = this.ttlAt(session.meta, now);
    if (ttlMs <= 0) return { kind: 'gone' };
    const ok = await this.store.update(session.key, { set, del, touched: now, ttlMs, ...(userChanged ? { user: input.user as string } : {}) });
    return ok ? { kind: 'updated' } : { kind: 'gone' };
  }

  /** Does a request's binding material match what the session was bound to? */
  bindingMatches(session: LiveSession, material: string): boolean {
    if (session.meta.bind === undefined) return true;
    const a = Buffer.from(session.meta.bind);
    const b = Buffer.from(bindHash(session.jarKey, material));
    return a.length === b.length && timingSafeEqual(a, b);
  }

  private async create(sets: readonly SetChange[], input: CommitInput, now: number): Promise<CommitOutcome> {
    const minted = this.codec.mint();
    const logId = this.hasher.hash(minted.sid);
    const jarKey = jarKeyOf(minted.sid);
    const fields = this.sealAll(jarKey, new Map(), sets, logId);
    const meta = this.newMeta(now, input, jarKey);
    const ok = await this.store.create(storeKeyOf(minted.sid), meta, fields, this.ttlAt(meta, now));
    // A collision of 256-bit random ids does not happen; if the store says so, fail loudly.
    if (!ok) throw new Error('session id collision in the store');
    return { kind: 'created', ticket: minted.ticket, logId, cause: 'created' };
  }

  private newMeta(now: number, input: CommitInput, jarKey: Buffer): SessionMeta {
    const meta: SessionMeta = {
      created: now,
      deadline: now + this.timeouts.absoluteTimeout,
      touched: now,
      issued: now,
      family: this.random(16).toString('base64url'),
    };
    if (input.user !== undefined) meta.user = input.user;
    if (input.bind !== undefined) meta.bind = bindHash(jarKey, input.bind);
    return meta;
  }

  /**
   * A new id for a live session, its jar (with this response's changes) moved over.
   * Login (`renew` false): a new family and deadline; the old id becomes a tombstone.
   * Renewal (`renew` true): same family and deadline; the old id becomes an alias for the
   * grace window, so requests already in flight with it still work.
   */
  private async rotate(session: LiveSession, input: CommitInput, now: number, renew: boolean): Promise<CommitOutcome> {
    const base = new Map(session.cookies);
    const sets: SetChange[] = [];
    for (const change of input.changes) {
      if (change.kind === 'set') {
        base.delete(change.field);
        const i = sets.findIndex((s) => s.field === change.field);
        if (i !== -1) sets.splice(i, 1);
        sets.push(change);
      } else if (change.kind === 'delete') {
        base.delete(change.field);
        const i = sets.findIndex((s) => s.field === change.field);
        if (i !== -1) sets.splice(i, 1);
      }
    }
    const minted = this.codec.mint();
    const logId = this.hasher.hash(minted.sid);
    const jarKey = jarKeyOf(minted.sid);
    const fields = this.sealAll(jarKey, base, sets, logId);
    let meta: SessionMeta;
    let alias: RenewalAlias | undefined;
    if (renew) {
      meta = { ...session.meta, touched: now, issued: now };
      delete meta.bind;
      if (input.bind !== undefined) meta.bind = bindHash(jarKey, input.bind);
      if (input.user !== undefined) meta.user = input.user;
      alias = {
        successor: seal(session.jarKey, SUCCESSOR_FIELD, minted.sid.toString('base64url')),
        graceUntil: now + this.timeouts.renewGrace,
      };
    } else {
      meta = this.newMeta(now, { ...input, ...(input.user === undefined && session.meta.user !== undefined ? { user: session.meta.user } : {}) }, jarKey);
    }
    const ttlMs = this.ttlAt(meta, now);
    if (ttlMs <= 0) return { kind: 'gone' };
    const oldTtl = Math.max(1000, session.meta.deadline - now);
    const ok = await this.store.rotate(session.key, oldTtl, storeKeyOf(minted.sid), meta, fields, ttlMs, alias);
    if (ok) return { kind: 'created', ticket: minted.ticket, logId, cause: renew ? 'renewed' : 'rotated' };
    if (!renew) return { kind: 'gone' };
    // A concurrent request renewed this id first: follow its alias and write there instead.
    const again = await this.resolveSid(session.sid);
    if (again.state !== 'live' || !again.session.successorTicket) return { kind: 'gone' };
    const outcome = await this.update(again.session, input, now);
    if (outcome.kind === 'gone') return outcome;
    return { kind: 'created', ticket: again.session.successorTicket, logId: again.session.logId, cause: 'renewed' };
  }

  private sealAll(jarKey: Buffer, base: Map<string, Cookie>, sets: readonly SetChange[], logId: string): Map<string, string> {
    const fields = new Map<string, string>();
    const sizes = new Map<string, number>();
    const put = (field: string, cookie: Cookie, name: string) => {
      const sealed = seal(jarKey, field, encodeCookie(cookie));
      if (!this.fits(sizes, field, sealed, logId, name)) return;
      sizes.set(field, field.length + sealed.length);
      fields.set(field, sealed);
    };
    for (const [field, cookie] of base) put(field, cookie, cookie.key);
    for (const s of sets) put(s.field, s.cookie, s.name);
    return fields;
  }

  /** Enforces the per-session jar limits; a cookie over them is dropped with a warning naming it. */
  private fits(sizes: Map<string, number>, field: string, sealed: string, logId: string, name: string): boolean {
    const replacing = sizes.has(field);
    const count = sizes.size + (replacing ? 0 : 1);
    let bytes = field.length + sealed.length;
    for (const [f, n] of sizes) if (f !== field) bytes += n;
    if (count > this.limits.maxCookiesPerSession || bytes > this.limits.maxJarBytes) {
      this.logger.warn(
        {
          event: 'session.jar_limit',
          session: logId,
          cookieName: name,
          count,
          bytes,
          maxCookies: this.limits.maxCookiesPerSession,
          maxBytes: this.limits.maxJarBytes,
        },
        'cookie dropped: the session jar is over its limit',
      );
      return false;
    }
    return true;
  }
}

/** The stored form of a binding: keyed by the session's own key, so it needs no server secret. */
function bindHash(jarKey: Buffer, material: string): string {
  return createHmac('sha256', jarKey).update('coatcheck/v1/bind\0').update(material).digest('base64url').slice(0, 22);
}
