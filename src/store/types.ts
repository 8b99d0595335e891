// The one interface every session store implements. HTTP-agnostic and crypto-agnostic: keys
// are already hashed session ids, and a live record is one opaque value (the jar and its
// metadata, sealed by the caller) with a version the store bumps on every write.
//
// Lineages (lineage.ts): a key is `<tag>.<hash>`, and every id minted from an existing session
// keeps its tag. The operations that touch several keys stay within one lineage, so that a store
// can keep each lineage together (on Redis Cluster: one hash slot, where one script may touch
// only keys of one slot): rotate()'s two keys share a lineage (checked: a RangeError otherwise),
// and revokeFamily() reaches the members of `key`'s lineage. Keys without a tag all belong to
// one lineage of their own (the empty one). Otherwise keys are opaque: any string is a key.

import type { RevocationFeed } from './revocations.js';

/**
 * What a load finds. `none` covers both "never existed" and "expired" (the TTL removed it):
 * a store cannot tell them apart and the proxy treats them alike. A corrupt entry also loads
 * as `none`, with a warning (a damaged tombstone or alias loads as `revoked`).
 */
export type LoadResult =
  | { state: 'none' }
  | { state: 'revoked'; deadline: number }
  /**
   * The id was renewed: `successor` (opaque, sealed by the caller) names the new id. Until
   * `graceUntil` the old id may still be used as an alias of its successor; after that it is as
   * dead as a revoked one. `deadline` is the alias's own end of life (as for a tombstone: when
   * it was written plus the ttl rotate() was given). Family revocation turns it into a tombstone.
   */
  | { state: 'renewed'; successor: string; graceUntil: number; deadline: number; family: string }
  /**
   * A live record: `data` exactly as the last create/update/rotate wrote it, and its version
   * (1 when created, +1 per update): the compare-and-set token of update() and rotate().
   */
  | { state: 'live'; version: number; data: Buffer };

/**
 * With rotate(): leave the old id as an alias of the new one instead of a tombstone, and make
 * both members of `family`, so that revokeFamily() ends every id minted from one login.
 */
export interface RenewalAlias {
  /** Opaque (sealed by the caller), a non-empty base64url token; returned by load() as `successor`. */
  successor: string;
  /** Until when the alias may be used (ms since the epoch). */
  graceUntil: number;
  /** The family both ids belong to: a non-empty base64url token. */
  family: string;
  /** When the family's last member dies at the latest (whole ms since the epoch): its index lives until then. */
  familyDeadline: number;
}

/**
 * What a revoking write (revoke, revokeFamily, rotate) is about, for the store's log lines: the
 * session's log id (a short keyed hash; the store itself only sees hashed keys). Optional: a
 * store that logs nothing about it ignores it.
 */
export interface WriteContext {
  logId?: string;
}

/** Counts a store keeps for the metrics (read, never reset). */
export interface StoreStats {
  /** Revoking writes that fewer replicas than configured acknowledged in time (WAIT). */
  revokeNotReplicated: number;
}

/** The outcome of a conditional write. */
export type WriteResult =
  | 'ok'
  /** The record is not live (never was, expired, revoked, renewed): nothing was written. */
  | 'gone'
  /** The record is live but another write came first (its version moved on): nothing was written. */
  | 'conflict';

export interface SessionStore extends FingerprintStore {
  readonly kind: 'memory' | 'redis';
  /** Connects and checks the store answers. Throws StoreUnavailableError when it does not. */
  start(): Promise<void>;
  /** Releases every resource; safe after a partial start and when called twice. */
  close(): Promise<void>;
  /** Round trip to the store; throws StoreUnavailableError on failure. */
  ping(): Promise<void>;
  /**
   * Whether the store is known to be reachable right now, without a round trip: false when a
   * call would certainly fail (not started, closed, Redis connection not ready). True is no
   * promise that the next call succeeds. Cheap and synchronous: asked before a login is forwarded.
   */
  available(): boolean;

  load(key: string): Promise<LoadResult>;

  /**
   * Creates a live record (version 1) with its TTL. Returns false and writes nothing when the
   * key holds anything already (a live record, an alias or a tombstone).
   */
  create(key: string, data: Buffer, ttlMs: number): Promise<boolean>;

  /**
   * Replaces a live record's data and TTL when its version is still `version` (the new
   * version is `version + 1`). A write can never bring a session back: a record that is not
   * live gives 'gone'.
   */
  update(key: string, version: number, data: Buffer, ttlMs: number): Promise<WriteResult>;

  /**
   * Deletes the record and leaves a tombstone for `tombstoneTtlMs` (> 0) in one atomic step.
   * Returns true when a live record was revoked; false when there was none (a tombstone is
   * still written, so a late create cannot take the key).
   */
  revoke(key: string, tombstoneTtlMs: number, context?: WriteContext): Promise<boolean>;

