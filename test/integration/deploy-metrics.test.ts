// The Grafana dashboard (deploy/grafana/coatcheck.json) and the Prometheus alerting rules
// (deploy/prometheus/alerts.yaml) must not drift from what coatcheck exports: every metric name
// they query, every label they match on, and every label value they match exactly, is read off
// the /metrics of a real coatcheck (the CLI, two workers on a real redis-server, so that the
// primary's worker metrics and the summed default metrics are there too) after it served a
// few requests.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { send } from '../helpers/client.js';
import { REPO_ROOT, runCli, within, type CliProcess } from '../helpers/coatcheck.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const DASHBOARD = join(REPO_ROOT, 'deploy', 'grafana', 'coatcheck.json');
const ALERTS = join(REPO_ROOT, 'deploy', 'prometheus', 'alerts.yaml');
const SECRET = 'Unique-Secret-Value-0f1e2d3c4b5a69788796-metrics';
/** Labels Prometheus adds to every scraped series (target labels), not coatcheck. */
const TARGET_LABELS = new Set(['instance', 'job']);
/** Series Prometheus makes itself, per target. */
const PROMETHEUS_OWN = new Set(['up']);


interface Dashboard {
  uid: string;
  panels: Array<{ id: number; type: string; title: string; datasource?: { uid: string }; gridPos: { x: number; w: number; h: number; y: number }; targets?: Array<{ expr: string; refId: string }> }>;
  templating: { list: Array<{ name: string; query?: unknown; definition?: string }> };
}
interface Rules {
  groups: Array<{ name: string; rules: Array<{ alert: string; expr: string; for: string; labels: { severity: string }; annotations: { summary: string; description: string } }> }>;
}

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
const rules = parseYaml(readFileSync(ALERTS, 'utf8')) as Rules;

/** Every query of the dashboard and the rules, with where it is. */
function queries(): Array<{ where: string; expr: string }> {
  const out: Array<{ where: string; expr: string }> = [];
  for (const p of dashboard.panels) for (const t of p.targets ?? []) out.push({ where: `dashboard panel "${p.title}" ${t.refId}`, expr: t.expr });
  for (const v of dashboard.templating.list) if (v.definition) out.push({ where: `dashboard variable $${v.name}`, expr: v.definition });
  for (const g of rules.groups) for (const r of g.rules) out.push({ where: `alert ${r.alert}`, expr: r.expr });
  return out;
}

interface Selector {
  name: string;
  matchers: Array<{ label: string; op: string; value: string }>;
}

/** The metric selectors of a PromQL expression: `name` or `name{label op "value", ...}`. */
function selectors(expr: string): Selector[] {
  const out: Selector[] = [];
  // A name followed by `{`, or a coatcheck_ name on its own (inside rate(...), label_values(...)).
  const re = /\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}|\b(coatcheck_[a-zA-Z0-9_:]+)\b/g;
  for (const m of expr.matchAll(re)) {
    const name = (m[1] ?? m[3]) as string;
    const matchers = [...(m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"/g)].map((x) => ({
      label: x[1] as string,
      op: x[2] as string,
      value: x[3] as string,
    }));
    out.push({ name, matchers });
  }
  return out;
}

/** Series names and, per name, every label with the values seen. */
function exposition(text: string): Map<string, Map<string, Set<string>>> {
  const out = new Map<string, Map<string, Set<string>>>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s/.exec(line);
    assert.ok(m, `unreadable exposition line: ${line}`);
    const labels = out.get(m[1] as string) ?? new Map<string, Set<string>>();
    out.set(m[1] as string, labels);
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      const values = labels.get(l[1] as string) ?? new Set<string>();
      labels.set(l[1] as string, values);
      values.add(l[2] as string);
    }
  }
  return out;
}

