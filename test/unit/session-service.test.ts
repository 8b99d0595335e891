// The session service's compare-and-set writes, against the real memory store: a response
// whose session was written meanwhile is applied again on top of what was written; a session
// that other requests never stop writing gives up with a clear error; a lost touch is dropped.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { RequestJar, type JarChange } from '../../src/cookies/jar.js';
import { StoreUnavailableError } from '../../src/errors.js';
import { SessionService, type LiveSession } from '../../src/session/service.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { WriteResult } from '../../src/store/types.js';
import { FakeClock } from '../helpers/clock.js';
import { captureLogger } from '../helpers/logs.js';

const URL_ROOT = 'https://app.example.com/';
const MIN = 60_000;

/** A memory store where another writer lands just before each of our updates, `times` times. */
class ContendedStore extends MemoryStore {
  interferences = 0;
  constructor(
    clock: () => number,
    logger: ReturnType<typeof captureLogger>['logger'],
    private readonly interfere: (key: string, version: number) => Promise<void>,
    public times: number,
  ) {
    super({ clock, maxSessions: 100, logger });
  }
  private interfering = false;
  override async update(key: string, version: number, data: Buffer, ttlMs: number): Promise<WriteResult> {
    if (this.times > 0 && !this.interfering) {
      this.times -= 1;
      this.interferences += 1;
      this.interfering = true;
      try {
        await this.interfere(key, version);
      } finally {
        this.interfering = false;
      }
    }
    return super.update(key, version, data, ttlMs);
  }
}

function setup(times: number) {
  const clock = new FakeClock(Date.UTC(2026, 5, 1));
  const log = captureLogger();
  // The other writer: a request on the same session, through another process (a service of its
  // own on the same store), that sets `other=<n>`.
  const interfere = async (_key: string, _version: number): Promise<void> => {
    const r = await otherProcess.resolve([ticket]);
    assert.equal(r.state, 'live');
    const live = (r as { session: LiveSession }).session;
    const outcome = await otherProcess.commit({ session: live, changes: changesOf(`other=${store.interferences}`), rotate: false });
    assert.equal(outcome.kind, 'updated');
  };
  const store = new ContendedStore(clock.now, log.logger, interfere, 0);
  const newService = () =>
    new SessionService({
      store,
      secrets: ['0123456789abcdef0123456789abcdef'],
      timeouts: { idleTimeout: 30 * MIN, absoluteTimeout: 12 * 60 * MIN, renewAfter: null, renewGrace: 30_000 },
      limits: { maxCookiesPerSession: 50, maxJarBytes: 32_768 },
      clock: clock.now,
      logger: log.logger,
    });
  const service = newService();
  const otherProcess = newService();
  let ticket = '';
  const changesOf = (...setCookies: string[]): JarChange[] => {
    const jar = new RequestJar();
    return setCookies.map((sc) => jar.apply(sc, URL_ROOT, clock.now(), undefined));
  };
  const resolve = async (): Promise<LiveSession> => {
    const r = await service.resolve([ticket]);
    assert.equal(r.state, 'live');
    return (r as { session: LiveSession }).session;
  };
  const cookies = async () => [...(await resolve()).cookies.values()].map((c) => `${c.key}=${c.value}`).sort();
  return {
    store,
    service,
    log,
    changesOf,
    resolve,
    cookies,
    ticket: () => ticket,
    advance: (ms: number) => clock.advance(ms),
    async login() {
      const created = await service.commit({ session: undefined, changes: changesOf('app=1'), rotate: false });
      assert.equal(created.kind, 'created');
      ticket = (created as { ticket: string }).ticket;
      store.times = times;
    },
  };
}

describe('session writes under concurrency (compare-and-set)', () => {
  test('a write that lost to another is applied again on top of it: both persist', async () => {
    const s = setup(2);
    await s.login();
    const session = await s.resolve();
    const outcome = await s.service.commit({ session, changes: s.changesOf('mine=1'), rotate: false });
    assert.equal(outcome.kind, 'updated');
    assert.equal(s.store.interferences, 2, 'two attempts lost, the third landed');
    assert.deepEqual(await s.cookies(), ['app=1', 'mine=1', 'other=2']);
  });

  test('a session that other requests never stop writing: gives up after 8 attempts, loudly, writing nothing of its own', async () => {
    const s = setup(1000);
    await s.login();
    const session = await s.resolve();
    await assert.rejects(s.service.commit({ session, changes: s.changesOf('mine=1'), rotate: false }), (err: unknown) => {
      assert.ok(err instanceof StoreUnavailableError);
      assert.match(err.message, /8 times/);
      return true;
    });
    assert.equal(s.store.interferences, 8);
    const warned = s.log.logs.lines.filter((l) => l.event === 'session.write_contention');
    assert.equal(warned.length, 1);
    assert.equal(warned[0]?.attempts, 8);
    s.store.times = 0;
    assert.ok(!(await s.cookies()).includes('mine=1'));
  });

  test('a touch alone that lost to another write is dropped, not retried', async () => {
    const s = setup(1);
    await s.login();
    s.advance(5 * MIN); // past the touch interval (min(60 s, idle / 10))
    const session = await s.resolve();
    const outcome = await s.service.commit({ session, changes: [], rotate: false });
    assert.equal(outcome.kind, 'unchanged');
    assert.equal(s.store.interferences, 1);
  });

  test('a login (rotation) that lost to another write starts again from it: the new id carries both', async () => {
    const s = setup(0);
    await s.login();
    const session = await s.resolve();
    // another request writes the session between this request's load and its rotation
    const other = await s.resolve();
    assert.equal((await s.service.commit({ session: other, changes: s.changesOf('other=1'), rotate: false })).kind, 'updated');
    const rotated = await s.service.commit({ session, changes: s.changesOf('mine=1'), rotate: true });
    assert.equal(rotated.kind, 'created');
    const fresh = await s.service.resolve([(rotated as { ticket: string }).ticket]);
    assert.equal(fresh.state, 'live');
    const names = [...(fresh as { session: LiveSession }).session.cookies.values()].map((c) => `${c.key}=${c.value}`).sort();
    assert.deepEqual(names, ['app=1', 'mine=1', 'other=1']);
    assert.equal((await s.service.resolve([s.ticket()])).state, 'revoked', 'the old id is dead');
  });
});

