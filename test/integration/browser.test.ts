// A real browser through coatcheck (issue 13): Debian's Chromium, driven by playwright-core, in
// front of the demo app (examples/demo-app.mjs: a signed client-side session cookie). Logging
// in with the app's own form leaves the browser holding the ticket only (HttpOnly, SameSite,
// host-only); after logout a copied ticket replayed in a fresh browser gets the logged-out answer;
// a cookie set by the page's JavaScript reaches the app only when it is passthrough; a cross-site
// form POST from another origin does not carry the session; two tabs keep working across a
// renewal. Required (CI installs /usr/bin/chromium, see .ci/run).
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test, type TestContext } from 'node:test';
import { chromium, type Browser, type BrowserContext } from 'playwright-core';
import type { ConfigInput } from '../../src/config/schema.js';
import { FakeClock } from '../helpers/clock.js';
import { REPO_ROOT, startCoatcheck, type Harness } from '../helpers/coatcheck.js';
import { selfSigned } from '../helpers/tls.js';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

interface DemoApp {
  port: number;
  url: string;
  close(): Promise<void>;
}
const { startDemoApp } = (await import(pathToFileURL(join(REPO_ROOT.replace(/\/$/, ''), 'examples', 'demo-app.mjs')).href)) as {
  startDemoApp(options?: { host?: string; port?: number; secret?: string }): Promise<DemoApp>;
};

let app: DemoApp;
/** One Chromium for the suite (starting one takes seconds here); each test opens contexts in it. */
let chromiumBrowser: Browser;
before(async () => {
  app = await startDemoApp({ port: 0, secret: 'browser-test-secret' });
  // playwright gives the browser a fresh, empty profile of its own.
  chromiumBrowser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
});
after(async () => {
  await chromiumBrowser?.close();
  await app?.close();
});

/** A fresh browser context (its own cookies, like a separate browser), closed with the test. */
async function browser(t: TestContext): Promise<BrowserContext> {
  const context = await chromiumBrowser.newContext();
  t.after(() => context.close());
  return context;
}

async function coatcheck(t: TestContext, overrides: Partial<ConfigInput> = {}, clock?: FakeClock): Promise<Harness> {
  const h = await startCoatcheck(app.url, { logout: [{ path: '/logout' }], login: [{ path: '/login', methods: ['POST'] }], ...overrides }, clock ? { clock } : {});
  t.after(() => h.close());
  return h;
}

/** Logs in with the demo app's own form (the browser submits it, follows the 303). */
async function logIn(context: BrowserContext, base: string): Promise<void> {
  const tab = context.pages()[0] ?? (await context.newPage());
  await tab.goto(`${base}/`);
  await Promise.all([tab.waitForURL(`${base}/profile`), tab.click('button:has-text("Log in")')]);
  assert.match(await tab.textContent('h1') ?? '', /Hello, alice/);
}

