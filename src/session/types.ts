// The session service's vocabulary: what resolve() answers, what commit() takes and answers,
// and the timeouts and limits it is built with. Types only.
import type { Cookie } from 'tough-cookie';
import type { JarChange } from '../cookies/jar.js';
import type { ClientInfo, SessionRef } from './directory.js';
import type { SessionMeta } from './record.js';
import type { KnownTicket } from './ticket-cache.js';

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
  /** Shared with other requests of this session: never mutate it. */
  meta: Readonly<SessionMeta>;
  jarKey: Buffer;
  /** field → cookie, decrypted; cookies already expired at load time are left out. Shared: never mutate it. */
  cookies: ReadonlyMap<string, Cookie>;
  /** The record's version in the store: the compare-and-set token of the next write. */
  version: number;
  /** Its entry in the ticket cache, when it was found through one (forgotten once the id dies). */
  cached?: KnownTicket;
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
  | { state: 'live'; session: LiveSession }
  /**
   * Several tickets that cannot be served as one session: two or more different live sessions,
   * or a live one next to a revoked one. None of them is served; a logout revokes every one in
   * `live`, and every id in `revoked` (log ids) is a replay.
   */
  | { state: 'mixed'; live: readonly LiveSession[]; revoked: readonly string[] };

/** Why a live session gets a new id: a login ('rotated') or periodic renewal ('renewed'). */
export type Rotation = 'rotated' | 'renewed';

export type CommitOutcome =
  /** Nothing to write, or written to the request's session. */
  | { kind: 'unchanged' }
  | ({ kind: 'updated' } & DirectoryNote)
  /** A new id (first managed cookie, rotation at login, renewal): give the browser this ticket. */
  | ({ kind: 'created'; ticket: string; logId: string; cause: 'created' | Rotation } & DirectoryNote)
  /** The session was revoked or expired while the request was in flight: the changes are dropped. */
  | { kind: 'gone' };

/** What a write tells the session directory (directory.ts), and what the directory did. */
export interface DirectoryNote {
  /** The id written, when the directory is to hear of it: a new id, a touch, a new user. */
  ref?: SessionRef;
  /** The session got its user with this write (a login, or the app named one). */
  newUser?: boolean;
  /** Log ids of the user's sessions that session.maxPerUser revoked because of this one. */
  evicted?: string[];
}

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
  /** Where the request comes from (user agent, address prefix), for the user's session list. */
  client?: ClientInfo;
}
