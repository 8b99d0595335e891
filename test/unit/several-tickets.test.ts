// Several ticket cookies in one request (cookie tossing: a sibling subdomain plants its own
// ticket, with a longer Path so that browsers send it first): the service's classification,
// table-driven, and the request stages that act on it, without sockets.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { RequestJar } from '../../src/cookies/jar.js';
import { reject, type Outcome, type RequestContext } from '../../src/pipeline/context.js';
import { runStages } from '../../src/pipeline/handler.js';
import { checkBinding, handleInvalid, identify, matchRules, resolveSession } from '../../src/pipeline/request.js';
import { emitTicket } from '../../src/pipeline/response.js';
import { logout } from '../../src/pipeline/session-actions.js';
import { TicketCookie } from '../../src/pipeline/ticket-cookie.js';
import { SessionService, type LiveSession, type Resolution } from '../../src/session/service.js';
import { TicketCodec } from '../../src/session/ticket.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { LoadResult } from '../../src/store/types.js';
import { FakeClock } from '../helpers/clock.js';
import { captureLogger } from '../helpers/logs.js';
import { fakeRequest, stageConfig, stageHarness, type StageHarness } from '../helpers/pipeline.js';
import type { ConfigInput } from '../../src/config/schema.js';

const MIN = 60_000;
const SECRET = '0123456789abcdef0123456789abcdef-first';
const SECRET2 = '0123456789abcdef0123456789abcdef-second';

/** A memory store that counts loads, and how many were asked for before any of them answered. */
class CountingStore extends MemoryStore {
  loads = 0;
  inFlight = 0;
  maxInFlight = 0;
  override async load(key: string): Promise<LoadResult> {
    this.loads += 1;
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      return await super.load(key);
    } finally {
      this.inFlight -= 1;
    }
  }
}

function serviceSetup() {
  const clock = new FakeClock(Date.UTC(2026, 5, 1));
  const { logger } = captureLogger();
  const store = new CountingStore({ clock: clock.now, maxSessions: 100, logger });
  const service = new SessionService({
    store,
    secrets: [SECRET, SECRET2],
    timeouts: { idleTimeout: 30 * MIN, absoluteTimeout: 12 * 60 * MIN, renewAfter: 10 * MIN, renewGrace: 30_000 },
    limits: { maxCookiesPerSession: 50, maxJarBytes: 32_768 },
    clock: clock.now,
    logger,
  });
  const create = async (value: string): Promise<string> => {
    const change = new RequestJar().apply(`app=${value}; Path=/`, 'https://app.example/', clock.now(), undefined);
    const out = await service.commit({ session: undefined, changes: [change], rotate: false });
    assert.equal(out.kind, 'created');
    return (out as { ticket: string }).ticket;
  };
  const live = async (ticket: string): Promise<LiveSession> => {
    const r = await service.resolve([ticket]);
    assert.equal(r.state, 'live');
    return (r as { session: LiveSession }).session;
  };
  return { clock, store, service, create, live };
}

/** A ticket of the same id signed by the second secret (as after a rotation of secrets). */
function resigned(ticket: string): string {
  const sid = Buffer.from(ticket.split('.')[1] as string, 'base64url');
  return new TicketCodec([SECRET2]).sign(sid);
}

/** What a resolution is, in terms a table can state: the state and whose sessions. */
function shapeOf(r: Resolution, names: Map<string, string>): unknown {
  const name = (logId: string): string => names.get(logId) ?? `?${logId}`;
  switch (r.state) {
    case 'live':
      return { state: 'live', session: name(r.session.logId) };
    case 'mixed':
      return { state: 'mixed', live: r.live.map((s) => name(s.logId)).sort(), revoked: r.revoked.map(name).sort() };
    case 'revoked':
    case 'expired':
      return { state: r.state, session: name(r.logId) };
    default:
      return { state: r.state };
  }
}

