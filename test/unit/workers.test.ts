// The primary's rules, without processes: when a dead worker is started again and when the
// primary gives up (restart-policy.ts), how many workers "auto" is, and how the workers'
// metrics add up, across a worker's death too (cluster-metrics.ts).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Metrics } from '../../src/admin/metrics.js';
import { ClusterMetrics } from '../../src/workers/cluster-metrics.js';
import type { MetricsSnapshot } from '../../src/workers/messages.js';
import { workerCount } from '../../src/workers/count.js';
import { RESTART_RULE, RestartPolicy } from '../../src/workers/restart-policy.js';

describe('workerCount', () => {
  test('a number is that many; "auto" is one per CPU the process may use, at least one', () => {
    assert.equal(workerCount(3, 8), 3);
    assert.equal(workerCount('auto', 4), 4);
    assert.equal(workerCount('auto', 0), 1);
  });
});

describe('restart policy', () => {
  test('the rule as documented: 100 ms doubling to at most 30 s; 30 s of listening starts the count again; give up after 3 failed starts of every worker', () => {
    assert.deepEqual(RESTART_RULE, { firstDelayMs: 100, maxDelayMs: 30_000, stableMs: 30_000, giveUpAfter: 3 });
  });

  test('a worker that keeps dying soon after it listens waits twice as long each time, up to the cap', () => {
    const p = new RestartPolicy(2);
    p.listening(1, 0);
    let now = 0;
    const delays: number[] = [];
    for (let i = 0; i < 12; i++) {
      p.listening(0, now);
      now += 1_000; // dies a second after it started listening
      const after = p.died(0, now);
      assert.ok('restartInMs' in after);
      assert.equal(after.failedStart, false);
      delays.push(after.restartInMs);
    }
    assert.deepEqual(delays, [100, 200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600, 30_000, 30_000, 30_000]);
  });

  test('a worker that ran for 30 s before it died starts from 100 ms again', () => {
    const p = new RestartPolicy(1);
    p.listening(0, 0);
    assert.deepEqual(p.died(0, 10), { restartInMs: 100, failedStart: false });
    p.listening(0, 20);
    assert.deepEqual(p.died(0, 30), { restartInMs: 200, failedStart: false });
    p.listening(0, 40);
    assert.deepEqual(p.died(0, 40 + 30_000), { restartInMs: 100, failedStart: false });
  });

  test('while one worker listens, the others are retried for as long as it takes', () => {
    const p = new RestartPolicy(2);
    p.listening(0, 0);
    p.listening(1, 0);
    assert.equal(p.listeningCount(), 2);
    assert.ok('restartInMs' in p.died(1, 5));
    for (let i = 0; i < 20; i++) {
      const after = p.died(1, 10 + i);
      assert.ok('restartInMs' in after, `failed start ${i + 1} is retried`);
      assert.equal(after.failedStart, true);
    }
    assert.equal(p.listeningCount(), 1);
  });

  test('with none listening, the primary gives up once every worker failed its last 3 starts', () => {
    const p = new RestartPolicy(2);
    p.listening(0, 0);
    p.listening(1, 0);
    assert.ok('restartInMs' in p.died(0, 1)); // a crash: not a failed start
    assert.ok('restartInMs' in p.died(1, 1));
    assert.equal(p.listeningCount(), 0);
    for (let i = 0; i < 2; i++) {
      assert.ok('restartInMs' in p.died(0, 2), 'worker 1: failed start');
      assert.ok('restartInMs' in p.died(1, 2), 'worker 2: failed start');
    }
    assert.ok('restartInMs' in p.died(0, 3), 'worker 1 failed 3 times, worker 2 only twice');
    assert.deepEqual(p.died(1, 3), { giveUp: true, failedStart: true });
  });

  test('a worker that gets to listen again clears its failed starts', () => {
    const p = new RestartPolicy(1);
    p.died(0, 0); // died before it ever listened: a failed start
    p.died(0, 1);
    p.listening(0, 2);
    assert.ok('restartInMs' in p.died(0, 3), 'a crash after listening');
    assert.ok('restartInMs' in p.died(0, 4), 'failed start 1');
    assert.ok('restartInMs' in p.died(0, 5), 'failed start 2');
    assert.ok('giveUp' in p.died(0, 6), 'failed start 3');
  });
});

