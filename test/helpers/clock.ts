// The one fake clock of the tests: time moves only when a test moves it.
import type { Clock } from '../../src/clock.js';

export class FakeClock {
  /** Milliseconds since the epoch, as `now()` returns them. */
  t: number;
  constructor(start: number) {
    this.t = start;
  }
  /** Bound: pass `clock.now` wherever a Clock is taken. */
  readonly now: Clock = () => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}
