// The short chaos run of `npm test` (issue 13): a few seconds, a fixed seed, every invariant 0.
// `npm run chaos` is the long one (main.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatReport, runChaos } from './chaos.js';

describe('chaos under load (short run)', () => {
  it('two instances, one Redis with AOF, faults injected: every invariant holds', { timeout: 120_000 }, async () => {
    const report = await runChaos({ durationMs: 8000, seed: 20261205, users: 12, faultEveryMs: 1200 });
    const text = formatReport(report);
    console.log(text);
    assert.deepEqual(report.invariants, { managedSetCookie: 0, revokedReachedApp: 0, clientCookieReachedApp: 0, replayAccepted: 0, lostUpdates: 0, unexpectedStatus: 0, hung: 0 }, text);
    // The run did what it is for: logins, logouts and replays happened, and faults were injected.
    assert.ok(report.logouts > 5 && report.replays > 10, text);
    assert.ok(Object.values(report.faults).reduce((a, b) => a + b, 0) >= 3, text);
    assert.ok((report.byStatus['503'] ?? 0) + (report.byStatus['502'] ?? 0) > 0, `no request met a fault:\n${text}`);
    // Nothing of the run is held after it (a leak would grow the heap in use).
    assert.ok(report.heap.afterMb <= report.heap.baselineMb + 16, text);
  });
});
