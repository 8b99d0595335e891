// Session record formats: format 3 (binary, written now) round-trips every value and attribute
// and is smaller; format 2 (JSON, written before) is still read, so an upgrade logs nobody out.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { Cookie } from 'tough-cookie';
import { RequestJar } from '../../src/cookies/jar.js';
import { jarKeyOf, openRecord, sealRecord } from '../../src/session/crypto.js';
import { decodeRecord, encodeRecord, encodeRecordJson, type OpenedRecord, type SessionMeta } from '../../src/session/record.js';
import { canonical } from '../../src/session/record-binary.js';

const NOW = Date.UTC(2026, 5, 1, 12, 0, 0);
const URL_ROOT = 'https://app.example.com/';
const META: SessionMeta = { created: NOW - 5_000, deadline: NOW + 3_600_000, touched: NOW - 1_000, issued: NOW - 2_000, family: 'Zm9vYmFyYmF6cXV4' };

function jarOf(setCookies: string[], url = URL_ROOT, now = NOW): Map<string, Cookie> {
  const jar = new RequestJar();
  const out = new Map<string, Cookie>();
  for (const sc of setCookies) {
    const change = jar.apply(sc, url, now, undefined);
    assert.equal(change.kind, 'set', sc);
    if (change.kind === 'set') out.set(change.field, change.cookie);
  }
  return out;
}

/** What a record says, in plain values: comparable with deepEqual. */
function view(r: OpenedRecord | undefined): unknown {
  assert.ok(r, 'the record decodes');
  return {
    meta: { ...r.meta },
    firstExpiry: r.firstExpiry,
    cookies: [...r.cookies].map(([field, c]) => [field, c.key, c.value, c.domain, c.path, c.secure, c.httpOnly, c.hostOnly, c.sameSite, c.expires instanceof Date ? c.expires.getTime() : c.expires, c.creation instanceof Date ? c.creation.getTime() : null, c.creationIndex]),
  };
}

const FIVE = [
  `app_session=${randomBytes(300).toString('base64url')}; Path=/; SameSite=Lax; HttpOnly`,
  `csrf_token=${randomBytes(32).toString('base64url')}; Path=/; SameSite=Lax`,
  `remember_me=${randomBytes(30).toString('base64url')}; Path=/; SameSite=Lax; HttpOnly; Max-Age=2592000`,
  'prefs=theme.dark-lang.en-tz.utc; Path=/; SameSite=Lax; Max-Age=31536000',
  'lang=en; Path=/; SameSite=Lax',
];

describe('session record, format 3 (binary)', () => {
  test('starts with byte 3, round-trips a five-cookie jar as format 2 does, and is smaller', () => {
    const jar = jarOf(FIVE);
    const meta = { ...META, user: 'alice "the" ünïcode', bind: 'b1nd' };
    const bin = encodeRecord(meta, jar);
    assert.equal(bin[0], 3);
    const json = encodeRecordJson(meta, jar);
    assert.deepEqual(view(decodeRecord(bin)), view(decodeRecord(json)));
    assert.ok(bin.length < Buffer.byteLength(json) - 150, `format 3 ${bin.length} bytes, format 2 ${Buffer.byteLength(json)}`);
  });

  test('values of every shape read back unchanged: base64url, base64, hex, near misses, text, latin1 bytes, empty', () => {
    const values = [
      randomBytes(40).toString('base64url'),
      randomBytes(40).toString('base64'),
      randomBytes(41).toString('base64'),
      randomBytes(20).toString('hex'),
      randomBytes(20).toString('hex').toUpperCase(),
      'abcdefghi', // base64url alphabet, 9 characters: no whole bytes
      'QUJDRB', // not canonical (trailing bits set)
      'QUJDRAB=', // padding where none belongs
      'deadbeef0', // odd hex
      'prÃ©nom Ã©lodie',
      'voilÃ\u00a0',
      '',
      'a',
      '"quoted value"',
    ];
    const cookies = new Map<string, Cookie>();
    values.forEach((value, i) => {
      const c = new Cookie({ key: `c${i}`, value, domain: 'app.example.com', path: '/', hostOnly: true, creation: new Date(NOW) });
      cookies.set(`c${i};app.example.com;/`, c);
    });
    const back = decodeRecord(encodeRecord(META, cookies));
    assert.ok(back);
    assert.deepEqual([...back.cookies.values()].map((c) => c.value), values);
  });

  test('cookies of several domains and paths keep theirs, in creation order', () => {
    const jar = jarOf(['a=1; Path=/', 'b=2; Path=/x', 'c=3; Domain=example.com; Path=/', 'd=4; Path=/x', 'e=5; Path=/x; Secure; SameSite=Strict; Max-Age=60']);
    const back = decodeRecord(encodeRecord(META, jar));
    assert.deepEqual(view(back), view(decodeRecord(encodeRecordJson(META, jar))));
    assert.deepEqual([...(back as OpenedRecord).cookies.keys()], ['a;app.example.com;/', 'b;app.example.com;/x', 'c;example.com;/', 'd;app.example.com;/x', 'e;app.example.com;/x']);
    assert.equal((back as OpenedRecord).firstExpiry, NOW + 60_000);
  });

  test('an empty jar, and times before the record (a cookie carried over from an older id)', () => {
    assert.deepEqual(view(decodeRecord(encodeRecord(META, new Map()))), { meta: { ...META }, firstExpiry: Infinity, cookies: [] });
    const older = jarOf(['old=1'], URL_ROOT, NOW - 3_600_000);
    const back = decodeRecord(encodeRecord(META, older));
    assert.equal((back as OpenedRecord).cookies.get('old;app.example.com;/')?.creation?.valueOf(), NOW - 3_600_000);
  });

  test('any value round-trips (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string(), fc.base64String(), fc.stringMatching(/^[0-9a-f]*$/), fc.uint8Array().map((b) => Buffer.from(b).toString('base64url'))), { maxLength: 6 }), (values) => {
        const cookies = new Map<string, Cookie>();
        values.forEach((value, i) => cookies.set(`k${i};h;/`, new Cookie({ key: `k${i}`, value, domain: 'h', path: '/', creation: new Date(NOW) })));
        const back = decodeRecord(encodeRecord(META, cookies));
        assert.ok(back);
        assert.deepEqual([...back.cookies.values()].map((c) => c.value), values);
      }),
    );
  });

  test('truncated, extended or damaged bytes are refused, never thrown', () => {
    const bin = encodeRecord({ ...META, user: 'u' }, jarOf(FIVE));
    for (let len = 1; len < bin.length; len++) assert.equal(decodeRecord(bin.subarray(0, len)), undefined, `cut at ${len}`);
    assert.equal(decodeRecord(Buffer.concat([bin, Buffer.from([0])])), undefined, 'a byte too many');
    for (let i = 1; i < bin.length; i++) {
      const bad = Buffer.from(bin);
      bad[i] = 0xff;
      assert.doesNotThrow(() => decodeRecord(bad));
    }
  });
});