  /**
   * In one atomic step: creates `newKey` (data, ttlMs, version 1) and ends `oldKey` (live, at
   * `oldVersion`) for `oldTombstoneTtlMs`: as a tombstone, or, with `alias`, as an alias of the
   * new id, both then members of the alias's family. Changes nothing and returns 'gone' when
   * `oldKey` is not live or `newKey` holds anything, 'conflict' when `oldKey` moved past
   * `oldVersion`. `oldKey` and `newKey` share a lineage: a RangeError, and nothing written,
   * when they do not.
   */
  rotate(
    oldKey: string,
    oldVersion: number,
    oldTombstoneTtlMs: number,
    newKey: string,
    data: Buffer,
    ttlMs: number,
    alias?: RenewalAlias,
    context?: WriteContext,
  ): Promise<WriteResult>;

  /**
   * Revokes `key` and every id of `family` (live records and aliases) in one atomic step,
   * leaving tombstones of `tombstoneTtlMs` (always one at `key`). A family only has members
   * once one of its ids was renewed. Returns how many live records it revoked. The members are
   * those rotate() wrote into `family` with keys of `key`'s lineage: a store may index a family
   * per lineage (memory and Redis Cluster do; one Redis server indexes it by its id alone, as
   * it did before lineages), so the ids of one family must share one lineage, as the ids that
   * descend from one session do.
   */
  revokeFamily(family: string, key: string, tombstoneTtlMs: number, context?: WriteContext): Promise<number>;

  /** Counts for the metrics; a store without any has no stats(). */
  stats?(): StoreStats;

  /**
   * Where the store announces every id it ended (revoke, revokeFamily, a rotate without alias),
   * to this process and, for a shared store, to every other one (revocations.ts). A store
   * without one cannot end long-lived connections anywhere but by their periodic check.
   */
  readonly revocationFeed?: RevocationFeed;

  /** Users' sessions, log ids and the revoke-all time (see DirectoryStore). */
  readonly directory: DirectoryStore;
}

/**
 * What the session directory (session/directory.ts) keeps beside the sessions: which sessions a
 * user has, where a log id's session is, and the time before which every session counts as
 * revoked. Values are opaque strings (the directory seals what needs sealing); every entry
 * expires on its own. Every failure is a StoreUnavailableError, as for the sessions.
 */
export interface DirectoryStore {
  /** Sets `field` of the user's entry set to `value`; the set lives at least `ttlMs` more. */
  putUserEntry(userKey: string, field: string, value: string, ttlMs: number): Promise<void>;
  /** Every field of the user's entry set (empty when none). */
  userEntries(userKey: string): Promise<Map<string, string>>;
  /** Removes fields from the user's entry set. */
  dropUserEntries(userKey: string, fields: readonly string[]): Promise<void>;
  /** Says where the session of a log id is, for `ttlMs`. */
  putLogIndex(logId: string, value: string, ttlMs: number): Promise<void>;
  getLogIndex(logId: string): Promise<string | undefined>;
  /** Every session created before `time` (ms since the epoch) counts as revoked, for `ttlMs`. */
  setRevokedBefore(time: number, ttlMs: number): Promise<void>;
  /**
   * That time; 0 when none was set. Asked on every session load (batched with the loads), and
   * awaited after the load: the returned promise must never be reported as an unhandled
   * rejection when its caller gave up on it (the load failed first), so a store attaches its
   * own handler to a promise that may reject.
   */
  revokedBefore(): Promise<number>;
}

// ---- report-only mode: cookie fingerprints (pipeline/report-only.ts, session/fingerprint.ts) ----

/**
 * Keyed fingerprints of app cookies seen at a logout in report-only mode. A fingerprint is an
 * opaque base64url token (an HMAC the caller computed: never a cookie value); each is its own
 * entry with its own TTL, apart from the sessions (on Redis Cluster each lands in its own slot,
 * so neither call ever sends a multi-key command across slots).
 */
export interface FingerprintStore {
  /**
   * Records each fingerprint with the time `at` (ms since the epoch) for `ttlMs`, replacing an
   * earlier record. Resolves, per fingerprint in order, to the time it was recorded before this
   * call (a fingerprint already there: a logged-out cookie presented again) or null.
   */
  recordFingerprints(fingerprints: readonly string[], at: number, ttlMs: number): Promise<Array<number | null>>;
  /** Per fingerprint in order, the time it was recorded, or null when it is not (or no longer) recorded. */
  findFingerprints(fingerprints: readonly string[]): Promise<Array<number | null>>;
}
