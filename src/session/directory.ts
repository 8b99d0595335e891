// The session directory: which sessions a user has (to list them, end them all, or keep their
// number under session.maxPerUser), where the session of a log id is (so that an operator can
// go from a log line to a revocation), and the revoke-all switch. HTTP-agnostic, on the store's
// DirectoryStore.
//
// What the store holds, and how little it says:
// - A user's entries sit under a keyed hash of the user id (HMAC, key derived from a secret),
//   never the id itself; one entry per session family (one per browser login), sealed
//   (AES-256-GCM) with a key derived from the same secret and the user id: whoever reads Redis
//   learns neither the user nor the user agent and address of their sessions. The entry names
//   the family's current store key and log id, and when it was created, last seen and ends.
// - Entries are written under the first secret and read under every configured one (the union,
//   one entry per family: the most recent), so a secret rotation loses no session: a session
//   that still works has a ticket a configured secret verifies, and every entry written since
//   that secret was first is found.
// - A log id's record says which store key and family it is: no secret (store keys and family
//   ids are in Redis anyway), and nothing about the user.
// Entries are written after the session's own write, and a failure fails the request (503),
// before the browser has the ticket: no session a browser holds goes unindexed. An entry of a
// session that ended is dropped when it is next read (list, revoke), and every entry expires at
// its session's absolute deadline at the latest.
import { createHmac, hkdfSync } from 'node:crypto';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import type { SessionStore } from '../store/types.js';
import { open, seal } from './crypto.js';
import type { SessionMeta } from './record.js';
import type { SessionTimeouts } from './types.js';

/** A session id as the directory knows it. */
export interface SessionRef {
  key: string;
  logId: string;
  meta: Readonly<SessionMeta>;
}

/** Where a session is used from, as the listing shows it. */
export interface ClientInfo {
  userAgent?: string;
  /** The address prefix (a /24 or a /64), never the full address. */
  address?: string;
}

/** One session (family) of a user, as the admin API lists it. */
export interface ListedSession {
  /** The log id of its current id. */
  id: string;
  createdAt: string;
  lastSeenAt: string;
  expiresAt: string;
  userAgent: string | null;
  client: string | null;
}

/** A user's entry: the family's current id, its times, where it is used from. */
interface Entry {
  /** Store key of the family's current id. */
  k: string;
  /** Its log id. */
  l: string;
  /** Created, last seen (touched), absolute deadline: ms since the epoch. */
  c: number;
  s: number;
  d: number;
  a?: string;
  p?: string;
}

/** A found entry, with where it was found. */
interface Found {
  family: string;
  entry: Entry;
  userKey: string;
}

/** What a revocation by user or log id did. */
export interface Revoked {
  /** Sessions (families) that had a live id and were revoked. */
  revoked: number;
  /** Their log ids. */
  logIds: string[];
}

/** Longest user agent kept in an entry. */
const MAX_USER_AGENT = 256;
/** The revoke-all time outlives every session that it ends by this much (clock skew). */
const REVOKE_ALL_MARGIN_MS = 60_000;

export interface SessionDirectoryDeps {
  store: SessionStore;
  secrets: readonly string[];
  timeouts: Pick<SessionTimeouts, 'idleTimeout' | 'absoluteTimeout'>;
  clock: Clock;
  logger: Logger;
}

/** The keys one secret gives the directory. */
interface SecretKeys {
  /** HMAC key of user ids → index keys. */
  index: Buffer;
  /** Input of the per-user sealing keys. */
  seal: Buffer;
}

export class SessionDirectory {
  private readonly store: SessionStore;
  private readonly keys: readonly SecretKeys[];
  private readonly idleTimeout: number;
  private readonly absoluteTimeout: number;
  private readonly clock: Clock;
  private readonly log: Logger;

  constructor(deps: SessionDirectoryDeps) {
    this.store = deps.store;
    this.keys = deps.secrets.map((secret) => ({
      index: derive(secret, 'user-index'),
      seal: derive(secret, 'user-entry'),
    }));
    this.idleTimeout = deps.timeouts.idleTimeout;
    this.absoluteTimeout = deps.timeouts.absoluteTimeout;
    this.clock = deps.clock;
    this.log = deps.logger.child({ component: 'directory' });
  }

  /**
   * A new id was issued (a new session, a login's rotation, a renewal): its log id points at it
   * from now on, and, with a user, the user's entry for its family names it.
   */
  async issued(ref: SessionRef, client: ClientInfo | undefined): Promise<void> {
    const ttl = this.ttlOf(ref.meta);
    const where = formatWhere(ref.key, ref.meta.family, ref.meta.deadline);
    await Promise.all([this.store.directory.putLogIndex(ref.logId, where, ttl), ref.meta.user !== undefined ? this.putEntry(ref, client) : undefined]);
  }