describe('cluster metrics', () => {
  async function snapshotOf(m: Metrics): Promise<MetricsSnapshot> {
    return (await m.registry.getMetricsAsJSON()) as unknown as MetricsSnapshot;
  }
  const value = (text: string, series: string): number | undefined => {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };

  test("the workers' counters and histograms add up; the primary's own metrics come with them", async () => {
    const a = new Metrics();
    const b = new Metrics();
    a.requests.inc({ status: '200' }, 3);
    b.requests.inc({ status: '200' }, 4);
    b.requests.inc({ status: '503' });
    a.duration.observe(0.002);
    b.duration.observe(0.2);
    const c = new ClusterMetrics(() => ({ listening: 2, starting: 0, down: 0 }));
    c.track(1);
    c.track(2);
    const live = [await snapshotOf(a), await snapshotOf(b)];
    assert.ok(c.record(1, live[0] as MetricsSnapshot));
    assert.ok(c.record(2, live[1] as MetricsSnapshot));
    const { text, contentType } = await c.text(live);
    assert.match(contentType, /^text\/plain/);
    assert.equal(value(text, 'coatcheck_requests_total{status="200"}'), 7);
    assert.equal(value(text, 'coatcheck_requests_total{status="503"}'), 1);
    assert.equal(value(text, 'coatcheck_request_duration_seconds_count'), 2);
    assert.equal(value(text, 'coatcheck_request_duration_seconds_bucket{le="0.0025"}'), 1);
    assert.equal(value(text, 'coatcheck_workers{state="listening"}'), 2);
    assert.equal(value(text, 'coatcheck_worker_restarts_total'), 0);
  });

  test('a worker that is gone leaves its last counters in the totals (they never drop), not its gauges', async () => {
    const a = new Metrics();
    const b = new Metrics();
    a.requests.inc({ status: '200' }, 5);
    b.requests.inc({ status: '200' }, 2);
    const c = new ClusterMetrics(() => ({ listening: 1, starting: 1, down: 0 }));
    c.track(1);
    c.track(2);
    const first = [await snapshotOf(a), await snapshotOf(b)];
    c.record(1, first[0] as MetricsSnapshot);
    c.record(2, first[1] as MetricsSnapshot);
    assert.equal(value((await c.text(first)).text, 'coatcheck_requests_total{status="200"}'), 7);

    // Worker 1 dies; worker 3 replaces it and serves one request; worker 2 serves one more.
    c.retire(1);
    assert.equal(c.record(1, first[0] as MetricsSnapshot), false, 'a late report of a dead worker is ignored');
    const a2 = new Metrics();
    a2.requests.inc({ status: '200' });
    b.requests.inc({ status: '200' });
    c.track(3);
    c.restarts.inc();
    const second = [await snapshotOf(a2), await snapshotOf(b)];
    c.record(3, second[0] as MetricsSnapshot);
    c.record(2, second[1] as MetricsSnapshot);
    const text = (await c.text(second)).text;
    assert.equal(value(text, 'coatcheck_requests_total{status="200"}'), 9, '5 (retired) + 1 + 3');
    assert.equal(value(text, 'coatcheck_worker_restarts_total'), 1);

    // Gauges are not retired: a gauge of the live workers only.
    const g = (snap: MetricsSnapshot, v: number): MetricsSnapshot => [...snap, { name: 'coatcheck_test_gauge', help: 'h', type: 'gauge', aggregator: 'sum', values: [{ value: v, labels: {} }] }];
    const d = new ClusterMetrics(() => ({ listening: 1, starting: 0, down: 1 }));
    d.track(1);
    d.track(2);
    d.record(1, g(first[0] as MetricsSnapshot, 10));
    d.retire(1);
    const t2 = (await d.text([g(second[1] as MetricsSnapshot, 4)])).text;
    assert.equal(value(t2, 'coatcheck_test_gauge'), 4);
    assert.equal(value(t2, 'coatcheck_requests_total{status="200"}'), 8, '5 (retired) + 3');
  });

  test('a worker that died before its first report adds nothing', async () => {
    const c = new ClusterMetrics(() => ({ listening: 0, starting: 0, down: 1 }));
    c.track(1);
    c.retire(1);
    const text = (await c.text([])).text;
    assert.equal(value(text, 'coatcheck_requests_total{status="200"}'), undefined);
    assert.equal(value(text, 'coatcheck_workers{state="down"}'), 1);
  });
});
