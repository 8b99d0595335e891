// The bench's open-loop generator keeps its idle keep-alive connections younger than a server's
// keep-alive timeout: at a low rate most of its connections sit idle (they are taken last in,
// first out), and a request written just as the server closes one would fail.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runOpenLoop } from '../../bench/lib/loadgen.js';

test('open-loop generator: idle connections are replaced before the server closes them, and no request fails', async (t) => {
  const server = createServer((_req, res) => res.end('ok'));
  // 3 s: above the generator's 2 s retirement, so without it every idle connection is closed by the server.
  server.keepAliveTimeout = 3000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const dir = mkdtempSync(join(tmpdir(), 'open-loop-test-'));
  t.after(() => {
    server.closeAllConnections();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const { port } = server.address() as AddressInfo;
  const r = await runOpenLoop(
    { kind: 'simple', method: 'GET', path: '/', cookies: [] },
    { origin: `http://127.0.0.1:${port}`, rate: 20, warmupSec: 0.5, durationSec: 5, connections: 8, tmpDir: dir },
  );
  assert.equal(r.errors, 0, r.errorDetail);
  assert.equal(r.requests, 100);
  // At 20 req/s one connection carries nearly everything; the other seven idle past 2 s and are replaced.
  assert.ok(r.retiredIdle >= 7, `retired ${r.retiredIdle} idle connections`);
  assert.equal(r.serverClosedIdle, 0, 'the server closed an idle connection before the generator replaced it');
});