describe('SessionService.resolve with several tickets', () => {
  const FORGED = `v1.${'A'.repeat(43)}.${'B'.repeat(43)}`;
  // A: live, B: live, R: revoked (logged out), X: expired (signed by us, no session).
  const table: Array<{ name: string; tickets: string[]; want: unknown }> = [
    { name: 'one live ticket', tickets: ['A'], want: { state: 'live', session: 'A' } },
    { name: 'two copies of one ticket are one session', tickets: ['A', 'A'], want: { state: 'live', session: 'A' } },
    { name: 'one id signed by two secrets is one session', tickets: ['A', 'A2'], want: { state: 'live', session: 'A' } },
    { name: 'two different live sessions: mixed, neither served', tickets: ['A', 'B'], want: { state: 'mixed', live: ['A', 'B'], revoked: [] } },
    { name: 'the attacker first: the same', tickets: ['B', 'A'], want: { state: 'mixed', live: ['A', 'B'], revoked: [] } },
    { name: 'a revoked one next to a live one: mixed, the revoked one named', tickets: ['R', 'A'], want: { state: 'mixed', live: ['A'], revoked: ['R'] } },
    { name: 'a live one next to a revoked one: the same', tickets: ['A', 'R'], want: { state: 'mixed', live: ['A'], revoked: ['R'] } },
    { name: 'a revoked and an expired one: revoked', tickets: ['X', 'R'], want: { state: 'revoked', session: 'R' } },
    { name: 'a live one next to an expired one: live', tickets: ['X', 'A'], want: { state: 'live', session: 'A' } },
    { name: 'a live one next to a forged one: live', tickets: ['F', 'A'], want: { state: 'live', session: 'A' } },
    { name: 'a live one next to garbage: live', tickets: ['junk', 'A'], want: { state: 'live', session: 'A' } },
    { name: 'two live and a revoked one', tickets: ['A', 'R', 'B'], want: { state: 'mixed', live: ['A', 'B'], revoked: ['R'] } },
    { name: 'a forged one and garbage: forged', tickets: ['junk', 'F'], want: { state: 'forged' } },
    { name: 'garbage twice: unknown', tickets: ['junk', 'junk2'], want: { state: 'unknown' } },
  ];
  for (const row of table) {
    test(row.name, async () => {
      const s = serviceSetup();
      const A = await s.create('a');
      const B = await s.create('b');
      const R = await s.create('r');
      // X: signed by us, but no session in the store (expired, or flushed).
      const X = new TicketCodec([SECRET]).mint().ticket;
      const names = new Map<string, string>();
      for (const [n, t] of [['A', A], ['B', B], ['R', R]] as const) names.set((await s.live(t)).logId, n);
      names.set(((await s.service.resolve([X])) as { logId: string }).logId, 'X');
      await s.service.revoke(await s.live(R));
      const values: Record<string, string> = { A, A2: resigned(A), B, R, X, F: FORGED, junk: 'not-a-ticket', junk2: 'v2.nope' };
      const r = await s.service.resolve(row.tickets.map((t) => values[t] as string));
      assert.deepEqual(shapeOf(r, names), row.want);
    });
  }

  test('a renewed id inside its grace window and its successor are one session', async () => {
    const s = serviceSetup();
    const old = await s.create('a');
    s.clock.advance(11 * MIN);
    const renewal = await s.service.commit({ session: await s.live(old), changes: [], rotate: false });
    assert.equal(renewal.kind, 'created');
    const next = (renewal as { ticket: string }).ticket;
    const r = await s.service.resolve([old, next]);
    assert.equal(r.state, 'live');
    assert.equal((r as { session: LiveSession }).session.logId, (await s.live(next)).logId);
  });

  test('one ticket: one load; several: one load each, all asked for before any answers (one batch)', async () => {
    const s = serviceSetup();
    const A = await s.create('a');
    const B = await s.create('b');
    const C = await s.create('c');
    s.store.loads = 0;
    s.store.maxInFlight = 0;
    await s.service.resolve([A]);
    assert.deepEqual({ loads: s.store.loads, batch: s.store.maxInFlight }, { loads: 1, batch: 1 });
    s.store.loads = 0;
    s.store.maxInFlight = 0;
    await s.service.resolve([A, B, C, A]);
    assert.deepEqual({ loads: s.store.loads, batch: s.store.maxInFlight }, { loads: 3, batch: 3 });
  });
});

// ---------------------------------------------------------------------------------------------
// The request stages

const STAGES = [identify, resolveSession, handleInvalid, checkBinding, matchRules];

async function newSession(h: StageHarness, value: string): Promise<string> {
  const change = new RequestJar().apply(`app=${value}; Path=/`, 'http://app.example/', Date.now(), undefined);
  const out = await h.deps.service.commit({ session: undefined, changes: [change], rotate: false });
  assert.equal(out.kind, 'created');
  return (out as { ticket: string }).ticket;
}

