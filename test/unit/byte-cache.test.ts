// Caches bounded by bytes: the generic ByteCache, and the verified-ticket cache on it (every
// entry's estimated size accounted for, also when a record is opened into it later).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { RequestJar } from '../../src/cookies/jar.js';
import { jarKeyOf, LogHasher, sealRecord } from '../../src/session/crypto.js';
import { decodeRecord, encodeRecord, type SessionMeta } from '../../src/session/record.js';
import { COOKIE_BYTES, ENTRY_BYTES, entryBytes, RECORD_BYTES, TICKET_CACHE_BYTES, TicketCache } from '../../src/session/ticket-cache.js';
import { TicketCodec } from '../../src/session/ticket.js';
import { ByteCache } from '../../src/util/byte-cache.js';

describe('ByteCache', () => {
  test('drops the oldest written entries once the bytes pass the budget; a hit does not reorder', () => {
    const c = new ByteCache<string, number>(100);
    c.set('a', 1, 40);
    c.set('b', 2, 40);
    assert.equal(c.get('a'), 1, 'a hit');
    c.set('c', 3, 40);
    assert.equal(c.get('a'), undefined, 'the oldest written went, hit or not');
    assert.deepEqual([c.get('b'), c.get('c'), c.size, c.bytes], [2, 3, 2, 80]);
  });

  test('writing a key again makes it the newest with its new size', () => {
    const c = new ByteCache<string, number>(100);
    c.set('a', 1, 30);
    c.set('b', 2, 30);
    c.set('a', 10, 50);
    assert.equal(c.bytes, 80);
    c.set('c', 3, 20);
    assert.equal(c.bytes, 100);
    c.set('d', 4, 1);
    assert.deepEqual([c.get('a'), c.get('b'), c.get('c'), c.get('d')], [10, undefined, 3, 4]);
    assert.equal(c.bytes, 71);
  });

  test('an entry larger than the budget is not kept, and drops its older version', () => {
    const c = new ByteCache<string, number>(100);
    c.set('a', 1, 10);
    c.set('a', 2, 101);
    assert.deepEqual([c.get('a'), c.size, c.bytes], [undefined, 0, 0]);
  });

  test('delete and clear give their bytes back; a bad budget is refused', () => {
    const c = new ByteCache<string, number>(100);
    c.set('a', 1, 10);
    c.set('b', 2, 20);
    c.delete('a');
    c.delete('nope');
    assert.deepEqual([c.size, c.bytes], [1, 20]);
    c.clear();
    assert.deepEqual([c.size, c.bytes], [0, 0]);
    assert.throws(() => new ByteCache(0), RangeError);
    assert.throws(() => new ByteCache(1.5), RangeError);
  });
});

describe('TicketCache: bounded by bytes', () => {
  const SECRET = 's'.repeat(40);
  const NOW = Date.UTC(2026, 5, 1);
  const codec = new TicketCodec([SECRET]);
  const hasher = new LogHasher(SECRET);
  const meta: SessionMeta = { created: NOW, deadline: NOW + 3_600_000, touched: NOW, issued: NOW, family: 'fam' };
  const five = () => {
    const jar = new RequestJar();
    const m = new Map();
    for (const sc of [`a=${randomBytes(300).toString('base64url')}`, `b=${randomBytes(32).toString('base64url')}`, 'c=1', 'd=2', 'e=3']) {
      const ch = jar.apply(sc, 'https://app.example.com/', NOW, undefined);
      if (ch.kind === 'set') m.set(ch.field, ch.cookie);
    }
    return m;
  };

  test('an entry counts its estimate: verified alone, then with the record opened into it', () => {
    const cache = new TicketCache(codec, hasher);
    const sid = randomBytes(32);
    const known = cache.verified(codec.sign(sid));
    assert.ok(known);
    assert.equal(cache.bytes, ENTRY_BYTES);
    const cookies = five();
    const data = sealRecord(jarKeyOf(sid), encodeRecord(meta, cookies));
    const record = decodeRecord(encodeRecord(meta, cookies));
    assert.ok(record);
    cache.opened(known, 1, data, record);
    const chars = [...cookies.values()].reduce((n, c) => n + c.key.length + c.value.length + c.domain.length + c.path.length, 0);
    assert.equal(cache.bytes, ENTRY_BYTES + RECORD_BYTES + 5 * COOKIE_BYTES + chars);
    assert.equal(entryBytes(known), cache.bytes);
    cache.forget(known);
    assert.deepEqual([cache.size, cache.bytes], [0, 0]);
  });

  test('distinct sessions never hold more than the budget; a working set that fits is always hit', () => {
    const budget = 200_000;
    const cache = new TicketCache(codec, hasher, budget);
    const cookies = five();
    const record = decodeRecord(encodeRecord(meta, cookies));
    assert.ok(record);
    const data = Buffer.alloc(100);
    const open = (ticket: string) => {
      const known = cache.get(ticket) ?? cache.verified(ticket);
      assert.ok(known);
      if (known.opened === undefined) cache.opened(known, 1, data, record);
      return known;
    };
    // Many distinct sessions, each seen once: the cache stays within its budget.
    for (let i = 0; i < 500; i++) {
      open(codec.sign(randomBytes(32)));
      assert.ok(cache.bytes <= budget);
    }
    assert.ok(cache.size > 10 && cache.size < 500, `${cache.size} entries`);
    // A working set that fits: after the first round, every request is a hit.
    const hot = Array.from({ length: Math.floor(cache.size / 2) }, () => codec.sign(randomBytes(32)));
    for (const t of hot) open(t);
    for (let round = 0; round < 5; round++) for (const t of hot) assert.ok(cache.get(t)?.opened, 'a hit, record and all');
    assert.ok(TICKET_CACHE_BYTES <= 32 * 1024 * 1024);
  });
});
