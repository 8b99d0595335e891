// A real browser through coatcheck: Debian's Chromium, driven by playwright-core, logs in,
// opens a WebSocket from a page, exchanges messages, logs out in another tab, and sees its
// socket closed with 1008. Required (CI installs /usr/bin/chromium, see .ci/run).
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';
import { startCoatcheck } from '../helpers/coatcheck.js';
import { startWsApp, type WsApp } from '../helpers/websocket.js';

const CHROMIUM = '/usr/bin/chromium';

const PAGE = `<!doctype html><meta charset="utf-8"><title>live</title>
<script>
  window.received = [];
  window.closedWith = null;
  const ws = new WebSocket('ws://' + location.host + '/ws/echo');
  ws.onopen = () => ws.send('hello from chromium');
  ws.onmessage = (e) => { window.received.push(e.data); if (window.received.length === 1) ws.send('second message'); };
  ws.onclose = (e) => { window.closedWith = { code: e.code, reason: e.reason }; };
</script>`;

let app: WsApp;

before(async () => {
  app = await startWsApp();
  app.upstream.route('/login', (_req, res) => {
    res.setHeader('set-cookie', 'app_session=alice; Path=/; HttpOnly');
    res.setHeader('content-type', 'text/html');
    res.end('<!doctype html><title>logged in</title>welcome');
  });
  app.upstream.route('/live', (_req, res) => {
    res.setHeader('content-type', 'text/html');
    res.end(PAGE);
  });
  app.upstream.route('/logout', (_req, res) => {
    res.setHeader('set-cookie', 'app_session=; Path=/; Max-Age=0');
    res.setHeader('content-type', 'text/html');
    res.end('<!doctype html><title>bye</title>logged out');
  });
});
after(() => app?.close());

describe('a real browser', () => {
  test('Chromium logs in, talks over a WebSocket, logs out in another tab, and its socket is closed (1008)', { timeout: 120_000 }, async (t) => {
    const h = await startCoatcheck(app.origin, { logout: [{ path: '/logout' }], login: [{ path: '/login' }], shutdownTimeout: '300ms' });
    t.after(() => h.close());
    const profile = await mkdtemp(join(tmpdir(), 'coatcheck-chromium-'));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    // One hook, in order: the browser first, then its profile directory.
    t.after(async () => {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    });
    const base = `http://127.0.0.1:${h.port}`;
    const tab = context.pages()[0] ?? (await context.newPage());
    await tab.goto(`${base}/login`);
    const cookies = await context.cookies(base);
    assert.deepEqual(
      cookies.map((c) => c.name),
      ['coatcheck'],
      'the browser holds the ticket only',
    );

    await tab.goto(`${base}/live`);
    await tab.waitForFunction(() => (globalThis as unknown as { received: string[] }).received.length === 2);
    assert.deepEqual(await tab.evaluate(() => (globalThis as unknown as { received: string[] }).received), ['hello from chromium', 'second message']);
    // The app saw the jar's cookie on the browser's upgrade, and the browser's own headers.
    const seen = app.upgrades[app.upgrades.length - 1];
    assert.equal(seen?.headers.cookie, 'app_session=alice');
    assert.equal(seen?.headers.origin, base);

    const other = await context.newPage();
    const start = Date.now();
    await other.goto(`${base}/logout`);
    await tab.waitForFunction(() => (globalThis as unknown as { closedWith: unknown }).closedWith !== null);
    const closedWith = await tab.evaluate(() => (globalThis as unknown as { closedWith: { code: number; reason: string } }).closedWith);
    t.diagnostic(`Chromium: logout in another tab → socket closed seen by the page after ${Date.now() - start} ms (includes page round trips)`);
    assert.deepEqual(closedWith, { code: 1008, reason: 'session ended' });
    assert.deepEqual(
      (await context.cookies(base)).map((c) => c.name),
      [],
      'the ticket was cleared',
    );
  });
});
