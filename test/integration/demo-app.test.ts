// Tests of the demo "legacy" app (examples/demo-app.mjs) on its own, without coatcheck.
// They pin down the behaviour the demo walk-through relies on, including the vulnerability
// coatcheck is there to fix: the app's own cookie keeps working after logout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { request, type IncomingMessage, type Server } from 'node:http';
import { REPO_ROOT } from '../helpers/coatcheck.js';

interface DemoApp {
  server: Server;
  port: number;
  url: string;
  close(): Promise<void>;
}
interface DemoAppModule {
  startDemoApp(options?: { host?: string; port?: number; secret?: string | Buffer }): Promise<DemoApp>;
}


// The app is plain JS outside the TypeScript build, so it is loaded from the repo at run time.
const { startDemoApp } = (await import(
  pathToFileURL(join(REPO_ROOT.replace(/\/$/, ''), 'examples', 'demo-app.mjs')).href
)) as DemoAppModule;

async function start(t: { after(fn: () => Promise<void>): void }): Promise<DemoApp> {
  const app = await startDemoApp({ port: 0, secret: 'test-secret' });
  t.after(() => app.close());
  return app;
}

/** "name=value" pairs of the Set-Cookie headers, without attributes. */
function cookiePairs(res: Response): Map<string, { value: string; attrs: string[] }> {
  const out = new Map<string, { value: string; attrs: string[] }>();
  for (const line of res.headers.getSetCookie()) {
    const [pair = '', ...attrs] = line.split(';').map((s) => s.trim());
    const eq = pair.indexOf('=');
    out.set(pair.slice(0, eq), { value: pair.slice(eq + 1), attrs: attrs.map((a) => a.toLowerCase()) });
  }
  return out;
}

async function loginForm(app: DemoApp, user = 'alice', password = 'pw'): Promise<Response> {
  return fetch(`${app.url}/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ user, password }).toString(),
    redirect: 'manual',
  });
}

/** Logs in and returns the Cookie header a browser would send afterwards. */
async function loggedInCookie(app: DemoApp, user = 'alice'): Promise<string> {
  const res = await loginForm(app, user);
  await res.arrayBuffer();
  assert.equal(res.status, 303);
  return [...cookiePairs(res)].map(([name, { value }]) => `${name}=${value}`).join('; ');
}

function getProfile(app: DemoApp, cookie?: string, accept = 'application/json'): Promise<Response> {
  const headers: Record<string, string> = { accept };
  if (cookie !== undefined) headers.cookie = cookie;
  return fetch(`${app.url}/profile`, { headers });
}

/** A raw request (node:http), for bodies fetch would not send the way we need. */
function rawRequest(
  app: DemoApp,
  options: { method: string; path: string; headers: Record<string, string | number>; chunks: Buffer[] },
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: app.port, method: options.method, path: options.path, headers: options.headers });
    let answered = false;
    req.on('response', (res: IncomingMessage) => {
      answered = true;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    // The app may close the connection before it has read the whole (oversized) body; a write
    // error after the answer arrived is expected, before it is a failure.
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    for (const chunk of options.chunks) req.write(chunk);
    req.end();
  });
}

test('form login answers 303 to /profile and sets both cookies', async (t) => {
  const app = await start(t);
  const res = await loginForm(app);
  await res.arrayBuffer();
  assert.equal(res.status, 303);
  assert.equal(res.headers.get('location'), '/profile');
  const cookies = cookiePairs(res);
  assert.deepEqual([...cookies.keys()].sort(), ['demo_prefs', 'demo_session']);

  const session = cookies.get('demo_session')!;
  assert.match(session.value, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/, 'base64url(json).base64url(hmac-sha256)');
  const payload = JSON.parse(Buffer.from(session.value.split('.')[0]!, 'base64url').toString('utf8')) as {
    user: string;
    iat: number;
  };
  assert.equal(payload.user, 'alice');
  assert.equal(typeof payload.iat, 'number');
  for (const attr of ['httponly', 'path=/', 'samesite=lax']) assert.ok(session.attrs.includes(attr), attr);

  assert.equal(cookies.get('demo_prefs')!.value, 'theme=dark');
});

test('JSON login answers JSON and sets both cookies', async (t) => {
  const app = await start(t);
  const res = await fetch(`${app.url}/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user: 'bob', password: 'hunter2' }),
  });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { ok: true, user: 'bob' });
  assert.deepEqual([...cookiePairs(res).keys()].sort(), ['demo_prefs', 'demo_session']);
});

