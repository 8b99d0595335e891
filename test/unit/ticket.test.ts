import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createHash } from 'node:crypto';
import { LINEAGE_BYTES, TicketCodec } from '../../src/session/ticket.js';
import { lineageOf, untagged } from '../../src/store/lineage.js';
import { hasTag, jarKeyOf, LogHasher, open, openRecord, seal, sealRecord, storeKeyOf, tagOf } from '../../src/session/crypto.js';

const A = 'a'.repeat(32) + '-first-secret';
const B = 'b'.repeat(32) + '-second-secret';

describe('tickets', () => {
  test('mint: v1.<43 base64url>.<43 base64url>, 256 random bits, verifies to the same id', () => {
    const codec = new TicketCodec([A]);
    const { ticket, sid } = codec.mint();
    assert.match(ticket, /^v1\.[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}$/);
    assert.equal(sid.length, 32);
    assert.deepEqual(codec.verify(ticket), sid);
    assert.notEqual(codec.mint().ticket, ticket);
  });

  test('every configured secret verifies; the first one signs (rotation)', () => {
    const old = new TicketCodec([A]).mint();
    const rotated = new TicketCodec([B, A]);
    assert.deepEqual(rotated.verify(old.ticket), old.sid, 'a ticket signed with the old secret still verifies');
    const fresh = rotated.mint();
    assert.equal(new TicketCodec([A]).verify(fresh.ticket), undefined, 'new tickets are signed with the first secret');
    assert.deepEqual(new TicketCodec([B]).verify(fresh.ticket), fresh.sid);
    assert.equal(new TicketCodec([B]).verify(old.ticket), undefined, 'a removed secret no longer verifies');
  });

  test('anything but an exact, signed ticket is refused', () => {
    const codec = new TicketCodec([A]);
    const { ticket } = codec.mint();
    const [, sid, mac] = ticket.split('.') as [string, string, string];
    const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
    const cases: Array<[string, string]> = [
      ['empty', ''],
      ['garbage', 'hello'],
      ['truncated', ticket.slice(0, -1)],
      ['extended', `${ticket}A`],
      ['wrong version', `v2.${sid}.${mac}`],
      ['no version', `${sid}.${mac}`],
      ['mac of another id', `v1.${flip(sid, 5)}.${mac}`],
      ['tampered mac', `v1.${sid}.${flip(mac, 10)}`],
      // the last base64url char of 32 bytes carries 2 unused bits: another spelling of the same bytes
      ['non-canonical sid encoding', `v1.${sid.slice(0, 42)}${sid[42] === 'A' ? 'B' : String.fromCharCode((sid.charCodeAt(42) ^ 1))}.${mac}`],
      ['padding', `v1.${sid}=.${mac}`],
      ['standard base64', `v1.${sid.replace(/-/g, '+').replace(/_/g, '/')}+.${mac}`],
      ['whitespace', ` ${ticket}`],
      ['unicode', `v1.${sid.slice(0, 42)}é.${mac}`],
    ];
    for (const [name, value] of cases) assert.equal(codec.verify(value), undefined, name);
  });

  test('a codec needs a secret; a short random source is refused', () => {
    assert.throws(() => new TicketCodec([]));
    assert.throws(() => new TicketCodec([A], () => Buffer.alloc(16)).mint());
  });

  test('mint(from): the new id keeps the first 3 bytes (the lineage) of the id it replaces; the other 29 are fresh', () => {
    const codec = new TicketCodec([A]);
    const first = codec.mint().sid;
    const seen = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const { ticket, sid } = codec.mint(first);
      assert.deepEqual(codec.verify(ticket), sid);
      assert.ok(sid.subarray(0, LINEAGE_BYTES).equals(first.subarray(0, LINEAGE_BYTES)), 'same lineage');
      assert.ok(!sid.subarray(LINEAGE_BYTES).equals(first.subarray(LINEAGE_BYTES)));
      seen.add(sid.toString('hex'));
    }
    assert.equal(seen.size, 50, 'fresh every time');
    // The bytes come from the random source, which is not written to.
    const fixed = Buffer.alloc(32, 9);
    const seeded = new TicketCodec([A], () => fixed).mint(Buffer.alloc(32, 1));
    assert.deepEqual([...seeded.sid], [1, 1, 1, ...Array<number>(29).fill(9)]);
    assert.ok(fixed.equals(Buffer.alloc(32, 9)));
    assert.throws(() => codec.mint(Buffer.alloc(3)), /whole id/);
    // Fresh lineages for first sessions: 200 ids, (almost surely) 200 lineages.
    const lineages = new Set(Array.from({ length: 200 }, () => codec.mint().sid.toString('hex', 0, LINEAGE_BYTES)));
    assert.ok(lineages.size >= 195, `${lineages.size} lineages`);
  });
});

