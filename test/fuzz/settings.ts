// How much the property tests run. `npm test` runs each property a bounded number of times with a
// fixed seed (the same cases every run: a failure reproduces); `npm run fuzz` runs them
// FUZZ_SCALE times as long with a fresh seed, printed so that a failure can be replayed:
//   FUZZ_SEED=<seed> FUZZ_SCALE=<n> node scripts/run-tests.mjs build/test/fuzz/
import type { Parameters } from 'fast-check';

/** The seed of the short runs in `npm test`. */
const FIXED_SEED = 20261205;

const scale = Number(process.env.FUZZ_SCALE ?? '1');
const seed = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : FIXED_SEED;
if (!Number.isFinite(scale) || scale <= 0) throw new Error(`FUZZ_SCALE must be a positive number, got ${process.env.FUZZ_SCALE}`);
if (!Number.isSafeInteger(seed)) throw new Error(`FUZZ_SEED must be an integer, got ${process.env.FUZZ_SEED}`);
if (scale !== 1 || process.env.FUZZ_SEED !== undefined) console.log(`fuzz: seed ${seed}, scale ${scale}`);

/** fast-check parameters for a property that runs `runs` times in `npm test`. */
export function fuzz<T>(runs: number): Parameters<T> {
  return { seed, numRuns: Math.max(1, Math.round(runs * scale)) };
}