describe('a real browser in front of the demo app', () => {
  test('login with the app form: the browser holds only the ticket (HttpOnly, SameSite=Lax, host-only); logout; a copied ticket replayed in a fresh browser gets the logged-out answer', { timeout: 120_000 }, async (t) => {
    const h = await coatcheck(t);
    const base = `http://localhost:${h.port}`;
    const context = await browser(t);
    await logIn(context, base);
    const cookies = await context.cookies(base);
    assert.deepEqual(cookies.map((c) => c.name), ['coatcheck'], 'the app’s demo_session and demo_prefs stay in the jar');
    const ticket = cookies[0] as (typeof cookies)[number];
    assert.equal(ticket.httpOnly, true);
    assert.equal(ticket.sameSite, 'Lax');
    assert.equal(ticket.domain, 'localhost', 'host-only');
    const tab = context.pages()[0] as NonNullable<ReturnType<BrowserContext['pages']>[number]>;
    // The page's own script cannot read it.
    assert.equal(await tab.evaluate('document.cookie'), '');

    await tab.goto(`${base}/logout`);
    assert.match(await tab.textContent('h1') ?? '', /Logged out/);
    assert.deepEqual((await context.cookies(base)).map((c) => c.name), [], 'the ticket is cleared');

    // An attacker copied the ticket before the logout: a fresh browser with it.
    const thief = await browser(t);
    await thief.addCookies([{ name: 'coatcheck', value: ticket.value, domain: 'localhost', path: '/', httpOnly: true, sameSite: 'Lax' }]);
    const stolen = (thief.pages()[0] ?? (await thief.newPage()));
    const response = await stolen.goto(`${base}/profile`);
    assert.equal(response?.status(), 401, 'refused at the proxy');
    assert.equal(h.logs.events('session.replay').length, 1);
  });

  test('over HTTPS (a self-signed certificate): the ticket is __Host-coatcheck, Secure, host-only, Path=/', { timeout: 120_000 }, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'coatcheck-browser-tls-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const { cert, key } = await selfSigned(dir, 'browser');
    // The default ticket cookie (__Host-coatcheck, Secure), served over TLS by coatcheck itself.
    const h = await coatcheck(t, { tls: { cert, key }, cookie: { name: '__Host-coatcheck', secure: true } });
    const base = `https://localhost:${h.port}`;
    const context = await chromiumBrowser.newContext({ ignoreHTTPSErrors: true });
    t.after(() => context.close());
    await logIn(context, base);
    const cookies = await context.cookies(base);
    assert.deepEqual(cookies.map((c) => c.name), ['__Host-coatcheck']);
    const ticket = cookies[0] as (typeof cookies)[number];
    assert.equal(ticket.secure, true);
    assert.equal(ticket.path, '/');
    assert.equal(ticket.domain, 'localhost', 'host-only: no Domain attribute (a __Host- cookie must have none)');
    assert.equal(ticket.httpOnly, true);
  });

  test('a cookie set by the page’s JavaScript reaches the app only when it is listed in passthrough', { timeout: 120_000 }, async (t) => {
    for (const [passthrough, expected] of [
      [[], ['demo_session', 'demo_prefs']],
      [['theme'], ['theme', 'demo_session', 'demo_prefs']],
    ] as const) {
      const h = await coatcheck(t, { session: { passthrough: [...passthrough] } });
      const base = `http://localhost:${h.port}`;
      const context = await browser(t);
      await logIn(context, base);
      const tab = context.pages()[0] as NonNullable<ReturnType<BrowserContext['pages']>[number]>;
      await tab.evaluate("document.cookie = 'theme=dark; path=/'");
      const seen = (await tab.evaluate(async () => (await fetch('/whoami')).json())) as { user: string | null; cookieNames: string[] };
      assert.equal(seen.user, 'alice');
      assert.deepEqual([...seen.cookieNames].sort(), [...expected].sort(), `passthrough ${JSON.stringify(passthrough)}`);
    }
  });

  test('a cross-site form POST from another origin does not carry the session (the ticket is SameSite=Lax)', { timeout: 120_000 }, async (t) => {
    const h = await coatcheck(t);
    const base = `http://localhost:${h.port}`;
    // The attacker's site: another site (127.0.0.1 is not localhost), a form that posts to the app.
    const evil: Server = createServer((_req, res) => {
      res.setHeader('content-type', 'text/html');
      res.end(`<!doctype html><form id="f" method="post" action="${base}/logout"></form><form id="g" method="post" action="${base}/login"><input name="user" value="bob"><input name="password" value="x"></form>`);
    });
    await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', resolve));
    t.after(() => {
      // The browser may still hold a keep-alive connection to it.
      evil.closeAllConnections();
      return new Promise<void>((resolve) => evil.close(() => resolve()));
    });
    const evilUrl = `http://127.0.0.1:${(evil.address() as AddressInfo).port}/`;

    const context = await browser(t);
    await logIn(context, base);
    const before = (await context.cookies(base))[0]?.value;
    const attacker = await context.newPage();
    await attacker.goto(evilUrl);
    // A cross-site POST to the logout: without the ticket it logs nobody out.
    await Promise.all([attacker.waitForURL(`${base}/`), attacker.evaluate("document.getElementById('f').submit()")]);
    const tab = context.pages()[0] as NonNullable<ReturnType<BrowserContext['pages']>[number]>;
    await tab.goto(`${base}/profile`);
    assert.match(await tab.textContent('h1') ?? '', /Hello, alice/, 'the session survived the cross-site POST');
    assert.equal((await context.cookies(base))[0]?.value, before);
    assert.equal(h.logs.events('session.logout').length, 0, 'no logout happened');
  });

  test('two tabs keep working across a renewal: the tab with the older ticket is handed the new one within the grace window', { timeout: 120_000 }, async (t) => {
    const clock = new FakeClock(Date.now());
    const h = await coatcheck(t, { session: { renewAfter: '5m', renewGrace: '1m' } }, clock);
    const base = `http://localhost:${h.port}`;
    const context = await browser(t);
    await logIn(context, base);
    const first = (await context.cookies(base))[0]?.value;
    const tab1 = context.pages()[0] as NonNullable<ReturnType<BrowserContext['pages']>[number]>;
    const tab2 = await context.newPage();
    await tab2.goto(`${base}/profile`);
    clock.advance(6 * 60_000);
    // Tab 1 renews; tab 2 then asks with whatever the browser holds, and both keep going.
    await tab1.goto(`${base}/profile`);
    const renewed = (await context.cookies(base))[0]?.value;
    assert.notEqual(renewed, first, 'renewed');
    const [r1, r2] = await Promise.all([tab1.evaluate(async () => (await fetch('/whoami')).json()), tab2.evaluate(async () => (await fetch('/whoami')).json())]);
    assert.equal((r1 as { user: string }).user, 'alice');
    assert.equal((r2 as { user: string }).user, 'alice');
    await tab2.reload();
    assert.match(await tab2.textContent('h1') ?? '', /Hello, alice/);
    assert.equal(h.logs.events('session.renewed').length, 1);
  });
});
