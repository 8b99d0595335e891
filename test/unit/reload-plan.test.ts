// planReload (config/reload.ts): which keys a reload changes, which it keeps, and what it
// reports (key paths only, never values).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planReload } from '../../src/config/reload.js';
import { configSchema, type ConfigInput } from '../../src/config/schema.js';

const SECRET_A = 'Plan-Secret-A-0123456789abcdefghijklmnopqr';
const SECRET_B = 'Plan-Secret-B-0123456789abcdefghijklmnopqr';
const base: ConfigInput = { upstream: 'http://127.0.0.1:3000', secrets: [SECRET_A], store: { kind: 'redis', url: 'redis://127.0.0.1:6379' } };
const config = (over: Partial<ConfigInput> = {}) => configSchema.parse({ ...base, ...over });

test('nothing changed: nothing reported', () => {
  assert.deepEqual(planReload(config(), config()), { config: config(), changed: [], kept: [] });
});

test('live keys take the new value and are reported by key path, secrets without their values', () => {
  const plan = planReload(config(), config({ secrets: [SECRET_B, SECRET_A], login: [{ path: '/login' }], session: { idleTimeout: '5m' }, log: { level: 'debug' } }));
  assert.deepEqual(plan.changed, ['log.level', 'login', 'secrets', 'session.idleTimeout']);
  assert.deepEqual(plan.kept, []);
  assert.deepEqual(plan.config.secrets, [SECRET_B, SECRET_A]);
  assert.equal(plan.config.session.idleTimeout, 300_000);
  assert.ok(!JSON.stringify({ changed: plan.changed, kept: plan.kept }).includes(SECRET_B));
});

test('listen, store, workers, mode, admin.listen, admin.token, maxHeaderSize, TLS on/off and redirectFrom keep their running value and are named', () => {
  const tls = { cert: '/a.crt', key: '/a.key' };
  const running = config({ tls: { ...tls, redirectFrom: ':8080' } });
  const plan = planReload(
    running,
    config({
      listen: ':9999',
      store: { kind: 'redis', url: 'redis://other:6379' },
      workers: 2,
      mode: 'report-only',
      admin: { listen: ':9090', token: 'admin-token-0123456789abcdefghijklmnopq' },
      limits: { maxHeaderSize: 2048, maxCookiesPerSession: 5 },
      tls: { cert: '/b.crt', key: '/b.key', redirectFrom: ':8081' },
    }),
  );
  assert.deepEqual(plan.kept, ['listen', 'store', 'workers', 'mode', 'admin.listen', 'admin.token', 'limits.maxHeaderSize', 'tls.redirectFrom']);
  assert.ok(!JSON.stringify(plan.kept).includes('admin-token-0123'), 'a key, never its value');
  assert.deepEqual(plan.config.listen, running.listen);
  assert.deepEqual(plan.config.store, running.store);
  assert.equal(plan.config.workers, 1);
  assert.equal(plan.config.mode, 'enforce');
  assert.equal(plan.config.admin.listen, null);
  assert.equal(plan.config.admin.token, null);
  assert.equal(plan.config.limits.maxHeaderSize, running.limits.maxHeaderSize);
  assert.equal(plan.config.limits.maxCookiesPerSession, 5, 'the other limits change');
  assert.equal(plan.config.tls?.cert, '/b.crt', 'new certificate files are live');
  assert.deepEqual(plan.config.tls?.redirectFrom, running.tls?.redirectFrom);
  assert.deepEqual(plan.changed, ['limits.maxCookiesPerSession', 'tls.cert', 'tls.key']);

  const off = planReload(running, config());
  assert.deepEqual(off.kept, ['tls (on or off)', 'tls.redirectFrom']);
  assert.deepEqual(off.config.tls, running.tls, 'TLS stays on');
  assert.deepEqual(planReload(config(), config({ tls })).kept, ['tls (on or off)']);
  assert.equal(planReload(config(), config({ tls })).config.tls, null, 'TLS stays off');
});