test('login is refused (401, no cookie) for an unknown user or an empty password', async (t) => {
  const app = await start(t);
  for (const [user, password] of [
    ['eve', 'pw'],
    ['alice', ''],
    ['', 'pw'],
  ] as const) {
    const res = await loginForm(app, user, password);
    await res.arrayBuffer();
    assert.equal(res.status, 401, `${user}/${password}`);
    assert.deepEqual(res.headers.getSetCookie(), []);
  }
  const res = await fetch(`${app.url}/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user: 'alice', password: 42 }),
  });
  assert.equal(res.status, 401);
  assert.deepEqual(await res.json(), { error: 'unknown user or empty password' });
});

test('profile answers with the user when the session cookie is valid', async (t) => {
  const app = await start(t);
  const cookie = await loggedInCookie(app, 'alice');

  const json = await getProfile(app, cookie);
  assert.equal(json.status, 200);
  assert.match(json.headers.get('content-type') ?? '', /^application\/json/);
  const body = (await json.json()) as { user: string; greeting: string; prefs: string };
  assert.equal(body.user, 'alice');
  assert.equal(body.greeting, 'Hello, alice');
  assert.equal(body.prefs, 'theme=dark');

  const html = await getProfile(app, cookie, 'text/html');
  assert.equal(html.status, 200);
  assert.match(html.headers.get('content-type') ?? '', /^text\/html/);
  assert.match(await html.text(), /Hello, alice/);
});

test('profile without a session cookie is 401', async (t) => {
  const app = await start(t);
  const res = await getProfile(app);
  assert.equal(res.status, 401);
  await res.arrayBuffer();
  const onlyPrefs = await getProfile(app, 'demo_prefs=theme=dark');
  assert.equal(onlyPrefs.status, 401);
  await onlyPrefs.arrayBuffer();
});

test('a tampered or forged session cookie is 401', async (t) => {
  const app = await start(t);
  const cookie = await loggedInCookie(app, 'alice');
  const value = /demo_session=([^;]+)/.exec(cookie)![1]!;
  const [payload, mac] = value.split('.') as [string, string];

  const flippedMac = `${payload}.${mac.startsWith('A') ? 'B' : 'A'}${mac.slice(1)}`;
  const otherUser = Buffer.from(JSON.stringify({ user: 'bob', iat: 0 })).toString('base64url');
  const badValues = [
    flippedMac,
    `${otherUser}.${mac}`, // payload swapped, signature kept
    `${payload}.`,
    payload,
    `${payload}.${mac}.extra`,
    '',
  ];
  for (const bad of badValues) {
    const res = await getProfile(app, `demo_session=${bad}`);
    assert.equal(res.status, 401, bad);
    await res.arrayBuffer();
  }

  // Signed with another secret: another instance of the app does not accept it either.
  const other = await startDemoApp({ port: 0, secret: 'another-secret' });
  t.after(() => other.close());
  const foreign = await getProfile(other, cookie);
  assert.equal(foreign.status, 401);
  await foreign.arrayBuffer();
});

test('logout clears both cookies with Max-Age=0 (GET and POST)', async (t) => {
  const app = await start(t);
  const cookie = await loggedInCookie(app);

  const get = await fetch(`${app.url}/logout`, { headers: { cookie } });
  assert.equal(get.status, 200);
  await get.arrayBuffer();
  const post = await fetch(`${app.url}/logout`, { method: 'POST', headers: { cookie }, redirect: 'manual' });
  assert.equal(post.status, 303);
  assert.equal(post.headers.get('location'), '/');
  await post.arrayBuffer();

  for (const res of [get, post]) {
    const cleared = cookiePairs(res);
    assert.deepEqual([...cleared.keys()].sort(), ['demo_prefs', 'demo_session']);
    for (const [name, { value, attrs }] of cleared) {
      assert.equal(value, '', name);
      assert.ok(attrs.includes('max-age=0'), `${name} has Max-Age=0`);
      assert.ok(attrs.includes('path=/'), `${name} has Path=/`);
    }
  }
});

test('VULNERABILITY (on purpose): a cookie captured before logout still works against the app', async (t) => {
  // This is what the demo shows: the app keeps no server-side session, so logout only asks
  // the browser to forget the cookie. A copy taken before logout stays valid. Behind
  // coatcheck the browser never holds this cookie, and the ticket it does hold is revoked.
  const app = await start(t);
  const captured = await loggedInCookie(app, 'alice');

  const logout = await fetch(`${app.url}/logout`, { headers: { cookie: captured } });
  assert.equal(logout.status, 200);
  await logout.arrayBuffer();

  const replay = await getProfile(app, captured);
  assert.equal(replay.status, 200);
  assert.equal(((await replay.json()) as { user: string }).user, 'alice');
});

test('whoami reports the user and the names of the cookies received', async (t) => {
  const app = await start(t);
  const anonymous = await fetch(`${app.url}/whoami`);
  assert.deepEqual(await anonymous.json(), { user: null, cookieNames: [] });

  const cookie = await loggedInCookie(app, 'bob');
  const res = await fetch(`${app.url}/whoami`, { headers: { cookie: `${cookie}; _ga=GA1.2.3` } });
  assert.deepEqual(await res.json(), { user: 'bob', cookieNames: ['demo_session', 'demo_prefs', '_ga'] });
});

test('home page renders the login form', async (t) => {
  const app = await start(t);
  const res = await fetch(`${app.url}/`);
  assert.equal(res.status, 200);
  const html = await res.text();
  assert.match(html, /<form method="post" action="\/login">/);
  assert.match(html, /href="\/profile"/);
});

test('bad input is answered, never crashes the app', async (t) => {
  const app = await start(t);

  const badJson = await fetch(`${app.url}/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{"user": "alice", ',
  });
  assert.equal(badJson.status, 400);
  assert.deepEqual(await badJson.json(), { error: 'malformed JSON body' });

  for (const body of ['null', '[]', '"alice"', '42']) {
    const res = await fetch(`${app.url}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    assert.equal(res.status, 401, body);
    await res.arrayBuffer();
  }

  const wrongType = await fetch(`${app.url}/login`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' });
  assert.equal(wrongType.status, 415);
  await wrongType.arrayBuffer();

  // Oversized body with a Content-Length: refused before reading.
  const big = Buffer.alloc(100 * 1024, 'a');
  const declared = await rawRequest(app, {
    method: 'POST',
    path: '/login',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': big.length },
    chunks: [big],
  });
  assert.equal(declared.status, 413);

  // Oversized chunked body (no Content-Length): refused once 64KB have been read.
  const chunked = await rawRequest(app, {
    method: 'POST',
    path: '/login',
    headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
    chunks: [Buffer.alloc(40 * 1024, ' '), Buffer.alloc(40 * 1024, ' ')],
  });
  assert.equal(chunked.status, 413);

  // Malformed cookie headers are ignored, not thrown on.
  for (const cookie of ['demo_session', '=;;=;', 'demo_session=%E0%A4%A; x', 'demo_session="unterminated', ';'.repeat(1000)]) {
    const res = await fetch(`${app.url}/whoami`, { headers: { cookie } });
    assert.equal(res.status, 200, cookie);
    assert.equal(((await res.json()) as { user: unknown }).user, null);
  }
  // A payload that is not JSON behind a valid-looking signature shape.
  const garbage = await getProfile(app, `demo_session=${Buffer.from('not json').toString('base64url')}.${'A'.repeat(43)}`);
  assert.equal(garbage.status, 401);
  await garbage.arrayBuffer();

  const notFound = await fetch(`${app.url}/nope`);
  assert.equal(notFound.status, 404);
  await notFound.arrayBuffer();
  const wrongMethod = await fetch(`${app.url}/profile`, { method: 'DELETE' });
  assert.equal(wrongMethod.status, 405);
  await wrongMethod.arrayBuffer();

  // Still alive and serving.
  const cookie = await loggedInCookie(app);
  const profile = await getProfile(app, cookie);
  assert.equal(profile.status, 200);
  await profile.arrayBuffer();
});
