// When a worker that died is started again, and when the primary stops trying. Pure: time comes
// in as an argument, so the rule is tested without processes (test/unit/restart-policy.test.ts).
//
// The rule:
// - a worker that exits before it is listening has failed to start (the store unreachable
//   within store.connectTimeout, for example);
// - a worker that dies is started again after a delay that doubles with each death of that
//   worker in a row: 100 ms, 200 ms, 400 ms, … at most 30 s. A worker that ran (listening) for
//   30 s before it died starts the count again: one crash now and then costs 100 ms;
// - when no worker is listening and every worker failed its last 3 starts, the primary gives
//   up (exit 1): the whole service is down and restarting it here is not helping, so whatever
//   supervises coatcheck (systemd, Kubernetes) should see it. While one worker serves, the
//   others are retried for as long as it takes (at the 30 s pace once their delay got there).
// At start-up the primary is stricter (primary.ts): one failed start stops it, as a single
// process stops when it cannot start.

export interface RestartRule {
  /** Delay before the first restart of a worker; doubled for each further death in a row. */
  firstDelayMs: number;
  maxDelayMs: number;
  /** A worker listening this long before it dies starts its count of deaths again. */
  stableMs: number;
  /** Failed starts in a row of every worker, with none listening, after which the primary gives up. */
  giveUpAfter: number;
}

export const RESTART_RULE: RestartRule = { firstDelayMs: 100, maxDelayMs: 30_000, stableMs: 30_000, giveUpAfter: 3 };

interface SlotState {
  /** Listening since this time; undefined while starting or down. */
  listeningSince: number | undefined;
  /** Deaths in a row (the delay's exponent). */
  deaths: number;
  /** Starts in a row that ended before the worker was listening. */
  failedStarts: number;
}

export type AfterDeath = { restartInMs: number; failedStart: boolean } | { giveUp: true; failedStart: boolean };

export class RestartPolicy {
  private readonly slots: SlotState[];

  constructor(
    slots: number,
    private readonly rule: RestartRule = RESTART_RULE,
  ) {
    this.slots = Array.from({ length: slots }, () => ({ listeningSince: undefined, deaths: 0, failedStarts: 0 }));
  }

  /** The worker of `slot` is listening. */
  listening(slot: number, now: number): void {
    const s = this.slot(slot);
    s.listeningSince = now;
    s.failedStarts = 0;
  }

  /** How many workers are listening. */
  listeningCount(): number {
    return this.slots.filter((s) => s.listeningSince !== undefined).length;
  }

  /** The worker of `slot` died unexpectedly at `now`: when to start it again, or give up. */
  died(slot: number, now: number): AfterDeath {
    const s = this.slot(slot);
    const since = s.listeningSince;
    s.listeningSince = undefined;
    const failedStart = since === undefined;
    if (failedStart) s.failedStarts += 1;
    if (since !== undefined && now - since >= this.rule.stableMs) s.deaths = 0;
    s.deaths += 1;
    if (this.listeningCount() === 0 && this.slots.every((x) => x.failedStarts >= this.rule.giveUpAfter)) return { giveUp: true, failedStart };
    const restartInMs = Math.min(this.rule.maxDelayMs, this.rule.firstDelayMs * 2 ** Math.min(s.deaths - 1, 30));
    return { restartInMs, failedStart };
  }

  private slot(i: number): SlotState {
    const s = this.slots[i];
    if (!s) throw new RangeError(`no worker slot ${i}`);
    return s;
  }
}
