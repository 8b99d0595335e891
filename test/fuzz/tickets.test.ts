// Property tests of tickets and the Cookie header (issue 13): parsing never throws; a value that
// is not exactly a ticket the service minted never verifies (single-character changes, other
// secrets, truncations, re-encodings, arbitrary strings); and no input makes the session service
// touch the store before the ticket's MAC is verified.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { pino } from 'pino';
import { parseCookieHeader } from '../../src/cookies/header.js';
import { SessionService } from '../../src/session/service.js';
import { TicketCodec } from '../../src/session/ticket.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { SessionStore } from '../../src/store/types.js';
import { fuzz } from './settings.js';

const SECRET = 'fuzz-secret-0123456789-abcdefghijklmnopqrstuvwxyz';
const OTHER = 'fuzz-other-secret-0123456789-abcdefghijklmnopqrst';
const quiet = pino({ level: 'silent' });
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** A session service over a memory store that counts every call that reaches the store. */
function countingService(): { service: SessionService; calls: () => number; codec: TicketCodec } {
  const clock = () => Date.now();
  const store = new MemoryStore({ clock, maxSessions: 1000, logger: quiet });
  let calls = 0;
  const counted = new Proxy(store, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (prop === 'directory') {
        return new Proxy(v as object, {
          get(t, p, r) {
            const f = Reflect.get(t, p, r) as unknown;
            return typeof f === 'function' ? (...args: unknown[]) => ((calls += 1), (f as (...a: unknown[]) => unknown).apply(t, args)) : f;
          },
        });
      }
      if (typeof v !== 'function' || prop === 'available' || prop === 'stats') return v;
      return (...args: unknown[]) => {
        calls += 1;
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  }) as SessionStore;
  const service = new SessionService({
    store: counted,
    secrets: [SECRET],
    timeouts: { idleTimeout: 60_000, absoluteTimeout: 3_600_000, renewAfter: null, renewGrace: 30_000 },
    limits: { maxCookiesPerSession: 50, maxJarBytes: 32_768 },
    clock,
    logger: quiet,
  });
  return { service, calls: () => calls, codec: new TicketCodec([SECRET]) };
}

/** Changes of a real ticket: one character replaced, inserted or removed, case flipped, cut, padded, re-signed with another secret. */
function mutations(ticket: string): fc.Arbitrary<string> {
  const other = new TicketCodec([OTHER]);
  const sid = Buffer.from(ticket.split('.')[1] as string, 'base64url');
  return fc.oneof(
    fc.tuple(fc.nat(ticket.length - 1), fc.constantFrom(...B64.split(''), '.', '=', ' ', '\u0000', 'é')).map(([i, c]) => ticket.slice(0, i) + c + ticket.slice(i + 1)),
    fc.tuple(fc.nat(ticket.length), fc.constantFrom(...B64.split(''), '.', '=')).map(([i, c]) => ticket.slice(0, i) + c + ticket.slice(i)),
    fc.nat(ticket.length - 1).map((i) => ticket.slice(0, i) + ticket.slice(i + 1)),
    fc.nat(ticket.length).map((i) => ticket.slice(0, i)),
    fc.constantFrom(ticket.toUpperCase(), ticket.toLowerCase(), `${ticket}=`, `${ticket}==`, ` ${ticket}`, `${ticket} `, `"${ticket}"`, ticket.replace('v1.', 'v2.'), ticket.replace(/-/g, '+').replace(/_/g, '/')),
    fc.constant(other.sign(sid)),
  );
}

describe('fuzz: tickets and the Cookie header', () => {
  it('parseCookieHeader never throws and keeps only named pairs', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 300 }), fc.string({ unit: 'binary', maxLength: 300 }), fc.array(fc.string({ maxLength: 20 }), { maxLength: 20 }).map((a) => a.join('; '))), (header) => {
        for (const pair of parseCookieHeader(header)) {
          assert.equal(typeof pair.name, 'string');
          assert.ok(pair.name.length > 0);
          assert.ok(!pair.name.includes(';') && !pair.value.includes(';'));
        }
      }),
      fuzz(500),
    );
  });

  it('only the exact minted ticket verifies: every change of it, or any other string, does not', () => {
    const codec = new TicketCodec([SECRET]);
    const { ticket, sid } = codec.mint();
    assert.ok(codec.verify(ticket)?.equals(sid));
    fc.assert(
      fc.property(fc.oneof(mutations(ticket), fc.string({ maxLength: 120 }), fc.string({ unit: fc.constantFrom(...B64.split(''), '.'), minLength: 80, maxLength: 95 }).map((s) => `v1.${s}`)), (value) => {
        if (value === ticket) return;
        assert.equal(codec.verify(value), undefined, `verified: ${JSON.stringify(value)}`);
      }),
      fuzz(1000),
    );
  });

  it('no ticket value that does not verify makes the service touch the store', async () => {
    const { service, calls, codec } = countingService();
    const { ticket } = codec.mint();
    await fc.assert(
      fc.asyncProperty(fc.array(fc.oneof(mutations(ticket), fc.string({ maxLength: 120 })), { minLength: 1, maxLength: 4 }), async (values) => {
        if (values.includes(ticket)) return;
        const before = calls();
        const r = await service.resolve(values);
        assert.ok(['forged', 'unknown', 'none'].includes(r.state), `resolved as ${r.state}`);
        assert.equal(calls(), before, `the store was asked for ${JSON.stringify(values)}`);
      }),
      fuzz(500),
    );
    // The counter works: the real ticket is looked up.
    const before = calls();
    await service.resolve([ticket]);
    assert.ok(calls() > before);
  });
});
