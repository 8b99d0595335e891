// The session service: tickets in, jars out. HTTP-agnostic; every store failure surfaces as
// StoreUnavailableError and is never mistaken for "no session".
import { randomBytes } from 'node:crypto';
import type { Cookie } from 'tough-cookie';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import type { SessionMeta, SessionStore } from '../store/types.js';
import { decodeCookie, encodeCookie, type JarChange } from '../cookies/jar.js';
import { jarKeyOf, LogHasher, open, seal, storeKeyOf } from './crypto.js';
import { TicketCodec } from './ticket.js';

export interface SessionTimeouts {
  idleTimeout: number;
  absoluteTimeout: number;
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
}

export type Resolution =
  | { state: 'none' }
  | { state: 'forged' }
  | { state: 'expired'; logId: string }
  | { state: 'revoked'; logId: string }
  | { state: 'live'; session: LiveSession };

export type CommitOutcome =
  /** Nothing to write, or written to the request's session. */
  | { kind: 'unchanged' }
  | { kind: 'updated' }
  /** A new session (first managed cookie, or rotation at login): give the browser this ticket. */
  | { kind: 'created'; ticket: string; logId: string; rotatedFrom?: string }
  /** The session was revoked or expired while the request was in flight: the changes are dropped. */
  | { kind: 'gone' };

export interface CommitInput {
  session: LiveSession | undefined;
  changes: readonly JarChange[];
  rotate: boolean;
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
    let sid: Buffer | undefined;
    for (const v of ticketValues) {
      sid = this.codec.verify(v);
      if (sid) break;
    }
    if (!sid) return { state: 'forged' };
    const key = storeKeyOf(sid);
    const logId = this.hasher.hash(sid);
    const found = await this.store.load(key);
    if (found.state === 'none') return { state: 'expired', logId };
    if (found.state === 'revoked') return { state: 'revoked', logId };
    const now = this.clock();
    const meta = found.meta;
    if (now >= meta.deadline || now >= meta.touched + this.timeouts.idleTimeout) return { state: 'expired', logId };
    const jarKey = jarKeyOf(sid);
    const cookies = new Map<string, Cookie>();
    const sizes = new Map<string, number>();
    for (const [field, sealed] of found.fields) {
      const plain = open(jarKey, field, sealed);
      const cookie = plain === undefined ? undefined : decodeCookie(field, plain);
      if (!cookie) {
        this.logger.warn({ event: 'session.jar_field_unreadable', session: logId }, 'a jar field could not be opened; it is ignored');
        continue;
      }
      if (cookie.expires instanceof Date && cookie.expires.getTime() <= now) continue;
      cookies.set(field, cookie);
      sizes.set(field, field.length + sealed.length);
    }
    return { state: 'live', session: { sid, key, logId, meta, jarKey, cookies, sizes } };
  }

  /** Revokes a session now: the record goes, a tombstone stays until its absolute deadline. */
  async revoke(session: LiveSession): Promise<boolean> {
    const ttl = Math.max(1000, session.meta.deadline - this.clock());
    return this.store.revoke(session.key, ttl);
  }

  /** Applies the app's cookie changes: updates, creates or rotates a session. */
  async commit(input: CommitInput): Promise<CommitOutcome> {
    const now = this.clock();
    const { session } = input;
    if (session && input.rotate) return this.rotate(session, input.changes, now);
    if (session) return this.update(session, input.changes, now);
    const sets = input.changes.filter((c): c is Extract<JarChange, { kind: 'set' }> => c.kind === 'set');
    if (sets.length === 0) return { kind: 'unchanged' };
    return this.create(new Map(), sets, now);
  }

  private ttlAt(meta: SessionMeta, now: number): number {
    return Math.min(this.timeouts.idleTimeout, meta.deadline - now);
  }

  private async update(session: LiveSession, changes: readonly JarChange[], now: number): Promise<CommitOutcome> {
    const set = new Map<string, string>();
    const del: string[] = [];
    const sizes = new Map(session.sizes);
    for (const change of changes) {
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
    const touchDue = now - session.meta.touched >= this.touchInterval;
    if (set.size === 0 && del.length === 0 && !touchDue) return { kind: 'unchanged' };
    const ttlMs = this.ttlAt(session.meta, now);
    if (ttlMs <= 0) return { kind: 'gone' };
    const ok = await this.store.update(session.key, { set, del, touched: now, ttlMs });
    return ok ? { kind: 'updated' } : { kind: 'gone' };
  }

  private async create(
    base: Map<string, Cookie>,
    sets: readonly Extract<JarChange, { kind: 'set' }>[],
    now: number,
  ): Promise<CommitOutcome> {
    const minted = this.codec.mint();
    const jarKey = jarKeyOf(minted.sid);
    const logId = this.hasher.hash(minted.sid);
    const fields = this.sealAll(jarKey, base, sets, logId);
    const meta: SessionMeta = {
      created: now,
      deadline: now + this.timeouts.absoluteTimeout,
      touched: now,
      family: this.random(16).toString('base64url'),
    };
    const ok = await this.store.create(storeKeyOf(minted.sid), meta, fields, this.ttlAt(meta, now));
    // A collision of 256-bit random ids does not happen; if the store says so, fail loudly.
    if (!ok) throw new Error('session id collision in the store');
    return { kind: 'created', ticket: minted.ticket, logId };
  }

  private async rotate(session: LiveSession, changes: readonly JarChange[], now: number): Promise<CommitOutcome> {
    const base = new Map(session.cookies);
    const sets: Extract<JarChange, { kind: 'set' }>[] = [];
    for (const change of changes) {
      if (change.kind === 'set') {
        base.delete(change.field);
        sets.push(change);
      } else if (change.kind === 'delete') {
        base.delete(change.field);
        const i = sets.findIndex((s) => s.field === change.field);
        if (i !== -1) sets.splice(i, 1);
      }
    }
    const minted = this.codec.mint();
    const jarKey = jarKeyOf(minted.sid);
    const logId = this.hasher.hash(minted.sid);
    const fields = this.sealAll(jarKey, base, sets, logId);
    // A login is a new authentication: a new family, a new absolute deadline.
    const meta: SessionMeta = {
      created: now,
      deadline: now + this.timeouts.absoluteTimeout,
      touched: now,
      family: this.random(16).toString('base64url'),
    };
    const oldTtl = Math.max(1000, session.meta.deadline - now);
    const ok = await this.store.rotate(session.key, oldTtl, storeKeyOf(minted.sid), meta, fields, this.ttlAt(meta, now));
    if (!ok) return { kind: 'gone' };
    return { kind: 'created', ticket: minted.ticket, logId, rotatedFrom: session.logId };
  }

  private sealAll(
    jarKey: Buffer,
    base: Map<string, Cookie>,
    sets: readonly Extract<JarChange, { kind: 'set' }>[],
    logId: string,
  ): Map<string, string> {
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
        { event: 'session.jar_limit', session: logId, cookieName: name, count, bytes, maxCookies: this.limits.maxCookiesPerSession, maxBytes: this.limits.maxJarBytes },
        'cookie dropped: the session jar is over its limit',
      );
      return false;
    }
    return true;
  }
}
