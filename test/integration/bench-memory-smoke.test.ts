// Smoke test of the memory bench: `node build/bench/memory.js --quick` must start Redis, the app
// and coatcheck (Redis store, then memory store), log in its sessions, stop everything, exit 0
// and write its JSON. It checks that the bench works and reports what it should, never a number
// against a target.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

test('npm run bench:memory -- --quick runs, exits 0 and writes its JSON', { timeout: 180_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'coatcheck-bench-mem-smoke-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'memory.json');
  const child = spawn(process.execPath, [join(ROOT, 'build/bench/memory.js'), '--quick', '--out', out], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString('utf8')));
  child.stderr.on('data', (c: Buffer) => (output += c.toString('utf8')));
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  assert.equal(code, 0, `the quick memory bench failed:\n${output.slice(-6000)}`);
  const r = JSON.parse(readFileSync(out, 'utf8')) as Record<string, unknown> & {
    redis: Record<string, unknown> & { sessionKey: Record<string, unknown>; logIdKey: Record<string, unknown>; ratio: Record<string, unknown>; keysPerLogin: Record<string, number> };
    coatcheckRedisRss: Array<Record<string, unknown>>;
    memoryStore: Record<string, unknown> & { readings: unknown[] };
  };
  assert.equal(r.mode, 'quick');
  for (const k of ['sessions', 'plateau', 'connections', 'jar', 'redis', 'coatcheckRedisRss', 'memoryStore']) assert.ok(k in r, k);
  for (const k of ['usedMemoryBefore', 'usedMemoryAfter', 'bytesPerLogin', 'bytesPerKey', 'keysPerLogin', 'sessionKey', 'logIdKey', 'ratio']) assert.ok(k in r.redis, `redis.${k}`);
  for (const k of ['memoryUsage', 'valueBytes', 'headerBytes', 'sealedPayloadBytes']) assert.equal(typeof r.redis.sessionKey[k], 'number', `redis.sessionKey.${k}`);
  for (const k of ['memoryUsage', 'valueBytes', 'keyBytes']) assert.equal(typeof r.redis.logIdKey[k], 'number', `redis.logIdKey.${k}`);
  for (const k of ['sessionKeyToPayload', 'perLoginToPayload', 'perLoginWithoutLogIdToPayload']) assert.equal(typeof r.redis.ratio[k], 'number', `redis.ratio.${k}`);
  assert.ok('s' in r.redis.keysPerLogin, 'session keys are counted');
  assert.ok(r.coatcheckRedisRss.length >= 2);
  for (const reading of r.coatcheckRedisRss) for (const k of ['sessions', 'rssMB', 'peakMB', 'heapUsedMB']) assert.ok(k in reading, `coatcheckRedisRss[].${k}`);
  for (const k of ['readings', 'bytesPerSession', 'marginalBytesPerSession', 'heapBytesPerSession']) assert.ok(k in r.memoryStore, `memoryStore.${k}`);
  assert.equal(r.memoryStore.readings.length, 5);
});