describe('data at rest', () => {
  test('the store key is `<lineage>.<hash>`: the id\'s first 3 bytes, and a one-way hash of the whole id, never the id', () => {
    const sid = Buffer.alloc(32, 7);
    const key = storeKeyOf(sid);
    assert.match(key, /^[A-Za-z0-9_-]{4}\.[A-Za-z0-9_-]{43}$/);
    assert.equal(key.slice(0, 4), sid.toString('base64url', 0, 3));
    assert.equal(key.slice(5), createHash('sha256').update(sid).digest('base64url'));
    assert.ok(!key.includes(sid.toString('base64url')));
    assert.ok(!key.includes(sid.toString('base64url', 3)), 'nothing of the other 29 bytes');
    assert.equal(storeKeyOf(Buffer.alloc(32, 7)), key, 'stable');
    assert.notEqual(storeKeyOf(Buffer.alloc(32, 8)), key);
    // The store reads the lineage the session layer wrote.
    assert.equal(lineageOf(key), key.slice(0, 4));
    assert.equal(untagged(key), key.slice(5));
    const codec = new TicketCodec([A]);
    const first = codec.mint().sid;
    assert.equal(lineageOf(storeKeyOf(codec.mint(first).sid)), lineageOf(storeKeyOf(first)), 'a renewed id\'s key shares the lineage');
  });

  test('lineageOf: a 4-character base64url tag and a dot; any other key is of the empty lineage', () => {
    const cases: Array<[string, string, string]> = [
      ['AbC_.hash', 'AbC_', 'hash'],
      ['-_09.x', '-_09', 'x'],
      ['abcd.', '', 'abcd.'],
      ['abc.def', '', 'abc.def'],
      ['abcde.f', '', 'abcde.f'],
      ['ab+d.x', '', 'ab+d.x'],
      ['ab.d.x', '', 'ab.d.x'],
      ['k1', '', 'k1'],
      ['', '', ''],
    ];
    for (const [key, tag, rest] of cases) {
      assert.equal(lineageOf(key), tag, key);
      assert.equal(untagged(key), rest, key);
    }
  });

  test('sealed values open only with their id and their field', () => {
    const k1 = jarKeyOf(Buffer.alloc(32, 1));
    const k2 = jarKeyOf(Buffer.alloc(32, 2));
    const sealed = seal(k1, 'session;example.com;/', 'secret-cookie-value');
    assert.ok(!Buffer.from(sealed, 'base64url').toString('latin1').includes('secret-cookie-value'));
    assert.equal(open(k1, 'session;example.com;/', sealed), 'secret-cookie-value');
    assert.equal(open(k2, 'session;example.com;/', sealed), undefined, 'another session cannot read it');
    assert.equal(open(k1, 'other;example.com;/', sealed), undefined, 'cannot be moved to another field');
    const bytes = Buffer.from(sealed, 'base64url');
    bytes[14] = (bytes[14] as number) ^ 1;
    assert.equal(open(k1, 'session;example.com;/', bytes.toString('base64url')), undefined, 'tampering is detected');
    assert.equal(open(k1, 'session;example.com;/', 'short'), undefined);
    assert.notEqual(seal(k1, 'f', 'v'), seal(k1, 'f', 'v'), 'a fresh IV each time');
  });

  test('sealed records open only with their id, and any flipped bit is detected', () => {
    const k1 = jarKeyOf(Buffer.alloc(32, 1));
    const k2 = jarKeyOf(Buffer.alloc(32, 2));
    const sealed = sealRecord(k1, '["secret-cookie-value"]');
    assert.ok(Buffer.isBuffer(sealed));
    assert.equal(sealed.length, 12 + 23 + 16, 'IV, ciphertext as long as the text, tag');
    assert.ok(!sealed.toString('latin1').includes('secret-cookie-value'));
    assert.equal(openRecord(k1, sealed)?.toString('utf8'), '["secret-cookie-value"]');
    assert.deepEqual(openRecord(k1, sealRecord(k1, Buffer.from([3, 0, 255]))), Buffer.from([3, 0, 255]), 'bytes too');
    assert.equal(openRecord(k2, sealed), undefined, 'another session cannot read it');
    for (const i of [0, 11, 12, sealed.length - 17, sealed.length - 16, sealed.length - 1]) {
      const bad = Buffer.from(sealed);
      bad[i] = (bad[i] as number) ^ 1;
      assert.equal(openRecord(k1, bad), undefined, `byte ${i} flipped`);
    }
    assert.equal(openRecord(k1, sealed.subarray(0, 27)), undefined, 'too short');
    assert.ok(hasTag(sealed, tagOf(sealed)));
    assert.ok(!hasTag(sealRecord(k1, '["secret-cookie-value"]'), tagOf(sealed)), 'a fresh IV, so a fresh tag, each time');
    assert.ok(!hasTag(Buffer.alloc(3), tagOf(sealed)));
  });

  test('log ids are short keyed hashes', () => {
    const h = new LogHasher(A);
    const sid = Buffer.alloc(32, 3);
    assert.match(h.hash(sid), /^[A-Za-z0-9_-]{12}$/);
    assert.equal(h.hash(sid), new LogHasher(A).hash(sid));
    assert.notEqual(h.hash(sid), new LogHasher(B).hash(sid), 'keyed: unknown without the secret');
  });
});
