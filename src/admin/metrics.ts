// Prometheus metrics, on a registry of our own (no global state).
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type CounterConfiguration, type LabelValues } from 'prom-client';
import type { StoreStats } from '../store/types.js';

/** Every security event class, counted from zero so that dashboards see them before the first one. */
const SECURITY_EVENTS = ['revoked', 'expired', 'forged', 'unknown', 'legacy_cookie_presented', 'binding_mismatch', 'write_after_revoke', 'ticket_conflict'] as const;
const SESSION_ACTIONS = ['created', 'rotated', 'renewed', 'revoked', 'evicted'] as const;
/**
 * What became of a WebSocket upgrade: opened (101), refused by the app (another status),
 * rejected (invalid session), failed (store or app unavailable, bad request), disabled
 * (websocket.enabled false), limit (websocket.maxConnections), draining (shutting down).
 */
export const UPGRADE_OUTCOMES = ['opened', 'refused', 'rejected', 'failed', 'disabled', 'limit', 'draining'] as const;
export type UpgradeOutcome = (typeof UPGRADE_OUTCOMES)[number];

/** What the live-connection gauges read at each scrape. */
export interface LiveStats {
  webSockets: number;
  /** Revocations made on other instances are being heard (the store's feed is subscribed). */
  feedUp: boolean;
}

export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<'status'>;
  readonly duration: Histogram;
  readonly security: SecurityEvents;
  readonly sessions: Counter<'action'>;
  readonly storeErrors: Counter;
  readonly upstreamErrors: Counter<'status'>;
  readonly revokeNotReplicated: Counter;
  readonly upgrades: Counter<'outcome'>;
  readonly revocationCloses: Counter<'kind'>;
  /** Where the live connections are read from at each scrape (watchLive). */
  private liveStats: (() => LiveStats) | undefined;
  /** Where the store's own counts are read from at each scrape (watchStore). */
  private storeStats: (() => StoreStats) | undefined;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.requests = new Counter({ name: 'coatcheck_requests_total', help: 'Requests answered, by status code.', labelNames: ['status'], registers });
    this.duration = new Histogram({
      name: 'coatcheck_request_duration_seconds',
      help: 'Time from request to the last byte of the response.',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.security = new SecurityEvents({
      name: 'coatcheck_security_events_total',
      help: 'Rejected or suspicious tickets and cookies, by class (revoked = a replay after logout) and mode (report-only: reported, not refused).',
      labelNames: ['event', 'mode'],
      registers,
    });
    this.sessions = new Counter({ name: 'coatcheck_sessions_total', help: 'Session lifecycle events.', labelNames: ['action'], registers });
    this.storeErrors = new Counter({ name: 'coatcheck_store_errors_total', help: 'Requests failed closed because the store was unavailable.', registers });
    this.upstreamErrors = new Counter({ name: 'coatcheck_upstream_errors_total', help: 'Requests the app did not answer, by the status sent instead.', labelNames: ['status'], registers });
    // The store counts these itself (it knows when a WAIT fell short); read at each scrape.
    let seen = 0;
    const readStats = () => this.storeStats?.();
    this.revokeNotReplicated = new Counter({
      name: 'coatcheck_store_revoke_not_replicated_total',
      help: 'Revocations (logout, family revocation, rotation) that fewer replicas than store.replicas acknowledged within store.replicaTimeout.',
      registers,
      collect() {
        const now = readStats()?.revokeNotReplicated ?? seen;
        if (now > seen) this.inc(now - seen);
        seen = now;
      },
    });
    this.upgrades = new Counter({ name: 'coatcheck_websocket_upgrades_total', help: 'WebSocket upgrade requests, by outcome.', labelNames: ['outcome'], registers });
    this.revocationCloses = new Counter({
      name: 'coatcheck_connections_closed_by_revocation_total',
      help: 'Open WebSockets and streaming responses ended because their session was revoked, by kind.',
      labelNames: ['kind'],
      registers,
    });
    const readLive = () => this.liveStats?.();
    new Gauge({
      name: 'coatcheck_websockets_open',
      help: 'Open WebSockets in this process.',
      registers,
      collect() {
        this.set(readLive()?.webSockets ?? 0);
      },
    });
    new Gauge({
      name: 'coatcheck_revocation_feed_up',
      help: '1 while revocations made on other instances are heard (the store subscription is up), else 0.',
      registers,
      collect() {
        this.set(readLive()?.feedUp === false ? 0 : 1);
      },
    });
    for (const outcome of UPGRADE_OUTCOMES) this.upgrades.inc({ outcome }, 0);
    for (const kind of ['websocket', 'stream']) this.revocationCloses.inc({ kind }, 0);
    for (const event of SECURITY_EVENTS) this.security.inc({ event }, 0);
    for (const action of SESSION_ACTIONS) this.sessions.inc({ action }, 0);
    if (opts.defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'coatcheck_' });
  }

  /** Reads the live connections' counts at each scrape. */
  watchLive(read: () => LiveStats): void {
    this.liveStats = read;
  }

  /** Reads the store's own counts (when it keeps any) at each scrape. */
  watchStore(store: { stats?(): StoreStats }): void {
    this.storeStats = store.stats ? () => (store.stats as () => StoreStats).call(store) : undefined;
  }
}

/** What the security events were seen under: `enforce` (refused or acted on), `report-only` (only reported). */
export type SecurityMode = 'enforce' | 'report-only';

/**
 * coatcheck_security_events_total: every series carries `mode`; an event counted without one is
 * an enforce-mode event (the stages of enforce mode name only the event).
 */
export class SecurityEvents extends Counter<'event' | 'mode'> {
  constructor(config: CounterConfiguration<'event' | 'mode'>) {
    super(config);
    // prom-client sets `inc` on the instance in its constructor (a prototype method would be
    // shadowed): wrap that one.
    const inc = this.inc.bind(this) as (labels: LabelValues<'event' | 'mode'>, value?: number) => void;
    const withMode = (arg?: LabelValues<'event' | 'mode'> | number, value?: number): void => {
      if (typeof arg !== 'object') return inc({}, arg);
      // An exemplar form ({ labels, value, exemplarLabels }) is not used here; labels are the plain form.
      inc(arg.mode === undefined ? { ...arg, mode: 'enforce' } : arg, value);
    };
    this.inc = withMode as Counter<'event' | 'mode'>['inc'];
  }
}
