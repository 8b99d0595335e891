// The revocation feed: how every process with open long-lived connections (WebSockets, streamed
// responses) hears that a session ended, wherever it ended. The store announces each revoking
// write it made (revoke, revokeFamily, a rotation that leaves no alias) to its own process at
// once, and, when the store is shared, to every other process through the store (Redis pub/sub:
// redis/revocation-feed.ts). What a message names is what the store already holds: hashed
// store keys and family ids, never a session id or a ticket.
import type { Logger } from '../log.js';

/**
 * One revoking write: every connection whose session key is in `keys`, or whose family is
 * `family`, must end; with `all` (the revoke-all switch), every session created until then:
 * each open connection's session is checked against the store.
 */
export interface Revocation {
  /** The family that was revoked whole (revokeFamily). */
  family?: string;
  /** Store keys that were ended (revoked, or rotated away at a login). */
  keys: readonly string[];
  /** Every session that existed was revoked (DirectoryStore.setRevokedBefore). */
  all?: boolean;
}

export interface RevocationListener {
  /** A revocation, from this process or another. Called synchronously; must not throw. */
  revoked(revocation: Revocation): void;
  /**
   * Delivery from other processes was interrupted and works again: messages sent meanwhile may
   * have been missed, so every open connection's session must be checked again.
   */
  resynced(): void;
}

export interface RevocationFeed {
  /**
   * Starts delivering to `listener` (one listener per feed). Resolves once revocations from
   * other processes are delivered too (Redis: subscribed); throws StoreUnavailableError when
   * that cannot be done within the store's connect timeout.
   */
  listen(listener: RevocationListener): Promise<void>;
  /** Revocations made elsewhere are being delivered now (always true for a feed of one process). */
  connected(): boolean;
}

/** The feed of a store that lives in one process: what it announces is all there is. */
export class InProcessFeed implements RevocationFeed {
  private listener: RevocationListener | undefined;

  constructor(private readonly log: Logger) {}

  async listen(listener: RevocationListener): Promise<void> {
    this.listener = listener;
  }

  connected(): boolean {
    return true;
  }

  announce(revocation: Revocation): void {
    deliver(this.listener, revocation, this.log);
  }
}

/** Hands a revocation to the listener; a listener that throws is logged, never lets the store's write fail. */
export function deliver(listener: RevocationListener | undefined, revocation: Revocation, log: Logger): void {
  if (listener === undefined) return;
  try {
    listener.revoked(revocation);
  } catch (err) {
    log.error({ event: 'store.revocation_listener_failed', err: (err as Error)?.message }, 'closing the connections of a revoked session failed');
  }
}

/** The wire form of a revocation (JSON); undefined for anything else. */
export function encodeRevocation(r: Revocation): string {
  if (r.all) return JSON.stringify({ a: 1, k: [] });
  return JSON.stringify(r.family !== undefined ? { f: r.family, k: r.keys } : { k: r.keys });
}

export function decodeRevocation(text: string): Revocation | undefined {
  try {
    const v = JSON.parse(text) as { f?: unknown; k?: unknown; a?: unknown };
    if (!Array.isArray(v.k) || !v.k.every((k) => typeof k === 'string')) return undefined;
    if (v.a === 1) return { keys: [], all: true };
    if (v.f !== undefined && typeof v.f !== 'string') return undefined;
    return v.f !== undefined ? { family: v.f, keys: v.k as string[] } : { keys: v.k as string[] };
  } catch {
    return undefined;
  }
}