describe('session record, format 2 (JSON, written before): still read', () => {
  test('a record sealed as format 2 opens and decodes to what format 3 gives', () => {
    const jar = jarOf(FIVE);
    const key = jarKeyOf(randomBytes(32));
    const sealedJson = sealRecord(key, encodeRecordJson(META, jar));
    const opened = openRecord(key, sealedJson);
    assert.ok(opened);
    assert.equal(opened[0], 0x5b, 'format 2 starts with [');
    assert.deepEqual(view(decodeRecord(opened)), view(decodeRecord(openRecord(key, sealRecord(key, encodeRecord(META, jar))) as Buffer)));
  });

  test('a format 2 record as the previous release wrote it', () => {
    const text = `[2,${NOW},3600000,0,0,"fam",null,null,"sid;app.example.com;/","v1",6,0,0,2,"pr\u00c3\u00a9f;app.example.com;/x","\u00c3\u00a9",5,60000,-1000,0]`;
    const r = decodeRecord(Buffer.from(text, 'utf8'));
    assert.ok(r);
    assert.deepEqual({ ...r.meta }, { created: NOW, deadline: NOW + 3_600_000, touched: NOW, issued: NOW, family: 'fam' });
    const [sid, pref] = [...r.cookies.values()];
    assert.equal(sid?.value, 'v1');
    assert.equal(sid?.httpOnly, true);
    assert.equal(sid?.sameSite, 'lax');
    assert.equal(pref?.key, 'pr\u00c3\u00a9f');
    assert.equal(pref?.value, '\u00c3\u00a9');
    assert.equal(pref?.secure, true);
    assert.equal(r.firstExpiry, NOW + 60_000);
  });
});

test('format 3 packs a base64, base64url or hex value only when its bytes give the same text back (checked without a round trip)', () => {
  // A fixed-seed generator: the same strings every run.
  let seed = 0x2545f491;
  const next = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const pick = (alphabet: string, len: number) => Array.from({ length: len }, () => alphabet[next(alphabet.length)]).join('');
  const cases: Array<[string, 1 | 2 | 3, BufferEncoding]> = [];
  for (let len = 8; len < 40; len++) {
    for (let k = 0; k < 20; k++) {
      cases.push([pick(B64URL, len), 1, 'base64url']);
      const body = pick(B64, len);
      cases.push([body + '='.repeat(next(3)), 2, 'base64']);
      cases.push([pick('0123456789abcdef', len * 2), 3, 'hex']);
    }
  }
  let packed = 0;
  for (const [s, kind, encoding] of cases) {
    const same = Buffer.from(s, encoding).toString(encoding) === s;
    assert.equal(canonical(s, kind), same, `${encoding} ${s}`);
    if (same) packed++;
  }
  // Both answers occur (the check is not constant).
  assert.ok(packed > 100 && packed < cases.length, `${packed} of ${cases.length}`);
});
