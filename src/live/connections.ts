// The long-lived connections of this process, by session: open WebSockets and responses still
// streaming (Server-Sent Events, long polls, downloads). A revocation from the store's feed
// (../store/revocations.ts) ends every one of the revoked session or family at once:
// WebSockets with close code 1008, streams by ending their response.
//
// Four things keep this honest when a message is missed or comes too early:
// - a revocation is remembered for RECENT_MS, so a connection whose session was revoked while
//   its upgrade or response was in flight is ended as soon as it registers;
// - every connection's session is checked against the store at each touch interval (the
//   periodic check), which also writes the sliding touch for WebSockets that had traffic and
//   ends the connections of sessions that expired (idle) or were revoked unheard;
// - when the feed's subscription comes back after a loss, every connection is checked at once;
// - each WebSocket is closed at its session's absolute deadline by a timer of its own.
import type { ServerResponse } from 'node:http';
import type { Logger } from '../log.js';
import type { Metrics } from '../admin/metrics.js';
import type { Clock } from '../clock.js';
import type { LiveSession, SessionService } from '../session/service.js';
import type { Revocation, RevocationFeed, RevocationListener } from '../store/revocations.js';
import type { WebSocketTunnel } from './tunnel.js';

/** How long a revocation is remembered for connections that register late. */
const RECENT_MS = 30_000;
/** Most revocations remembered at once (the oldest are forgotten first). */
const RECENT_MAX = 10_000;
/** The periodic check runs at the touch interval, but never more often than this. */
const MIN_CHECK_INTERVAL_MS = 100;
/** setTimeout's longest delay; a deadline further away is armed again when this fires. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export const CLOSE_POLICY = 1008;
export const CLOSE_GOING_AWAY = 1001;

export type LiveKind = 'websocket' | 'stream';
type EndReason = 'revoked' | 'expired' | 'shutdown';

const REASON_TEXT: Record<EndReason, string> = {
  revoked: 'session ended',
  expired: 'session expired',
  shutdown: 'server shutting down',
};

interface Entry {
  kind: LiveKind;
  /** The session's store key and family; '' for an anonymous WebSocket (not indexed). */
  key: string;
  family: string;
  logId: string;
  /** The ticket values the client presented (kept in memory only, never logged): the periodic check resolves them again. */
  tickets: readonly string[];
  deadline: number;
  end(reason: EndReason): void;
  tunnel?: WebSocketTunnel;
  timer?: NodeJS.Timeout;
  ended: boolean;
}

export interface LiveConnectionsDeps {
  service: SessionService;
  feed: RevocationFeed | undefined;
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
  maxWebSockets: number;
}

export type Admission = 'ok' | 'limit' | 'draining';

export class LiveConnections implements RevocationListener {
  private readonly byKey = new Map<string, Set<Entry>>();
  private readonly byFamily = new Map<string, Set<Entry>>();
  private readonly tunnels = new Map<WebSocketTunnel, Entry>();
  /** `k:<key>` / `f:<family>` → until when (performance.now()) it counts as just revoked. */
  private readonly recent = new Map<string, number>();
  private webSockets = 0;
  /** Upgrades admitted and not settled yet (they count against maxWebSockets). */
  private pending = 0;
  private draining = false;
  private checkTimer: NodeJS.Timeout | undefined;
  private checking = false;
  private resyncAgain = false;
  private readonly log: Logger;

  constructor(private readonly deps: LiveConnectionsDeps) {
    this.log = deps.logger;
    deps.metrics.watchLive(() => ({ webSockets: this.webSockets, feedUp: deps.feed?.connected() ?? true }));
  }
  /** A reload's session service (new secrets): re-checks and touches go through it from now on. */
  useService(service: SessionService): void {
    this.deps.service = service;
  }


  /** Subscribes to the store's revocations and starts the periodic check. */
  async start(): Promise<void> {
    await this.deps.feed?.listen(this);
    const every = Math.max(MIN_CHECK_INTERVAL_MS, this.deps.service.touchInterval);
    this.checkTimer = setInterval(() => void this.checkAll('periodic'), every);
    this.checkTimer.unref();
  }

  stop(): void {
    clearInterval(this.checkTimer);
    for (const e of this.tunnels.values()) clearTimeout(e.timer);
  }

  get openWebSockets(): number {
    return this.webSockets;
  }

  /** What is indexed now (tests: nothing is left once every connection closed). */
  sizes(): { webSockets: number; keys: number; families: number; pending: number } {
    return { webSockets: this.tunnels.size, keys: this.byKey.size, families: this.byFamily.size, pending: this.pending };
  }