  /** A session of a user was used (touched) or got its user: its entry is written again. */
  async seen(ref: SessionRef, client: ClientInfo | undefined): Promise<void> {
    if (ref.meta.user !== undefined) await this.putEntry(ref, client);
  }

  /** The user's live sessions, most recently seen first. Entries of sessions that ended are dropped. */
  async list(user: string): Promise<ListedSession[]> {
    const live = await this.liveEntries(user);
    return live
      .sort((a, b) => b.entry.s - a.entry.s)
      .map(({ entry }) => ({
        id: entry.l,
        createdAt: new Date(entry.c).toISOString(),
        lastSeenAt: new Date(entry.s).toISOString(),
        expiresAt: new Date(Math.min(entry.d, entry.s + this.idleTimeout)).toISOString(),
        userAgent: entry.a ?? null,
        client: entry.p ?? null,
      }));
  }

  /**
   * Revokes every session of the user (each with its whole family), but the family `except`
   * (a logout of the others keeps the current one). Every revocation is tried; the first failure
   * is thrown after the others (a revocation that did not happen is never reported as done).
   */
  async revokeUser(user: string, except?: string): Promise<Revoked> {
    const found = (await this.found(user)).filter((f) => f.family !== except);
    const results = await Promise.allSettled(found.map((f) => this.revokeFamily(f.family, f.entry.k, f.entry.d)));
    const out: Revoked = { revoked: 0, logIds: [] };
    let failure: unknown;
    const done: Found[] = [];
    results.forEach((r, i) => {
      const f = found[i] as Found;
      if (r.status === 'rejected') {
        failure ??= r.reason;
        return;
      }
      if (r.value > 0) {
        out.revoked += 1;
        out.logIds.push(f.entry.l);
      }
      done.push(f);
    });
    await this.drop(done);
    if (failure !== undefined) throw failure;
    return out;
  }

  /** Revokes the session of a log id with its family: 1 when it was live, 0 when unknown or ended. */
  async revokeLogId(logId: string): Promise<number> {
    const text = await this.store.directory.getLogIndex(logId);
    if (text === undefined) return 0;
    const where = parseWhere(text);
    if (where === undefined) {
      this.log.warn({ event: 'directory.entry_unreadable', session: logId }, 'a log id record could not be read; nothing was revoked');
      return 0;
    }
    return (await this.revokeFamily(where.f, where.k, where.d)) > 0 ? 1 : 0;
  }

  /**
   * Every session that exists now counts as revoked from now on, on every instance (checked at
   * each load): the emergency switch. Returns the time.
   */
  async revokeAll(): Promise<number> {
    const now = this.clock();
    await this.store.directory.setRevokedBefore(now, this.absoluteTimeout + REVOKE_ALL_MARGIN_MS);
    return now;
  }

  /**
   * Keeps the user at `max` live sessions: past it, the least recently seen ones (never the
   * family `keep`, the login that is happening) are revoked. Returns their log ids.
   */
  async enforceLimit(user: string, keep: string, max: number): Promise<string[]> {
    const live = await this.liveEntries(user);
    if (live.length <= max) return [];
    const evict = live
      .filter((f) => f.family !== keep)
      .sort((a, b) => a.entry.s - b.entry.s)
      .slice(0, live.length - max);
    for (const f of evict) await this.revokeFamily(f.family, f.entry.k, f.entry.d);
    await this.drop(evict);
    return evict.map((f) => f.entry.l);
  }

  /** The entries of the user's sessions that still have a live id; the others are dropped. */
  private async liveEntries(user: string): Promise<Found[]> {
    const found = await this.found(user);
    const [states, before] = await Promise.all([Promise.all(found.map((f) => this.store.load(f.entry.k))), this.store.directory.revokedBefore()]);
    const live: Found[] = [];
    const dead: Found[] = [];
    found.forEach((f, i) => {
      const state = (states[i] as { state: string }).state;
      // An alias (a renewed id whose successor is not in the entry yet) still stands for a live family.
      if ((state === 'live' || state === 'renewed') && f.entry.c > before) live.push(f);
      else dead.push(f);
    });
    await this.drop(dead);
    return live;
  }

