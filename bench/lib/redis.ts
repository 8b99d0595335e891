// A throwaway redis-server for the bench: 127.0.0.1, a free port, no persistence, its own
// directory; default settings otherwise (no maxmemory), as a
// user's fresh install would have.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, registerTempDir, startChild, type Child } from './proc.js';

export interface BenchRedis {
  readonly url: string;
  readonly child: Child;
  /** A client for the bench's own bookkeeping (preload, MEMORY USAGE, INFO). */
  readonly client: Redis;
  stop(): Promise<void>;
}

export async function startRedis(): Promise<BenchRedis> {
  const dir = registerTempDir(await mkdtemp(join(tmpdir(), 'coatcheck-bench-redis-')));
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const child = startChild('redis-server', 'redis-server', [
      '--port', String(port),
      '--bind', '127.0.0.1',
      '--save', '',
      '--appendonly', 'no',
      '--dir', dir,
      '--daemonize', 'no',
    ]);
    try {
      await child.waitLine((l) => (l.includes('Ready to accept connections') ? true : undefined), 15_000);
    } catch (err) {
      lastError = err;
      await child.stop('SIGKILL');
      if (/address already in use/i.test(child.tail())) continue;
      break;
    }
    const url = `redis://127.0.0.1:${port}`;
    const client = new Redis(url, { maxRetriesPerRequest: 1 });
    client.on('error', () => undefined);
    await client.ping();
    return {
      url,
      child,
      client,
      async stop() {
        client.disconnect();
        await child.stop('SIGTERM');
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(`redis-server did not start: ${(lastError as Error)?.message ?? 'unknown error'}`);
}
