// The primary of several workers (config `workers` above 1): forks them on node:cluster (they
// share the proxy's listener; each runs createCoatcheck with its own store connection), starts
// again a worker that dies (restart-policy.ts says when, and when to give up), drains them all
// on stop, and serves the admin listener for all of them: /readyz asks the workers whether they
// can serve, /metrics sums their registries (cluster-metrics.ts). It never touches a request,
// a session or the store.
import type { Cluster, Worker } from 'node:cluster';
import { createAdminServer, type AdminServer, type Readiness } from '../admin/server.js';
import type { SessionsBackend } from '../admin/sessions-api.js';
import { planReload } from '../config/reload.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log.js';
import { SessionDirectory } from '../session/directory.js';
import { createStore } from '../store/index.js';
import type { SessionStore } from '../store/types.js';
import { ClusterMetrics, type WorkerState } from './cluster-metrics.js';
import { isToPrimary, type MetricsSnapshot, type ToPrimary, type ToWorker } from './messages.js';
import { RESTART_RULE, RestartPolicy, type RestartRule } from './restart-policy.js';

/** How long stop() waits for the workers beyond shutdownTimeout (their store and pool closing) before SIGKILL. */
const STOP_MARGIN_MS = 5_000;
/** How long a worker may take to report its metrics to a scrape. */
const METRICS_TIMEOUT_MS = 3_000;

export interface PrimaryDeps {
  config: Readonly<Config>;
  /** How many workers (2 or more). */
  count: number;
  logger: Logger;
  /** node:cluster, in the primary. */
  cluster: Cluster;
  clock?: () => number;
  rule?: RestartRule;
}

interface Slot {
  /** 1-based, as logged ("worker 2"); a restarted worker keeps its slot. */
  readonly n: number;
  worker: Worker | undefined;
  state: WorkerState;
  restartTimer: NodeJS.Timeout | undefined;
  /** Why its worker could not start, as it said before exiting. */
  failure: string | undefined;
}

type Answer = Extract<ToPrimary, { cc: 'answer' }>;
type Asked = Answer | 'gone' | 'timeout';

export class Primary {
  /** Replaced on reload: a worker started later gets the configuration the others run. */
  private config: Readonly<Config>;
  private readonly cluster: Cluster;
  private readonly log: Logger;
  private readonly clock: () => number;
  private readonly rule: RestartRule;
  private readonly slots: Slot[];
  private readonly policy: RestartPolicy;
  private readonly metrics: ClusterMetrics;
  private readonly admin: AdminServer | undefined;
  /**
   * With admin.token: the sessions API's own store connection (the workers' are theirs), so
   * that the primary's admin listener can serve it.
   */
  private readonly adminStore: SessionStore | undefined;
  /** The sessions API's directory, under the running configuration's secrets and timeouts. */
  private directory: SessionDirectory | undefined;
  private phase: 'new' | 'starting' | 'running' | 'stopping' = 'new';
  private startWaiter: { resolve(a: { host: string; port: number }): void; reject(err: Error): void } | undefined;
  private address: { host: string; port: number } | undefined;
  private stopping: Promise<number> | undefined;
  private readonly pending = new Map<number, { worker: Worker; settle(a: Asked): void }>();
  private nextAsk = 1;
  private giveUp!: (reason: string) => void;
  /** Resolves with the reason when the workers keep failing to start and the primary gives up (restart-policy.ts). */
  readonly failed: Promise<string>;

