// Report-only mode without sockets: the `mode` key, the keyed cookie fingerprints, the helpers of
// the report-only stages, the memory store's fingerprints (by the injected clock) and the mode
// label of the security-event counter.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, hkdfSync } from 'node:crypto';
import { Metrics } from '../../src/admin/metrics.js';
import { loadConfigText } from '../../src/config/load.js';
import { printConfig } from '../../src/config/print.js';
import { ConfigError } from '../../src/errors.js';
import { clears, withoutCookie } from '../../src/pipeline/report-only.js';
import { CookieFingerprinter, fingerprintable, MIN_FINGERPRINT_VALUE_LENGTH } from '../../src/session/fingerprint.js';
import { MemoryStore } from '../../src/store/memory.js';
import { FakeClock } from '../helpers/clock.js';
import { captureLogger } from '../helpers/logs.js';

const SECRET = 'test-secret-0123456789-abcdefghijklmnop';
const SECRET2 = 'second-secret-ZYXWVUTSRQPONMLKJIHGFEDCBA';
const BASE = ['upstream: "http://127.0.0.1:3000"', `secrets: ["${SECRET}"]`];
const LONG = 'eyJ1c2VyIjoiYWxpY2UifQ.c2lnbmF0dXJl';

describe('config: mode', () => {
  it('defaults to enforce, accepts report-only, and check-config prints it', () => {
    assert.equal(loadConfigText(BASE.join('\n'), 't.yaml', {}).config.mode, 'enforce');
    const { config } = loadConfigText([...BASE, 'mode: report-only'].join('\n'), 't.yaml', {});
    assert.equal(config.mode, 'report-only');
    assert.match(printConfig(config), /^mode: report-only$/m);
  });

  it('report-only is a warning (nothing is enforced), located at the key', () => {
    const { warnings } = loadConfigText([...BASE, 'logout: [{ path: /logout }]', 'mode: report-only'].join('\n'), 't.yaml', {});
    const w = warnings.find((x) => x.includes('mode:'));
    assert.ok(w, warnings.join('\n'));
    assert.match(w, /^t\.yaml:4:7: mode: is report-only: every cookie is forwarded untouched and nothing is enforced/);
    const quiet = loadConfigText([...BASE, 'logout: [{ path: /logout }]'].join('\n'), 't.yaml', {}).warnings;
    assert.ok(!quiet.some((x) => x.includes('mode:')));
  });

  for (const [value, col] of [
    ['reportonly', 7],
    ['"Report-Only"', 7],
    ['true', 7],
  ] as const) {
    it(`refuses mode: ${value} with the key path and line:col`, () => {
      const lines = [...BASE, 'log: { level: info }', `mode: ${value}`];
      let err: unknown;
      try {
        loadConfigText(lines.join('\n'), 't.yaml', {});
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof ConfigError, String(err));
      const p = err.problems.find((x) => x.path === 'mode');
      assert.ok(p, JSON.stringify(err.problems));
      assert.match(p.message, /enforce/);
      assert.match(p.message, /report-only/);
      assert.deepEqual({ line: p.line, col: p.col }, { line: 4, col });
    });
  }
});

describe('cookie fingerprints', () => {
  it('are HMAC-SHA256 of name=value under a key derived from the secret, 16 bytes base64url', () => {
    const fp = new CookieFingerprinter([SECRET]);
    const key = Buffer.from(hkdfSync('sha256', Buffer.from(SECRET), Buffer.from('coatcheck/v1/fingerprint'), Buffer.from('cookie-fingerprint'), 32));
    const expected = createHmac('sha256', key).update(`sid=${LONG}`).digest().toString('base64url', 0, 16);
    assert.equal(fp.recorded('sid', LONG), expected);
    assert.match(expected, /^[A-Za-z0-9_-]{22}$/);
    assert.ok(!expected.includes(LONG.slice(0, 8)));
  });

  it('are keyed: another secret gives another fingerprint; the same secret the same one', () => {
    assert.equal(new CookieFingerprinter([SECRET]).recorded('sid', LONG), new CookieFingerprinter([SECRET]).recorded('sid', LONG));
    assert.notEqual(new CookieFingerprinter([SECRET]).recorded('sid', LONG), new CookieFingerprinter([SECRET2]).recorded('sid', LONG));
  });

  it('take name and value together: the same value under another name, or another value, differs', () => {
    const fp = new CookieFingerprinter([SECRET]);
    const a = fp.recorded('sid', LONG);
    assert.notEqual(fp.recorded('other', LONG), a);
    assert.notEqual(fp.recorded('sid', `${LONG}x`), a);
    // No ambiguity where name and value meet.
    assert.notEqual(fp.recorded('si', `d=${LONG}`), fp.recorded('sid', LONG));
  });

  it('are looked up under every secret, the recording (first) one first: a rotation keeps old records', () => {
    const before = new CookieFingerprinter([SECRET]);
    const after = new CookieFingerprinter([SECRET2, SECRET]);
    assert.equal(after.perCookie, 2);
    const candidates = after.candidates('sid', LONG);
    assert.deepEqual(candidates, [after.recorded('sid', LONG), before.recorded('sid', LONG)]);
  });

  it('are only taken of values of 16 characters or more', () => {
    assert.equal(MIN_FINGERPRINT_VALUE_LENGTH, 16);
    assert.equal(fingerprintable('en'), false);
    assert.equal(fingerprintable('theme=dark'), false);
    assert.equal(fingerprintable('a'.repeat(15)), false);
    assert.equal(fingerprintable('a'.repeat(16)), true);
    assert.equal(fingerprintable(LONG), true);
  });
});