describe('deploy/grafana and deploy/prometheus', () => {
  test('the dashboard: datasource variable on every panel, unique ids, a 24-column grid, replays first', () => {
    assert.equal(dashboard.uid, 'coatcheck');
    const ids = dashboard.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
    const graphs = dashboard.panels.filter((p) => p.type !== 'row');
    for (const p of graphs) {
      assert.equal(p.datasource?.uid, '${datasource}', `panel "${p.title}" uses the $datasource variable`);
      assert.ok((p.targets ?? []).length > 0, `panel "${p.title}" has a query`);
      assert.ok(p.gridPos.x + p.gridPos.w <= 24, `panel "${p.title}" fits the grid`);
    }
    assert.match(graphs[0]?.title ?? '', /^Replays/, 'the first panel is the replays');
    assert.ok(dashboard.templating.list.some((v) => v.name === 'datasource'));
  });

  test('the rules: each has a name, an expression, a duration, a severity and a summary; names are unique', () => {
    const all = rules.groups.flatMap((g) => g.rules);
    assert.ok(all.length >= 5);
    assert.equal(new Set(all.map((r) => r.alert)).size, all.length);
    for (const r of all) {
      assert.match(r.alert, /^Coatcheck[A-Za-z0-9]+$/);
      assert.ok(r.expr.trim().length > 0, r.alert);
      assert.match(r.for, /^\d+[smh]$/, `${r.alert}: for`);
      assert.ok(['warning', 'critical'].includes(r.labels.severity), `${r.alert}: severity`);
      assert.ok(r.annotations.summary && r.annotations.description, `${r.alert}: annotations`);
    }
    // The three the issue asks for.
    for (const name of ['CoatcheckReplaySpike', 'CoatcheckStoreErrors', 'CoatcheckHigh5xxRate']) assert.ok(all.some((r) => r.alert === name), name);
  });

  describe('every metric, label and label value they query is exported by a running coatcheck', () => {
    let dir: string;
    let redis: RedisServer;
    let up: Upstream;
    let cli: CliProcess | undefined;
    let metrics: Map<string, Map<string, Set<string>>>;

    before(async () => {
      assert.ok(existsSync(join(REPO_ROOT, 'dist', 'cli.js')), 'dist/cli.js is missing: run npm run build first');
      dir = await mkdtemp(join(tmpdir(), 'coatcheck-metrics-'));
      [redis, up] = await Promise.all([startRedis(), startUpstream()]);
      const file = join(dir, 'coatcheck.yaml');
      await writeFile(
        file,
        [
          'listen: "127.0.0.1:0"',
          `upstream: "${up.origin}"`,
          `secrets: ["${SECRET}"]`,
          'cookie: { name: coatcheck, secure: false }',
          'workers: 2',
          `store: { kind: redis, url: "${redis.url}", connectTimeout: 2s }`,
          'admin: { listen: "127.0.0.1:0" }',
          'log: { level: info, access: false }',
          '',
        ].join('\n'),
      );
      cli = runCli(['--config', file]);
      const listening = await within(cli.stdout.waitFor((l) => l.msg === 'listening'), `no "listening" line; stderr:\n${cli?.stderr()}`);
      const port = listening.port as number;
      const admin = (listening.admin as { port: number }).port;
      // Some traffic, so that the per-status series exist: answered, and the app hanging up (502).
      up.route('/hang-up', (req) => {
        req.socket.destroy();
      });
      for (const path of ['/echo', '/echo']) assert.equal((await send(port, path)).status, 200);
      assert.equal((await send(port, '/hang-up')).status, 502);
      const res = await fetch(`http://127.0.0.1:${admin}/metrics`);
      assert.equal(res.status, 200);
      metrics = exposition(await res.text());
    });

    after(async () => {
      if (cli && cli.proc.exitCode === null) {
        cli.proc.kill('SIGTERM');
        await cli.exited;
      }
      await up?.close();
      await redis?.stop();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    test('names, labels and exact label values', () => {
      let checked = 0;
      for (const { where, expr } of queries()) {
        const found = selectors(expr);
        assert.ok(found.length > 0, `${where}: no metric in ${expr}`);
        for (const s of found) {
          if (PROMETHEUS_OWN.has(s.name)) continue;
          const labels = metrics.get(s.name);
          assert.ok(labels, `${where}: ${s.name} is not exported by /metrics`);
          for (const m of s.matchers) {
            if (TARGET_LABELS.has(m.label)) continue;
            const values = labels.get(m.label);
            assert.ok(values, `${where}: ${s.name} has no label "${m.label}"`);
            if (m.op === '=') assert.ok(values.has(m.value), `${where}: ${s.name}{${m.label}="${m.value}"} is never exported (values: ${[...values].join(', ')})`);
          }
          checked++;
        }
      }
      assert.ok(checked >= 30, `only ${checked} selectors checked`);
    });

    test('the drift check can fail: a name that is not exported is caught', () => {
      assert.equal(metrics.get('coatcheck_requests_totl'), undefined);
      assert.deepEqual(selectors('sum(rate(coatcheck_requests_totl{status=~"5.."}[5m]))').map((s) => s.name), ['coatcheck_requests_totl']);
    });
  });
});