  /** May another upgrade go to the app? Reserves its place until settle(). */
  admit(): Admission {
    if (this.draining) return 'draining';
    if (this.webSockets + this.pending >= this.deps.maxWebSockets) return 'limit';
    this.pending += 1;
    return 'ok';
  }

  /** An admitted upgrade was answered (opened, refused or failed): its reserved place is freed. */
  settle(): void {
    this.pending -= 1;
  }

  /**
   * An open WebSocket (the caller admitted it), of `session` when it has one. Ends at once if
   * the session was revoked meanwhile.
   */
  addWebSocket(session: LiveSession | undefined, tickets: readonly string[], tunnel: WebSocketTunnel): void {
    this.webSockets += 1;
    const entry: Entry = {
      kind: 'websocket',
      key: '',
      family: '',
      logId: '',
      tickets,
      deadline: Infinity,
      tunnel,
      ended: false,
      end: (reason) => tunnel.close(reason === 'shutdown' ? CLOSE_GOING_AWAY : CLOSE_POLICY, REASON_TEXT[reason]),
    };
    this.tunnels.set(tunnel, entry);
    if (session !== undefined) this.attach(tunnel, session, tickets);
    if (this.draining) entry.end('shutdown');
  }

  /** The WebSocket belongs to `session` (its ticket `tickets`) from now on. */
  attach(tunnel: WebSocketTunnel, session: LiveSession, tickets: readonly string[]): void {
    const e = this.tunnels.get(tunnel);
    if (e === undefined || e.ended) return;
    if (e.key !== '') this.unindex(e);
    e.key = session.key;
    e.family = session.meta.family;
    e.logId = session.logId;
    e.tickets = tickets;
    e.deadline = session.meta.deadline;
    this.index(e);
    if (!e.ended) this.armDeadline(e);
  }

  /** The tunnel of a WebSocket closed: it is forgotten. */
  webSocketClosed(tunnel: WebSocketTunnel): void {
    const e = this.tunnels.get(tunnel);
    if (e === undefined) return;
    this.webSockets -= 1;
    this.tunnels.delete(tunnel);
    e.ended = true;
    this.unindex(e);
  }

  /**
   * A response of `session` still streaming after its head was written: ended (`cut`) when the
   * session is revoked; forgotten when it closes.
   */
  addStream(session: LiveSession, tickets: readonly string[], res: ServerResponse, cut: () => void): void {
    const entry: Entry = {
      kind: 'stream',
      key: session.key,
      family: session.meta.family,
      logId: session.logId,
      tickets,
      deadline: session.meta.deadline,
      ended: false,
      end: () => cut(),
    };
    this.index(entry);
    res.once('close', () => this.unindex(entry));
  }

  // ---- RevocationListener

  revoked(r: Revocation): void {
    // Revoke-all: which sessions it ended only their records say (their creation time).
    if (r.all) {
      void this.checkAll('revoke-all');
      return;
    }
    const now = performance.now();
    this.remember(r, now);
    if (r.family !== undefined) this.endAll(this.byFamily.get(r.family), 'revoked');
    for (const key of r.keys) this.endAll(this.byKey.get(key), 'revoked');
  }

  resynced(): void {
    void this.checkAll('resync');
  }

  /** Shutdown: no more upgrades; every WebSocket closed with 1001; resolves once they are closed (at most CLOSE_GRACE_MS later). */
  stopAccepting(): void {
    this.draining = true;
  }

  closeWebSockets(): Promise<void> {
    this.draining = true;
    const closing: Promise<void>[] = [];
    for (const [tunnel, e] of this.tunnels) {
      closing.push(new Promise<void>((resolve) => (tunnel.client.closed ? resolve() : tunnel.client.once('close', () => resolve()))));
      e.end('shutdown');
    }
    return Promise.all(closing).then(() => undefined);
  }

  // ---- internals

  private endAll(set: Set<Entry> | undefined, reason: EndReason): void {
    if (set === undefined) return;
    for (const e of [...set]) this.endOne(e, reason);
  }

  private endOne(e: Entry, reason: EndReason): void {
    if (e.ended) return;
    e.ended = true;
    clearTimeout(e.timer);
    if (reason === 'revoked') {
      this.deps.metrics.revocationCloses.inc({ kind: e.kind });
      this.log.info({ event: `${e.kind}.closed_by_revocation`, session: e.logId }, `a ${e.kind === 'websocket' ? 'WebSocket' : 'streaming response'} of a revoked session was closed`);
    } else if (reason === 'expired') {
      this.log.info({ event: `${e.kind}.closed_session_expired`, session: e.logId }, `a ${e.kind === 'websocket' ? 'WebSocket' : 'streaming response'} of an expired session was closed`);
    }
    if (e.kind === 'stream') this.unindex(e);
    e.end(reason);
  }

