// npm run chaos: a chaos run (chaos.ts) of --seconds (default 60) with --seed (default: the
// time), --users (default 24), --fault-every ms (default 1500) and --no-aof (Redis without
// persistence); prints the report, exits 1 when an invariant is not 0.
import { parseArgs } from 'node:util';
import { formatReport, runChaos } from './chaos.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '60' },
    seed: { type: 'string' },
    users: { type: 'string', default: '24' },
    'fault-every': { type: 'string', default: '1500' },
    'no-aof': { type: 'boolean', default: false },
  },
});
const seconds = Number(values.seconds);
const users = Number(values.users);
const faultEveryMs = Number(values['fault-every']);
const seed = values.seed !== undefined ? Number(values.seed) : Date.now() % 1_000_000;
for (const [name, v] of [['--seconds', seconds], ['--users', users], ['--seed', seed], ['--fault-every', faultEveryMs]] as const) {
  if (!Number.isFinite(v) || v <= 0) {
    console.error(`chaos: ${name} must be a positive number`);
    process.exit(2);
  }
}
const report = await runChaos({ durationMs: seconds * 1000, seed, users, faultEveryMs, verbose: true, noAof: values['no-aof'] });
console.log(formatReport(report));
process.exit(Object.values(report.invariants).every((n) => n === 0) ? 0 : 1);