async function stateOf(h: StageHarness, ticket: string): Promise<string> {
  return (await h.deps.service.resolve([ticket])).state;
}

async function run(h: StageHarness, url: string, tickets: string[], headers: string[] = []): Promise<{ ctx: RequestContext; outcome: Outcome | undefined }> {
  const cookie = tickets.map((t) => `coatcheck=${t}`).join('; ');
  const ctx = h.context(fakeRequest({ url, headers: ['Host', 'app.example', 'Cookie', cookie, ...headers] }));
  const outcome = await runStages(STAGES, ctx, h.deps);
  return { ctx, outcome };
}

describe('request stages with several tickets', () => {
  const BASE: Partial<ConfigInput> = { cookie: { name: 'coatcheck', secure: false }, logout: [{ path: '/logout' }] };
  const table: Array<{
    name: string;
    /** a: the user's live session, b: the attacker's live session, r: a revoked one. */
    tickets: Array<'a' | 'b' | 'r'>;
    url: string;
    policy?: 'reject' | 'anonymous';
    outcome: Outcome | undefined;
    after: { a: string; b: string };
    events: { replay: number; conflict: number };
  }> = [
    { name: 'two live, a page: refused as a conflict, both survive', tickets: ['b', 'a'], url: '/page', outcome: reject('SESSION_CONFLICT'), after: { a: 'live', b: 'live' }, events: { replay: 0, conflict: 1 } },
    { name: 'two live, a page, anonymous policy: forwarded without a session', tickets: ['b', 'a'], url: '/page', policy: 'anonymous', outcome: undefined, after: { a: 'live', b: 'live' }, events: { replay: 0, conflict: 1 } },
    { name: 'two live, the logout: both revoked, served as a logout', tickets: ['b', 'a'], url: '/logout', outcome: undefined, after: { a: 'revoked', b: 'revoked' }, events: { replay: 0, conflict: 1 } },
    { name: 'two live, the logout, anonymous policy: both revoked', tickets: ['b', 'a'], url: '/logout', policy: 'anonymous', outcome: undefined, after: { a: 'revoked', b: 'revoked' }, events: { replay: 0, conflict: 1 } },
    { name: 'revoked + live, a page: a replay, refused; the live one survives', tickets: ['r', 'a'], url: '/page', outcome: reject('SESSION_REVOKED'), after: { a: 'live', b: 'live' }, events: { replay: 1, conflict: 0 } },
    { name: 'revoked + live, the logout: a replay, refused, and the live one revoked', tickets: ['r', 'a'], url: '/logout', outcome: reject('SESSION_REVOKED'), after: { a: 'revoked', b: 'live' }, events: { replay: 1, conflict: 0 } },
    { name: 'revoked + live, the logout, anonymous policy: the live one revoked', tickets: ['r', 'a'], url: '/logout', policy: 'anonymous', outcome: undefined, after: { a: 'revoked', b: 'live' }, events: { replay: 1, conflict: 0 } },
    { name: 'the same ticket twice, a page: served', tickets: ['a', 'a'], url: '/page', outcome: undefined, after: { a: 'live', b: 'live' }, events: { replay: 0, conflict: 0 } },
    { name: 'the same ticket twice, the logout: revoked', tickets: ['a', 'a'], url: '/logout', outcome: undefined, after: { a: 'revoked', b: 'live' }, events: { replay: 0, conflict: 0 } },
  ];
  for (const row of table) {
    test(row.name, async () => {
      const h = stageHarness({ ...BASE, invalidSession: { revoked: row.policy ?? 'reject' } });
      const a = await newSession(h, 'user');
      const b = await newSession(h, 'attacker');
      const r = await newSession(h, 'old');
      const rr = await h.deps.service.resolve([r]);
      await h.deps.service.revoke((rr as { session: LiveSession }).session);
      const values = { a, b, r };
      const { ctx, outcome } = await run(h, row.url, row.tickets.map((t) => values[t]));
      assert.deepEqual(outcome, row.outcome);
      assert.deepEqual({ a: await stateOf(h, a), b: await stateOf(h, b) }, row.after);
      assert.deepEqual(
        { replay: h.logs.events('session.replay').length, conflict: h.logs.events('session.ticket_conflict').length },
        row.events,
      );
      assert.equal(await h.securityCount('ticket_conflict'), row.events.conflict);
      assert.equal(await h.securityCount('revoked'), row.events.replay);
      const several = row.tickets[0] !== row.tickets[1];
      if (several) {
        assert.equal(ctx.session, undefined, 'never served with either session');
        assert.equal(ctx.clearTicket, true, 'the answer clears the ticket');
      } else {
        assert.ok(ctx.session, 'copies of one ticket are that session');
      }
      for (const line of h.logs.raw) for (const t of [a, b, r]) assert.ok(!line.includes(t), 'no ticket in a log line');
    });
  }

  test('the conflict clears even on a background request (Sec-Fetch-Mode: cors)', async () => {
    const h = stageHarness(BASE);
    const a = await newSession(h, 'user');
    const b = await newSession(h, 'attacker');
    const { ctx, outcome } = await run(h, '/api', [b, a], ['Sec-Fetch-Mode', 'cors']);
    assert.deepEqual(outcome, reject('SESSION_CONFLICT'));
    assert.equal(ctx.clearTicket, true);
    const line = h.logs.events('session.ticket_conflict')[0];
    assert.equal((line?.sessions as string[]).length, 2, 'the conflict names both sessions by their log hash');
  });

  test("the app's revocation (logout by 'app') revokes every live session the request carried", async () => {
    const h = stageHarness({ ...BASE, invalidSession: { revoked: 'anonymous' } });
    const a = await newSession(h, 'user');
    const b = await newSession(h, 'attacker');
    const { ctx, outcome } = await run(h, '/page', [b, a]);
    assert.equal(outcome, undefined);
    await logout(ctx, h.deps, 'app');
    assert.deepEqual({ a: await stateOf(h, a), b: await stateOf(h, b), logouts: h.logs.events('session.logout').length }, { a: 'revoked', b: 'revoked', logouts: 2 });
  });
});

