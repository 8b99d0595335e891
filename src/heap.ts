// How far the V8 heap may grow past its live data before the next full garbage collection.
//
// On a machine with more than a few GB of memory V8 lets the old generation grow up to 4× its
// live data between full collections. Under a write-heavy load (every response updates a
// cookie, or logins churn) that is most of the proxy's peak RSS: ~26 MB live, ~85 MB reached
// before a collection. Capping the growth at 1.3× keeps the peak near the live size for a few
// per cent of CPU (bench/README.md). The operator chooses otherwise with
// COATCHECK_HEAP_GROWING_PERCENT (0: V8's own choice) or with node's own
// `--heap-growing-percent` (NODE_OPTIONS does not take this V8 flag), which always wins.
import { setFlagsFromString } from 'node:v8';
import { UsageError } from './errors.js';

/** The heap may grow to 1 + this/100 times the live data before a full collection. */
export const HEAP_GROWING_PERCENT = 30;
export const HEAP_ENV = 'COATCHECK_HEAP_GROWING_PERCENT';

/** What is in effect: a percentage (0: V8 chooses), or 'node options' when node was given the flag. */
export type HeapGrowth = number | 'node options';

/** Reads the setting from node's options and the environment; a bad value is a UsageError. */
export function heapGrowthSetting(execArgv: readonly string[], env: NodeJS.ProcessEnv): HeapGrowth {
  if (execArgv.some((a) => /^--heap[-_]growing[-_]percent(=|$)/.test(a))) return 'node options';
  const raw = env[HEAP_ENV];
  if (raw === undefined || raw.trim() === '') return HEAP_GROWING_PERCENT;
  if (!/^\s*\d{1,4}\s*$/.test(raw) || Number(raw) > 1000) {
    throw new UsageError(`${HEAP_ENV} must be a whole number from 0 to 1000 (0: V8 chooses), got "${raw}"`);
  }
  return Number(raw);
}

/** Applies a setting from heapGrowthSetting (before the proxy allocates much). */
export function applyHeapGrowth(setting: HeapGrowth): void {
  if (typeof setting === 'number' && setting > 0) setFlagsFromString(`--heap-growing-percent=${setting}`);
}