describe('report-only helpers', () => {
  it('withoutCookie drops every segment of one name and keeps the others byte for byte', () => {
    assert.equal(withoutCookie('a=1; coatcheck=v1.x.y; b="q r"', 'coatcheck'), 'a=1; b="q r"');
    assert.equal(withoutCookie('coatcheck=1;coatcheck=2', 'coatcheck'), '');
    assert.equal(withoutCookie('a=1;  b=2 ; coatcheckx=3', 'coatcheck'), 'a=1; b=2; coatcheckx=3');
  });

  it('clears: Max-Age <= 0, or an Expires in the past; Max-Age wins over Expires', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    assert.equal(clears('sid=; Max-Age=0; Path=/', now), true);
    assert.equal(clears('sid=; max-age=-1', now), true);
    assert.equal(clears('sid=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT', now), true);
    assert.equal(clears('sid=x; Expires=Thu, 01 Jan 2099 00:00:00 GMT', now), false);
    assert.equal(clears('sid=x; Max-Age=60; Expires=Thu, 01 Jan 1970 00:00:00 GMT', now), false);
    assert.equal(clears('sid=x; Path=/', now), false);
    assert.equal(clears('sid=x; Max-Age=soon', now), false);
    assert.equal(clears('sid=x; Max-Age=0; Max-Age=60', now), false, 'the last Max-Age counts');
  });
});

describe('memory store: fingerprints', () => {
  function store(clock: FakeClock, maxSessions = 100): MemoryStore {
    return new MemoryStore({ clock: clock.now, maxSessions, logger: captureLogger('silent').logger });
  }

  it('records, finds, says what was there before, and forgets at the end of the TTL', async () => {
    const clock = new FakeClock(1_000_000);
    const s = store(clock);
    assert.deepEqual(await s.findFingerprints(['a', 'b']), [null, null]);
    assert.deepEqual(await s.recordFingerprints(['a'], 42, 60_000), [null]);
    assert.deepEqual(await s.findFingerprints(['a', 'b']), [42, null]);
    clock.advance(30_000);
    assert.deepEqual(await s.recordFingerprints(['a', 'b'], 43, 60_000), [42, null]);
    clock.advance(59_999);
    assert.deepEqual(await s.findFingerprints(['a', 'b']), [43, 43]);
    clock.advance(1);
    assert.deepEqual(await s.findFingerprints(['a', 'b']), [null, null]);
    assert.deepEqual(await s.findFingerprints([]), []);
  });

  it('keeps at most maxSessions fingerprints, apart from the sessions, dropping the oldest', async () => {
    const clock = new FakeClock(0);
    const s = store(clock, 2);
    await s.create('k1', Buffer.from('x'), 60_000);
    await s.create('k2', Buffer.from('y'), 60_000);
    await s.recordFingerprints(['a', 'b', 'c'], 1, 60_000);
    assert.deepEqual(await s.findFingerprints(['a', 'b', 'c']), [null, 1, 1]);
    assert.equal((await s.load('k1')).state, 'live');
    assert.equal((await s.load('k2')).state, 'live');
  });

  it('refuses a bad TTL and fails once closed', async () => {
    const s = store(new FakeClock(0));
    await assert.rejects(s.recordFingerprints(['a'], 1, 0), RangeError);
    await s.close();
    await assert.rejects(s.findFingerprints(['a']), /closed/);
  });
});

describe('metrics: coatcheck_security_events_total carries the mode', () => {
  it('an event counted without a mode is an enforce event; report-only is its own series', async () => {
    const m = new Metrics();
    m.security.inc({ event: 'revoked' });
    m.security.inc({ event: 'revoked', mode: 'report-only' });
    m.security.inc({ event: 'revoked', mode: 'report-only' });
    const text = await m.registry.metrics();
    assert.match(text, /^coatcheck_security_events_total\{event="revoked",mode="enforce"\} 1$/m);
    assert.match(text, /^coatcheck_security_events_total\{event="revoked",mode="report-only"\} 2$/m);
    assert.match(text, /^coatcheck_security_events_total\{event="forged",mode="enforce"\} 0$/m);
    assert.doesNotMatch(text, /coatcheck_security_events_total\{event="[a-z_]+"\}/);
  });
});