describe('clearing the ticket in every form', () => {
  const table: Array<{ name: string; cookie: ConfigInput['cookie']; other: string[] }> = [
    { name: 'host-only ticket: one form', cookie: { name: 'coatcheck', secure: false }, other: [] },
    {
      name: 'ticket with a Domain: the host-only form too',
      cookie: { name: 'coatcheck', secure: true, domain: 'example.com' },
      other: ['coatcheck=; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=0'],
    },
  ];
  for (const row of table) {
    test(row.name, () => {
      const config = stageConfig({ cookie: row.cookie });
      const t = new TicketCookie(config.cookie.name, config.cookie, config.session.absoluteTimeout);
      assert.deepEqual(t.clearOtherForms, row.other);
      assert.equal(t.clear, `coatcheck=; Path=/${row.cookie?.domain ? `; Domain=${row.cookie.domain}` : ''}; HttpOnly${row.cookie?.secure ? '; Secure' : ''}; SameSite=Lax; Max-Age=0`);
    });
  }

  test('emitTicket: with several tickets every form is cleared, and a new ticket comes after the other forms are cleared', () => {
    const h = stageHarness({ cookie: { name: 'coatcheck', secure: true, domain: 'example.com' } });
    const cases: Array<{ tickets: string[]; newTicket?: string; want: string[] }> = [
      { tickets: ['x'], want: ['coatcheck=; Path=/; Domain=example.com; HttpOnly; Secure; SameSite=Lax; Max-Age=0'] },
      {
        tickets: ['x', 'y'],
        want: ['coatcheck=; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=0', 'coatcheck=; Path=/; Domain=example.com; HttpOnly; Secure; SameSite=Lax; Max-Age=0'],
      },
      {
        tickets: ['x', 'y'],
        newTicket: 'NEW',
        want: ['coatcheck=; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=0', 'coatcheck=NEW; Path=/; Domain=example.com; HttpOnly; Secure; SameSite=Lax'],
      },
    ];
    for (const c of cases) {
      const ctx = h.context();
      ctx.ticketValues = c.tickets;
      ctx.clearTicket = true;
      ctx.newTicket = c.newTicket;
      ctx.responseHeaders = [];
      assert.equal(emitTicket(ctx, h.deps), undefined);
      const setCookies = ctx.responseHeaders.filter((_, i) => ctx.responseHeaders[i - 1] === 'set-cookie');
      assert.deepEqual(setCookies, c.want, JSON.stringify(c));
    }
  });
});