  /** Removes these entries, one call per user entry set they were found in. */
  private async drop(entries: readonly Found[]): Promise<void> {
    const byKey = new Map<string, string[]>();
    for (const f of entries) byKey.set(f.userKey, [...(byKey.get(f.userKey) ?? []), f.family]);
    await Promise.all([...byKey].map(([userKey, families]) => this.store.directory.dropUserEntries(userKey, families)));
  }

  /** The user's entries under every secret, one per family (the most recently seen). */
  private async found(user: string): Promise<Found[]> {
    const byFamily = new Map<string, Found>();
    const sets = await Promise.all(
      this.keys.map(async (k) => {
        const userKey = userKeyOf(k, user);
        return { k, userKey, entries: await this.store.directory.userEntries(userKey) };
      }),
    );
    for (const { k, userKey, entries } of sets) {
      for (const [family, sealed] of entries) {
        const entry = openEntry(k, user, family, sealed);
        if (entry === undefined) {
          this.log.warn({ event: 'directory.entry_unreadable' }, "a user's session entry could not be opened; it is skipped");
          continue;
        }
        const prev = byFamily.get(family);
        if (prev === undefined || entry.s > prev.entry.s) byFamily.set(family, { family, entry, userKey });
      }
    }
    return [...byFamily.values()];
  }

  private async putEntry(ref: SessionRef, client: ClientInfo | undefined): Promise<void> {
    const user = ref.meta.user as string;
    const k = this.keys[0] as SecretKeys;
    const entry: Entry = { k: ref.key, l: ref.logId, c: ref.meta.created, s: ref.meta.touched, d: ref.meta.deadline };
    if (client?.userAgent) entry.a = client.userAgent.slice(0, MAX_USER_AGENT);
    if (client?.address) entry.p = client.address;
    await this.store.directory.putUserEntry(userKeyOf(k, user), ref.meta.family, seal(entryKey(k, user), ref.meta.family, JSON.stringify(entry)), this.ttlOf(ref.meta));
  }

  /** Revokes a family through the store (tombstones until its deadline); how many live ids it ended. */
  private revokeFamily(family: string, key: string, deadline: number): Promise<number> {
    return this.store.revokeFamily(family, key, Math.max(1000, deadline - this.clock()));
  }

  /** An entry lives until its session's absolute deadline. */
  private ttlOf(meta: Readonly<SessionMeta>): number {
    return Math.max(1000, meta.deadline - this.clock());
  }
}

function derive(secret: string, purpose: string): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(secret, 'utf8'), Buffer.from('coatcheck/v1/directory'), Buffer.from(purpose), 32));
}

/** The index key of a user id under one secret: a keyed hash, never the id. */
function userKeyOf(k: SecretKeys, user: string): string {
  return createHmac('sha256', k.index).update(user, 'utf8').digest('base64url').slice(0, 32);
}

/** The key that seals one user's entries under one secret. */
function entryKey(k: SecretKeys, user: string): Buffer {
  return Buffer.from(hkdfSync('sha256', k.seal, Buffer.alloc(0), Buffer.from(user, 'utf8'), 32));
}

function openEntry(k: SecretKeys, user: string, family: string, sealed: string): Entry | undefined {
  const text = open(entryKey(k, user), family, sealed);
  if (text === undefined) return undefined;
  try {
    const e = JSON.parse(text) as Entry;
    return typeof e.k === 'string' && typeof e.l === 'string' && Number.isFinite(e.c) && Number.isFinite(e.s) && Number.isFinite(e.d) ? e : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A log id's record: `<store key> <family> <deadline, ms since the epoch, base 36>` (~75
 * bytes; neither a store key nor a family id holds a space). Records written before were JSON
 * (`{"k":…,"f":…,"d":…}`, ~97 bytes) and are still read.
 */
export function formatWhere(key: string, family: string, deadline: number): string {
  return `${key} ${family} ${deadline.toString(36)}`;
}

export function parseWhere(text: string): { k: string; f: string; d: number } | undefined {
  if (!text.startsWith('{')) {
    const parts = text.split(' ');
    if (parts.length !== 3) return undefined;
    const [k, f, d] = parts as [string, string, string];
    const deadline = /^[0-9a-z]{1,11}$/.test(d) ? parseInt(d, 36) : NaN;
    return k !== '' && f !== '' && Number.isSafeInteger(deadline) ? { k, f, d: deadline } : undefined;
  }
  try {
    const w = JSON.parse(text) as { k?: unknown; f?: unknown; d?: unknown };
    return typeof w.k === 'string' && typeof w.f === 'string' && typeof w.d === 'number' ? { k: w.k, f: w.f, d: w.d } : undefined;
  } catch {
    return undefined;
  }
}