  private index(e: Entry): void {
    addTo(this.byKey, e.key, e);
    addTo(this.byFamily, e.family, e);
    // Revoked while its upgrade or response was on its way: ended now.
    const now = performance.now();
    if (this.isRecent(`k:${e.key}`, now) || this.isRecent(`f:${e.family}`, now)) this.endOne(e, 'revoked');
  }

  private unindex(e: Entry): void {
    clearTimeout(e.timer);
    if (e.key === '') return;
    removeFrom(this.byKey, e.key, e);
    removeFrom(this.byFamily, e.family, e);
  }

  private remember(r: Revocation, now: number): void {
    const until = now + RECENT_MS;
    const names = r.keys.map((k) => `k:${k}`);
    if (r.family !== undefined) names.push(`f:${r.family}`);
    for (const name of names) {
      this.recent.delete(name);
      this.recent.set(name, until);
    }
    // Oldest first: drop what expired, and the oldest past the bound.
    for (const [name, t] of this.recent) {
      if (t > now && this.recent.size <= RECENT_MAX) break;
      this.recent.delete(name);
    }
  }

  private isRecent(name: string, now: number): boolean {
    const t = this.recent.get(name);
    return t !== undefined && t > now;
  }

  /** A timer at the session's absolute deadline (armed again when it is further than setTimeout reaches). */
  private armDeadline(e: Entry): void {
    clearTimeout(e.timer);
    const left = e.deadline - this.deps.clock();
    if (left <= 0) {
      this.endOne(e, 'expired');
      return;
    }
    e.timer = setTimeout(() => this.armDeadline(e), Math.min(left, MAX_TIMER_MS));
    e.timer.unref();
  }

  /**
   * Checks every connection's session against the store (one load per session): ends those
   * revoked or expired, touches those whose WebSockets had traffic, follows a renewal. A store
   * failure leaves the connections open; the next check tries again.
   */
  private async checkAll(why: 'periodic' | 'resync' | 'revoke-all'): Promise<void> {
    if (this.checking) {
      // A resync (or a revoke-all) during a check: that check may have read the store before
      // the message it missed; one more round follows it.
      if (why !== 'periodic') this.resyncAgain = true;
      return;
    }
    this.checking = true;
    try {
      const groups = [...this.byKey.entries()].map(([key, set]) => ({ key, entries: [...set] }));
      await Promise.all(groups.map((g) => this.checkSession(g.entries)));
      if (why === 'resync') this.log.info({ event: 'live.rechecked', sessions: groups.length }, 'open connections checked against the store after the revocation feed came back');
      if (why === 'revoke-all') this.log.info({ event: 'live.rechecked', sessions: groups.length, why }, 'open connections checked against the store after a revoke-all');
    } finally {
      this.checking = false;
    }
    if (this.resyncAgain) {
      this.resyncAgain = false;
      await this.checkAll('resync');
    }
  }

  private async checkSession(entries: Entry[]): Promise<void> {
    const first = entries[0];
    if (first === undefined) return;
    const { service } = this.deps;
    let resolution;
    try {
      resolution = await service.resolve(first.tickets);
    } catch (err) {
      this.log.debug({ event: 'live.check_failed', session: first.logId, err: (err as Error)?.message }, 'could not check a connection’s session; trying again at the next check');
      return;
    }
    if (resolution.state === 'revoked') {
      for (const e of entries) this.endOne(e, 'revoked');
      return;
    }
    if (resolution.state !== 'live') {
      for (const e of entries) this.endOne(e, 'expired');
      return;
    }
    const session = resolution.session;
    // The id was renewed meanwhile: follow it (its old ticket dies with the grace window).
    if (session.successorTicket !== undefined) {
      for (const e of entries) {
        this.unindex(e);
        e.tickets = [session.successorTicket];
        e.key = session.key;
        e.logId = session.logId;
        this.index(e);
        if (e.kind === 'websocket') this.armDeadline(e);
      }
    }
    let traffic = false;
    for (const e of entries) if (e.tunnel?.takeActivity()) traffic = true;
    if (!traffic) return;
    try {
      if ((await service.touch(session)) === 'gone') for (const e of entries) this.endOne(e, 'expired');
    } catch (err) {
      this.log.debug({ event: 'live.touch_failed', session: first.logId, err: (err as Error)?.message }, 'could not touch the session of an open WebSocket');
    }
  }
}

function addTo(map: Map<string, Set<Entry>>, name: string, e: Entry): void {
  let set = map.get(name);
  if (set === undefined) map.set(name, (set = new Set()));
  set.add(e);
}

function removeFrom(map: Map<string, Set<Entry>>, name: string, e: Entry): void {
  const set = map.get(name);
  if (set === undefined) return;
  set.delete(e);
  if (set.size === 0) map.delete(name);
}