  constructor(deps: PrimaryDeps) {
    this.config = deps.config;
    this.cluster = deps.cluster;
    this.log = deps.logger;
    this.clock = deps.clock ?? Date.now;
    this.rule = deps.rule ?? RESTART_RULE;
    this.slots = Array.from({ length: deps.count }, (_, i) => ({ n: i + 1, worker: undefined, state: 'down' as const, restartTimer: undefined, failure: undefined }));
    this.policy = new RestartPolicy(deps.count, this.rule);
    this.metrics = new ClusterMetrics(() => this.states());
    this.failed = new Promise((resolve) => (this.giveUp = resolve));
    const { admin } = this.config;
    let backend: SessionsBackend | undefined;
    if (admin.listen !== null && admin.token !== null) {
      this.adminStore = createStore(this.config.store, { clock: this.clock, logger: this.log });
      this.directory = this.newDirectory(this.adminStore);
      // Through this.directory, which a reload replaces (its keys come from the secrets).
      const current = () => this.directory as SessionDirectory;
      backend = {
        list: (user) => current().list(user),
        revokeUser: (user) => current().revokeUser(user),
        revokeLogId: (logId) => current().revokeLogId(logId),
        revokeAll: () => current().revokeAll(),
      };
    }
    this.admin =
      admin.listen !== null
        ? createAdminServer({
            logger: this.log,
            readiness: () => this.readiness(),
            metrics: () => this.collectMetrics(),
            sessions: { token: admin.token, backend },
          })
        : undefined;
  }

  /**
   * Starts the admin listener, then every worker; resolves once all of them listen. Rejects when
   * one exits before that (the caller stops the others: stop()).
   */
  async start(): Promise<{ host: string; port: number; admin?: { host: string; port: number } }> {
    this.phase = 'starting';
    this.cluster.setupPrimary({ serialization: 'advanced' });
    const listen = this.config.admin.listen;
    await this.adminStore?.start();
    const admin = this.admin && listen !== null ? await this.admin.start(listen.host, listen.port) : undefined;
    if (this.phase !== 'starting') throw new Error('stopped while starting');
    const listening = new Promise<{ host: string; port: number }>((resolve, reject) => (this.startWaiter = { resolve, reject }));
    for (const slot of this.slots) this.fork(slot, false);
    const addr = await listening;
    this.phase = 'running';
    return admin ? { ...addr, admin } : addr;
  }

  /**
   * SIGHUP: runs `next` (fixed keys kept, named in a warning) from now on, and sends it to every
   * worker; each applies it itself and logs `config.reloaded`.
   */
  reload(next: Readonly<Config>): void {
    const plan = planReload(this.config, next);
    this.config = plan.config;
    if (this.adminStore) this.directory = this.newDirectory(this.adminStore);
    this.log.level = plan.config.log.level;
    if (plan.kept.length > 0) {
      this.log.warn({ event: 'config.reload_kept', keys: plan.kept }, `these keys cannot change without a restart and keep their running value: ${plan.kept.join(', ')}`);
    }
    const workers = this.slots.flatMap((s) => (s.worker ? [s.worker] : []));
    this.log.info({ event: 'config.reloaded', changed: plan.changed, kept: plan.kept, workers: workers.length }, 'configuration read again; sent to every worker');
    for (const worker of workers) this.send(worker, { cc: 'reload', config: plan.config });
  }

  private newDirectory(store: SessionStore): SessionDirectory {
    return new SessionDirectory({ store, secrets: this.config.secrets, timeouts: this.config.session, clock: this.clock, logger: this.log });
  }

  /**
   * Drains every worker (SIGTERM: each stops accepting and lets its in-flight requests finish,
   * up to shutdownTimeout), then closes the admin listener. Resolves with the exit code: 0 when
   * every worker stopped cleanly, else 1.
   */
  stop(): Promise<number> {
    this.stopping ??= this.drain();
    return this.stopping;
  }