/** A memory store that counts updates, and fails the next `failures` of them as Redis would when down. */
class CountingStore extends MemoryStore {
  updates = 0;
  failures = 0;
  override async update(key: string, version: number, data: Buffer, ttlMs: number): Promise<WriteResult> {
    this.updates += 1;
    if (this.failures > 0) {
      this.failures -= 1;
      throw new StoreUnavailableError('store down for this write');
    }
    return super.update(key, version, data, ttlMs);
  }
}

describe('session writes in one process (one in flight per session, the rest merged)', () => {
  function setupOne() {
    const clock = new FakeClock(Date.UTC(2026, 5, 1));
    const log = captureLogger();
    const store = new CountingStore({ clock: clock.now, maxSessions: 100, logger: log.logger });
    const service = new SessionService({
      store,
      secrets: ['0123456789abcdef0123456789abcdef'],
      timeouts: { idleTimeout: 30 * MIN, absoluteTimeout: 12 * 60 * MIN, renewAfter: null, renewGrace: 30_000 },
      limits: { maxCookiesPerSession: 50, maxJarBytes: 32_768 },
      clock: clock.now,
      logger: log.logger,
    });
    const changesOf = (...setCookies: string[]): JarChange[] => {
      const jar = new RequestJar();
      return setCookies.map((sc) => jar.apply(sc, URL_ROOT, clock.now(), undefined));
    };
    let ticket = '';
    const resolve = async (): Promise<LiveSession> => {
      const r = await service.resolve([ticket]);
      assert.equal(r.state, 'live');
      return (r as { session: LiveSession }).session;
    };
    return {
      store,
      service,
      changesOf,
      resolve,
      cookies: async () => [...(await resolve()).cookies.values()].map((c) => `${c.key}=${c.value}`).sort(),
      async login() {
        const created = await service.commit({ session: undefined, changes: changesOf('app=1'), rotate: false });
        ticket = (created as { ticket: string }).ticket;
      },
    };
  }

  test('20 concurrent responses on one session: 2 writes (the first, then the other 19 together), every cookie kept', async () => {
    const s = setupOne();
    await s.login();
    const session = await s.resolve();
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, (_, i) => s.service.commit({ session, changes: s.changesOf(`c${i}=${i}`), rotate: false })),
    );
    assert.deepEqual(new Set(outcomes.map((o) => o.kind)), new Set(['updated']));
    assert.equal(s.store.updates, 2);
    assert.deepEqual(await s.cookies(), ['app=1', ...Array.from({ length: 20 }, (_, i) => `c${i}=${i}`)].sort());
  });

  test('the later of two responses setting one cookie wins, as in a browser; the last named user is kept', async () => {
    const s = setupOne();
    await s.login();
    const session = await s.resolve();
    await Promise.all([
      s.service.commit({ session, changes: s.changesOf('x=first'), rotate: false, user: 'u1' }),
      s.service.commit({ session, changes: s.changesOf('x=second'), rotate: false, user: 'u2' }),
      s.service.commit({ session, changes: s.changesOf('x=third'), rotate: false }),
    ]);
    assert.deepEqual(await s.cookies(), ['app=1', 'x=third']);
    assert.equal((await s.resolve()).meta.user, 'u2');
  });

  test('commits queued behind a write that failed are written on their own, from the store', async () => {
    const s = setupOne();
    await s.login();
    const session = await s.resolve();
    s.store.failures = 1;
    const first = s.service.commit({ session, changes: s.changesOf('a=1'), rotate: false });
    const queued = [s.service.commit({ session, changes: s.changesOf('b=2'), rotate: false }), s.service.commit({ session, changes: s.changesOf('c=3'), rotate: false })];
    await assert.rejects(first, StoreUnavailableError);
    assert.deepEqual((await Promise.all(queued)).map((o) => o.kind), ['updated', 'updated']);
    assert.deepEqual(await s.cookies(), ['app=1', 'b=2', 'c=3']);
  });

  test('commits queued behind a write to a session revoked meanwhile are all gone, and nothing is written back', async () => {
    const s = setupOne();
    await s.login();
    const session = await s.resolve();
    await s.service.revoke(session);
    const outcomes = await Promise.all([1, 2, 3].map((i) => s.service.commit({ session, changes: s.changesOf(`c${i}=${i}`), rotate: false })));
    assert.deepEqual(outcomes.map((o) => o.kind), ['gone', 'gone', 'gone']);
    assert.equal((await s.service.resolve([session.cached?.ticket as string])).state, 'revoked');
  });
});
