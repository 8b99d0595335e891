// Bench bookkeeping over HTTP and Redis: logging in through a target to get real sessions,
// reading the upstream's counters, and the Redis key of a coatcheck ticket.
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { Pool } from 'undici';
import { storeKeyOf } from '../../src/session/crypto.js';
import { untagged } from '../../src/store/lineage.js';
import { TicketCodec } from '../../src/session/ticket.js';

/** name=value pairs of every Set-Cookie, joined as a Cookie header ("a=1; b=2"). */
function cookieHeaderOf(setCookie: string | string[] | undefined): string {
  const list = setCookie === undefined ? [] : Array.isArray(setCookie) ? setCookie : [setCookie];
  const pairs: string[] = [];
  for (const sc of list) {
    const pair = sc.split(';')[0]?.trim() ?? '';
    const eq = pair.indexOf('=');
    if (eq > 0 && eq < pair.length - 1) pairs.push(pair);
  }
  return pairs.join('; ');
}

/**
 * Logs in `count` times through `origin` (POST /login?jar=<kind>) and returns the Cookie header
 * a browser would send afterwards: the ticket for a session proxy, the app's own cookies
 * otherwise.
 */
export async function login(origin: string, kind: 'hot' | 'small3', count: number): Promise<string[]> {
  const pool = new Pool(origin, { connections: 16 });
  const out: string[] = [];
  try {
    let next = 0;
    const worker = async () => {
      while (next < count) {
        next += 1;
        const r = await pool.request({
          method: 'POST',
          path: `/login?jar=${kind}`,
          headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': '0' },
          body: '',
        });
        await r.body.dump();
        const cookie = cookieHeaderOf(r.headers['set-cookie']);
        if (r.statusCode !== 200 || cookie === '') {
          throw new Error(`login through ${origin} answered ${r.statusCode} with no cookie`);
        }
        out.push(cookie);
      }
    };
    await Promise.all(Array.from({ length: Math.min(16, count) }, worker));
  } finally {
    await pool.close();
  }
  return out;
}

export interface PathCounter {
  total: number;
  withSession: number;
}
export type UpstreamStats = Record<string, PathCounter>;

export async function upstreamStats(origin: string): Promise<UpstreamStats> {
  const pool = new Pool(origin, { connections: 1 });
  try {
    const r = await pool.request({ method: 'GET', path: '/__stats' });
    const body = (await r.body.json()) as { paths: UpstreamStats };
    return body.paths;
  } finally {
    await pool.close();
  }
}

/**
 * The upstream's counters once they stop moving: requests a proxy still had in flight when the
 * load generator stopped land in the run they belong to, not in the next one.
 */
export async function settledStats(origin: string, maxWaitMs = 3000): Promise<UpstreamStats> {
  const deadline = Date.now() + maxWaitMs;
  let prev = await upstreamStats(origin);
  for (;;) {
    await new Promise((r) => setTimeout(r, 30));
    const next = await upstreamStats(origin);
    if (JSON.stringify(next) === JSON.stringify(prev) || Date.now() > deadline) return next;
    prev = next;
  }
}

export function statsDelta(before: UpstreamStats, after: UpstreamStats, path: string): PathCounter {
  const a = after[path] ?? { total: 0, withSession: 0 };
  const b = before[path] ?? { total: 0, withSession: 0 };
  return { total: a.total - b.total, withSession: a.withSession - b.withSession };
}

/** The ticket value in a Cookie header "coatcheck=v1.…". */
export function ticketOf(cookieHeader: string, name: string): string {
  const pair = cookieHeader.split('; ').find((p) => p.startsWith(`${name}=`));
  if (!pair) throw new Error(`no ${name} cookie in "${cookieHeader.slice(0, 40)}…"`);
  return pair.slice(name.length + 1);
}

/** The Redis key of a coatcheck ticket's session (found by its hashed id, so the key layout is coatcheck's own). */
export async function sessionKeyOf(redis: Redis, ticket: string, secret: string, prefix: string): Promise<{ key: string; storeKey: string }> {
  const sid = new TicketCodec([secret]).verify(ticket);
  if (!sid) throw new Error('a ticket coatcheck issued does not verify with the bench secret (ticket format changed?)');
  // What the Redis key ends with: the store key's hash (its lineage tag is in the key on a cluster only).
  const storeKey = untagged(storeKeyOf(sid));
  const keys = await redis.keys(`${prefix}*${storeKey}`);
  if (keys.length !== 1) throw new Error(`expected one Redis key ending in the session's store key, found ${keys.length}`);
  return { key: keys[0] as string, storeKey };
}

/** A random store key of the same shape as coatcheck's (SHA-256, base64url). */
export function randomStoreKey(): string {
  return randomBytes(32).toString('base64url');
}

export interface Snapshot {
  entries: Array<{ key: string; pttl: number; dump: Buffer }>;
}

/** DUMP + PTTL of every key (only used while Redis holds a few thousand). */
export async function snapshot(redis: Redis): Promise<Snapshot> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  const entries: Snapshot['entries'] = [];
  for (let i = 0; i < keys.length; i += 1000) {
    const p = redis.pipeline();
    const chunk = keys.slice(i, i + 1000);
    for (const k of chunk) {
      p.pttl(k);
      p.dumpBuffer(k);
    }
    const res = (await p.exec()) ?? [];
    chunk.forEach((key, j) => {
      const pttl = res[j * 2]?.[1] as number;
      const dump = res[j * 2 + 1]?.[1] as Buffer | null;
      if (dump) entries.push({ key, pttl, dump });
    });
  }
  return { entries };
}

/** FLUSHALL, then the snapshot's keys back with their remaining TTLs. */
export async function restore(redis: Redis, snap: Snapshot): Promise<void> {
  await redis.flushall();
  for (let i = 0; i < snap.entries.length; i += 1000) {
    const p = redis.pipeline();
    for (const e of snap.entries.slice(i, i + 1000)) p.restore(e.key, e.pttl > 0 ? e.pttl : 0, e.dump, 'REPLACE');
    const res = (await p.exec()) ?? [];
    for (const [err] of res) if (err) throw err;
  }
}

/** Copies `dump` (one session's DUMP) under `count` random keys `base + randomStoreKey()`, in pipelined batches. */
export async function preloadCopies(redis: Redis, base: string, dump: Buffer, count: number, ttlMs: number): Promise<void> {
  const BATCH = 10_000;
  for (let done = 0; done < count; done += BATCH) {
    const p = redis.pipeline();
    const n = Math.min(BATCH, count - done);
    for (let i = 0; i < n; i++) p.restore(base + randomStoreKey(), ttlMs, dump);
    const res = (await p.exec()) ?? [];
    for (const [err] of res) if (err) throw err;
  }
}

/** INFO memory's used_memory, in bytes. */
export async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  const m = /^used_memory:(\d+)/m.exec(info);
  if (!m) throw new Error('INFO memory has no used_memory');
  return Number(m[1]);
}
