// Configuration values that go into a response header (issue 10 §5): a non-ASCII
// invalidSession.redirect used to pass check-config and then answer every rejected ticket with
// 500 (Node refuses a header value above U+00FF). It is now percent-encoded when the
// configuration is loaded, so the reject is the 303 that was configured.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { send } from '../helpers/client.js';
import { startCoatcheck, TEST_SECRET } from '../helpers/coatcheck.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { loadConfigText } from '../../src/config/load.js';

describe('invalidSession.redirect with non-ASCII characters', () => {
  let upstream: Upstream;
  before(async () => {
    upstream = await startUpstream();
  });
  after(async () => {
    await upstream?.close();
  });

  const cases: { written: string; location: string }[] = [
    { written: '/ログイン', location: '/%E3%83%AD%E3%82%B0%E3%82%A4%E3%83%B3' },
    { written: '/connexion?raison=expirée', location: '/connexion?raison=expir%C3%A9e' },
    { written: 'https://sso.example.com/anmelden/ü', location: 'https://sso.example.com/anmelden/%C3%BC' },
  ];
  for (const { written, location } of cases) {
    test(`${JSON.stringify(written)}: check-config accepts it, and a rejected ticket gets 303 to ${location}`, async (t) => {
      const h = await startCoatcheck(upstream.origin, { invalidSession: { expired: 'reject', redirect: written } });
      t.after(() => h.close());
      const before = upstream.received.length;
      const r = await send(h.port, '/account', { headers: { cookie: 'coatcheck=v1.not-a-ticket.at-all' } });
      // Before the fix: 500 for "/ログイン" (Node refuses the header value).
      assert.equal(r.status, 303, `got ${r.status} ${r.body}`);
      assert.equal(r.headers.location, location);
      assert.equal(decodeURI(r.headers.location as string), written);
      assert.equal(upstream.received.length, before, 'a rejected ticket never reaches the app');
      assert.deepEqual(h.logs.events('request.failed'), []);

      // What check-config reads and prints: the value as it is sent.
      const text = [`upstream: "${upstream.origin}"`, `secrets: ["${TEST_SECRET}"]`, 'invalidSession:', '  expired: reject', `  redirect: "${written}"`].join('\n');
      assert.equal(loadConfigText(text, 'redirect.yaml', {}).config.invalidSession.redirect, location);
    });
  }
});