  private async drain(): Promise<number> {
    const wasStarting = this.phase === 'starting' || this.phase === 'new';
    this.phase = 'stopping';
    if (wasStarting) this.startWaiter?.reject(new Error('stopped before every worker was listening'));
    for (const slot of this.slots) {
      clearTimeout(slot.restartTimer);
      slot.restartTimer = undefined;
    }
    const running = this.slots.flatMap((s) => (s.worker ? [{ n: s.n, worker: s.worker, listened: s.state === 'listening' }] : []));
    const exits = running.map(
      ({ n, worker, listened }) =>
        new Promise<{ n: number; pid: number | undefined; code: number | null; signal: string | null; clean: boolean }>((resolve) => {
          const done = (code: number | null, signal: string | null) => {
            const slot = this.slots[n - 1] as Slot;
            // Clean: stopped as asked; or it never got to serve: it could not start (and said
            // why already), or our SIGTERM came before its handlers did.
            const clean = code === 0 || slot.failure !== undefined || (!listened && signal === 'SIGTERM');
            resolve({ n, pid: worker.process.pid, code, signal, clean });
          };
          if (worker.isDead()) done(worker.process.exitCode, worker.process.signalCode);
          else worker.once('exit', done);
        }),
    );
    for (const { worker } of running) if (!worker.isDead()) worker.process.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), this.config.shutdownTimeout + STOP_MARGIN_MS)));
    let code = 0;
    if ((await Promise.race([Promise.all(exits), deadline])) === 'timeout') {
      const left = running.filter(({ worker }) => !worker.isDead());
      this.log.error({ event: 'shutdown.deadline', workers: left.map(({ n }) => n) }, 'workers did not stop in time; killing them');
      for (const { worker } of left) worker.process.kill('SIGKILL');
      code = 1;
    }
    clearTimeout(timer);
    for (const e of await Promise.all(exits)) {
      if (e.clean) continue;
      code = 1;
      this.log.error({ event: 'worker.stop_failed', worker: e.n, pid: e.pid, code: e.code, signal: e.signal }, `worker ${e.n} (pid ${e.pid}) did not stop cleanly: ${describeExit(e.code, e.signal)}`);
    }
    for (const p of this.pending.values()) p.settle('gone');
    await this.admin?.close();
    await this.adminStore?.close();
    return code;
  }

  private fork(slot: Slot, restart: boolean): void {
    const worker = this.cluster.fork();
    const pid = worker.process.pid;
    slot.worker = worker;
    slot.state = 'starting';
    slot.failure = undefined;
    this.metrics.track(worker.id);
    if (restart) this.metrics.restarts.inc();
    this.log.info({ event: 'worker.started', worker: slot.n, pid, restart }, `worker ${slot.n} started (pid ${pid})`);
    worker.on('message', (m: unknown) => this.onMessage(slot, worker, m));
    worker.on('exit', (code: number | null, signal: string | null) => this.onExit(slot, worker, code, signal));
    // A failed send to a worker that is going away: its exit is handled by onExit.
    worker.on('error', (err: Error) => this.log.debug({ event: 'worker.ipc_error', worker: slot.n, err: err.message }, 'worker channel error'));
  }

  private send(worker: Worker, message: ToWorker, failed: () => void = () => undefined): void {
    if (!worker.isConnected()) return failed();
    worker.send(message, undefined, (err: Error | null) => {
      if (err) failed();
    });
  }

  private onMessage(slot: Slot, worker: Worker, m: unknown): void {
    if (!isToPrimary(m)) return;
    switch (m.cc) {
      case 'hello':
        // The configuration already loaded: a worker started later runs what the others run,
        // whatever the file says by then.
        this.send(worker, { cc: 'config', config: this.config as Config, slot: slot.n });
        return;
      case 'listening':
        if (slot.worker !== worker) return;
        slot.state = 'listening';
        this.policy.listening(slot.n - 1, this.clock());
        this.address ??= { host: m.host, port: m.port };
        if (this.phase === 'starting' && this.slots.every((s) => s.state === 'listening')) this.startWaiter?.resolve(this.address);
        return;
      case 'start-failed':
        if (slot.worker === worker) slot.failure = m.reason;
        return;
      case 'answer':
        this.pending.get(m.id)?.settle(m);
        return;
    }
  }

  private onExit(slot: Slot, worker: Worker, code: number | null, signal: string | null): void {
    for (const p of this.pending.values()) if (p.worker === worker) p.settle('gone');
    this.metrics.retire(worker.id);
    if (slot.worker !== worker) return;
    slot.worker = undefined;
    slot.state = 'down';
    if (this.phase === 'stopping') return;
    const pid = worker.process.pid;
    const reason = slot.failure ?? describeExit(code, signal);
    if (this.phase === 'starting') {
      this.startWaiter?.reject(new Error(`worker ${slot.n} (pid ${pid}): ${reason}`));
      return;
    }
    const after = this.policy.died(slot.n - 1, this.clock());
    const what = after.failedStart ? `could not start: ${reason}` : `died: ${describeExit(code, signal)}`;
    if ('giveUp' in after) {
      this.log.error({ event: 'worker.died', worker: slot.n, pid, code, signal, failedStart: after.failedStart }, `worker ${slot.n} (pid ${pid}) ${what}`);
      this.giveUp(`no worker is listening and every worker failed to start ${this.rule.giveUpAfter} times in a row (the last: ${reason})`);
      return;
    }
    this.log.error(
      { event: 'worker.died', worker: slot.n, pid, code, signal, failedStart: after.failedStart, restartInMs: after.restartInMs },
      `worker ${slot.n} (pid ${pid}) ${what}; starting it again in ${after.restartInMs} ms`,
    );
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = undefined;
      if (this.phase === 'running') this.fork(slot, true);
    }, after.restartInMs);
  }

  /** Asks one worker a question; 'gone' when it exits (or cannot be reached) first, 'timeout' past the deadline. */
  private ask(worker: Worker, what: 'metrics' | 'readiness', timeoutMs: number): Promise<Asked> {
    const id = this.nextAsk++;
    return new Promise<Asked>((resolve) => {
      const timer = setTimeout(() => settle('timeout'), timeoutMs);
      const settle = (a: Asked) => {
        if (!this.pending.delete(id)) return;
        clearTimeout(timer);
        resolve(a);
      };
      this.pending.set(id, { worker, settle });
      this.send(worker, { cc: 'ask', id, what }, () => settle('gone'));
    });
  }

  private listeningWorkers(): Array<{ n: number; worker: Worker }> {
    return this.slots.flatMap((s) => (s.state === 'listening' && s.worker ? [{ n: s.n, worker: s.worker }] : []));
  }

  /**
   * /readyz of the whole: ready while the primary is not draining and at least one worker says
   * it can serve (it is not draining and its store answers). A load balancer sends a connection
   * to the primary's listener, which gives it to a listening worker: one that can serve is enough
   * for the instance to take traffic; how many can is in the body.
   */
  async readiness(): Promise<Readiness> {
    if (this.phase === 'stopping') return { ready: false, reason: 'draining' };
    const listening = this.listeningWorkers();
    const answers = await Promise.all(listening.map(({ worker }) => this.ask(worker, 'readiness', this.config.store.timeout + 1_000)));
    const ready = answers.filter((a) => typeof a === 'object' && a.readiness?.ready === true).length;
    const total = this.slots.length;
    if (ready > 0) return { ready: true, reason: `ready: ${ready} of ${total} workers` };
    const why = new Set(answers.map((a) => (a === 'timeout' ? 'no answer' : a === 'gone' ? 'gone' : (a.readiness?.reason ?? a.error ?? 'unknown'))));
    return { ready: false, reason: `not ready: no worker can serve (${listening.length} of ${total} listening${why.size > 0 ? `: ${[...why].join(', ')}` : ''})` };
  }

  /**
   * /metrics of the whole: every listening worker's registry, summed, with what workers that are
   * gone last reported. A listening worker that does not answer fails the scrape (a total
   * without its share would read as a counter reset).
   */
  private async collectMetrics(): Promise<{ text: string; contentType: string }> {
    const listening = this.listeningWorkers();
    const answers = await Promise.all(listening.map(async ({ n, worker }) => ({ n, worker, a: await this.ask(worker, 'metrics', METRICS_TIMEOUT_MS) })));
    const live: MetricsSnapshot[] = [];
    for (const { n, worker, a } of answers) {
      // Gone meanwhile: what it reported before is in the retired totals.
      if (a === 'gone') continue;
      if (a === 'timeout' || !a.metrics) throw new Error(`worker ${n} (pid ${worker.process.pid}) did not report its metrics${a === 'timeout' ? ` within ${METRICS_TIMEOUT_MS} ms` : `: ${a.error}`}`);
      if (this.metrics.record(worker.id, a.metrics)) live.push(a.metrics);
    }
    return this.metrics.text(live);
  }

  private states(): Record<WorkerState, number> {
    const out: Record<WorkerState, number> = { listening: 0, starting: 0, down: 0 };
    for (const s of this.slots) out[s.state] += 1;
    return out;
  }
}

function describeExit(code: number | null, signal: string | null): string {
  return signal !== null ? `killed by ${signal}` : `exit code ${code}`;
}
