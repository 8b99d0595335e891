// The one interface every session store implements. HTTP-agnostic and crypto-agnostic:
// keys are already hashed session ids, field values are already encrypted by the caller.

/** Metadata the store keeps beside the jar fields of one session. Times are ms since the epoch. */
export interface SessionMeta {
  /** When the session (its family's first id) was created. */
  created: number;
  /** The absolute deadline: created + absoluteTimeout. Nothing outlives it, tombstones included. */
  deadline: number;
  /** The last sliding touch (write of the idle TTL). */
  touched: number;
  /** Family id: every id minted from one login shares it. */
  family: string;
  /** When this id was issued (a renewal issues a new id; created stays). */
  issued: number;
  /** The app's user id, when known. */
  user?: string;
  /** Keyed hash of what the session is bound to (user agent, address prefix), when binding is on. */
  bind?: string;
}

/**
 * What a load finds. `none` covers both "never existed" and "expired" (the TTL removed it):
 * a store cannot tell them apart and the proxy treats them alike.
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
  | { state: 'live'; meta: SessionMeta; fields: Map<string, string> };

/** With rotate(): leave the old id as an alias of the new one instead of a tombstone. */
export interface RenewalAlias {
  /** Opaque (sealed by the caller); returned by load() as `successor`. */
  successor: string;
  /** Until when the alias may be used (ms since the epoch). */
  graceUntil: number;
}

/** Field changes for one live session. */
export interface SessionUpdate {
  /** Jar fields to write (field name → opaque value). */
  set?: ReadonlyMap<string, string>;
  /** Jar fields to delete. */
  del?: readonly string[];
  /** New sliding touch time; written with `ttlMs`. */
  touched?: number;
  /** New TTL for the record, in ms (> 0). */
  ttlMs?: number;
  /** The app's user id. */
  user?: string;
}

export interface SessionStore {
  readonly kind: 'memory' | 'redis';
  /** Connects and checks the store answers. Throws StoreUnavailableError when it does not. */
  start(): Promise<void>;
  /** Releases every resource; safe after a partial start and when called twice. */
  close(): Promise<void>;
  /** Round trip to the store; throws StoreUnavailableError on failure. */
  ping(): Promise<void>;

  load(key: string): Promise<LoadResult>;

  /**
   * Creates a session record with its TTL, and adds it to its family (`meta.family`), which
   * lives until `meta.deadline`. Returns false and writes nothing when the key holds anything
   * already (a live record, an alias or a tombstone).
   */
  create(key: string, meta: SessionMeta, fields: ReadonlyMap<string, string>, ttlMs: number): Promise<boolean>;

  /**
   * Applies changes to a live record only. Returns false and writes nothing when the record
   * is gone or revoked: a write can never bring a session back.
   */
  update(key: string, change: SessionUpdate): Promise<boolean>;

  /**
   * Deletes the record and leaves a tombstone for `tombstoneTtlMs` (> 0) in one atomic step.
   * Returns true when a live record was revoked; false when there was none (a tombstone is
   * still written, so a late create cannot take the key).
   */
  revoke(key: string, tombstoneTtlMs: number): Promise<boolean>;

  /**
   * In one atomic step: creates `newKey` (meta, fields, ttlMs; added to `meta.family`) and ends
   * `oldKey` for `oldTombstoneTtlMs`: as a tombstone, or, with `alias`, as an alias of the new
   * id. Returns false and changes nothing when `oldKey` is not live or `newKey` holds anything.
   */
  rotate(
    oldKey: string,
    oldTombstoneTtlMs: number,
    newKey: string,
    meta: SessionMeta,
    fields: ReadonlyMap<string, string>,
    ttlMs: number,
    alias?: RenewalAlias,
  ): Promise<boolean>;

  /**
   * Revokes every id of a family (live records and aliases) in one atomic step, leaving
   * tombstones of `tombstoneTtlMs`. Returns how many live records it revoked.
   */
  revokeFamily(family: string, tombstoneTtlMs: number): Promise<number>;
}

/** Names of jar fields never start with this character; store-internal fields do. */
export const META_FIELD_MARK = '@';
