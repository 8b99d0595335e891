// Report-only mode's cookie fingerprints on Redis (types.ts FingerprintStore).
//
// Key: `${prefix}p:${fingerprint}`, one string per fingerprint, holding the time it was recorded
// (decimal ms since the epoch, by the recording instance's clock), with a PX TTL of the
// session's absolute timeout. No hash tag: on a Redis Cluster the fingerprints of one request
// land in different slots, and every command below names one key, so there is never a CROSSSLOT.
//   lookup: through the client's load batcher (load-batcher.ts): the lookups of one event-loop
//           turn, together with that turn's session loads, go out as one MGET (on a cluster one
//           GET/MGET per slot, all sent at once): one round trip per request.
//   record: `SET key at PX ttl GET` per fingerprint (Redis >= 6.2), all sent at once: it records
//           and says in the same step whether the fingerprint was already there.
// Neither is a revoking write: no WAIT, even with store.replicas (report-only protects nothing; a
// record lost in a failover is one replay not reported).
import type { RedisClient } from './client.js';
import { WRONG_TYPE, type Fetched } from './load-batcher.js';

/** The time a fingerprint value holds; a value this store did not write counts as recorded at 0. */
function recordedAt(value: Buffer | string | null): number | null {
  if (value === null) return null;
  const at = Number(typeof value === 'string' ? value : value.toString('latin1'));
  return Number.isSafeInteger(at) && at >= 0 ? at : 0;
}

export class RedisFingerprints {
  constructor(
    private readonly client: RedisClient,
    private readonly prefix: string,
  ) {}

  key(fingerprint: string): string {
    return `${this.prefix}p:${fingerprint}`;
  }

  async find(fingerprints: readonly string[]): Promise<Array<number | null>> {
    const values: Fetched[] = await Promise.all(fingerprints.map((fp) => this.client.fetch(this.key(fp))));
    // A key of another type under our prefix is not a fingerprint this store wrote.
    return values.map((v) => (v === WRONG_TYPE ? null : recordedAt(v)));
  }

  async record(fingerprints: readonly string[], at: number, ttlMs: number): Promise<Array<number | null>> {
    const value = String(at);
    const ttl = Math.max(1, Math.ceil(ttlMs));
    return this.client.run('fingerprint', async (redis) => {
      const before = await Promise.all(fingerprints.map((fp) => redis.set(this.key(fp), value, 'PX', ttl, 'GET')));
      return before.map(recordedAt);
    });
  }
}
