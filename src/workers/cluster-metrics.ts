// The primary's /metrics with several workers: the workers' registries summed (prom-client's
// AggregatorRegistry.aggregate: counters and histograms add up, each default metric as it
// declares), plus the primary's own (workers by state, restarts).
//
// A worker that dies takes its counters with it, and a total that drops reads to Prometheus as
// a counter reset (rate() would then count the survivors' whole totals again). So the counters
// and histograms a worker last reported stay in the totals after it is gone ("retired"): every
// total only grows, across restarts. What a worker counted after its last scrape is lost with it.
import { AggregatorRegistry, Counter, Gauge, Registry, type PrometheusContentType, type RegistryContentType } from 'prom-client';
import type { MetricsSnapshot } from './messages.js';

export type WorkerState = 'listening' | 'starting' | 'down';

export class ClusterMetrics {
  private readonly own = new Registry();
  readonly restarts: Counter;
  /** What each live worker (by cluster worker id) last reported; undefined before its first report. */
  private readonly latest = new Map<number, MetricsSnapshot | undefined>();
  /** The counters and histograms of workers that are gone, summed. */
  private retired: MetricsSnapshot = [];

  constructor(states: () => Record<WorkerState, number>) {
    this.restarts = new Counter({
      name: 'coatcheck_worker_restarts_total',
      help: 'Workers started again after they died.',
      registers: [this.own],
    });
    new Gauge({
      name: 'coatcheck_workers',
      help: 'Worker processes, by state (listening: serving; starting; down: waiting to be started again).',
      labelNames: ['state'],
      registers: [this.own],
      collect() {
        for (const [state, n] of Object.entries(states())) this.set({ state }, n);
      },
    });
  }

  /** A worker was forked: its reports count from now on. */
  track(workerId: number): void {
    this.latest.set(workerId, undefined);
  }

  /** A worker's report; false (and ignored) when the worker is already gone. */
  record(workerId: number, snapshot: MetricsSnapshot): boolean {
    if (!this.latest.has(workerId)) return false;
    this.latest.set(workerId, snapshot);
    return true;
  }

  /** A worker is gone: the counters and histograms it last reported join the retired totals. */
  retire(workerId: number): void {
    const last = this.latest.get(workerId);
    this.latest.delete(workerId);
    if (!last) return;
    const monotonic = last.filter((m) => m.type === 'counter' || m.type === 'histogram');
    this.retired = snapshotOf(AggregatorRegistry.aggregate([this.retired, monotonic]));
  }

  /** The exposition: the live workers' reports and the retired totals summed, and the primary's own metrics. */
  async text(live: readonly MetricsSnapshot[]): Promise<{ text: string; contentType: string }> {
    const workers = AggregatorRegistry.aggregate<PrometheusContentType>([...live, this.retired]);
    const all = Registry.merge([workers, this.own]);
    return { text: await all.metrics(), contentType: all.contentType };
  }
}

/** An aggregated registry's metrics as a snapshot, synchronously (its metrics hold their values). */
function snapshotOf(registry: Registry<RegistryContentType>): MetricsSnapshot {
  return registry.getMetricsAsArray().map((m) => {
    const { name, help, type, aggregator, values } = m as unknown as MetricsSnapshot[number];
    return { name, help, type, aggregator, values };
  });
}
