// A small "legacy" web app used by the coatcheck demo and its tests.
//
// It is deliberately plain JavaScript on node:http with no dependencies: it stands for the
// app coatcheck sits in front of, not for coatcheck itself.
//
// It keeps its login in a SIGNED CLIENT-SIDE cookie, the vulnerable pattern coatcheck exists
// to fix:
//
//   demo_session=<base64url(JSON {user, iat})>.<base64url(HMAC-SHA256(secret, payload))>
//
// The app keeps no server-side state, so "logout" can only ask the browser to forget the
// cookie (Max-Age=0). Whoever copied the cookie before logout can keep using it against the
// app directly, for as long as the secret stays the same. Behind coatcheck the browser never
// sees this cookie at all: it stays in the server-side jar, and logout voids the ticket.
//
// Routes:
//   GET  /         HTML home: login form, links
//   POST /login    form or JSON {user, password}; users alice/bob, any non-empty password
//   GET  /profile  "Hello, <user>" (HTML) or JSON with Accept: application/json; 401 without
//                  a valid demo_session
//   GET|POST /logout   clears demo_session and demo_prefs (Max-Age=0)
//   GET  /whoami   JSON {user: string|null, cookieNames: string[]} (for tests)
//
// Run directly: `node examples/demo-app.mjs` listens on 127.0.0.1:$DEMO_PORT (default 3000);
// DEMO_SECRET sets the signing secret (default: random per process).

import { createServer } from 'node:http';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

/** @typedef {import('node:http').IncomingMessage} IncomingMessage */
/** @typedef {import('node:http').ServerResponse} ServerResponse */
/** @typedef {import('node:http').Server} Server */

/**
 * @typedef {object} DemoAppOptions
 * @property {string} [host] interface to listen on (default 127.0.0.1)
 * @property {number} [port] port to listen on; 0 picks a free one (default 3000)
 * @property {string | Buffer} [secret] HMAC key for demo_session (default: 32 random bytes)
 */

/**
 * @typedef {object} DemoApp
 * @property {Server} server the node:http server
 * @property {number} port the bound port
 * @property {string} url base URL, e.g. http://127.0.0.1:3000
 * @property {() => Promise<void>} close stop listening and drop open connections
 */

export const SESSION_COOKIE = 'demo_session';
export const PREFS_COOKIE = 'demo_prefs';
export const USERS = Object.freeze(['alice', 'bob']);
/** Largest request body the app reads; anything bigger is answered 413. */
export const MAX_BODY_BYTES = 64 * 1024;

const SESSION_ATTRS = 'Path=/; HttpOnly; SameSite=Lax';
const PREFS_ATTRS = 'Path=/; SameSite=Lax';

class HttpError extends Error {
  /**
   * @param {number} status
   * @param {string} message
   */
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/**
 * @param {string} s
 * @returns {string}
 */
function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) =>
    c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : c === '"' ? '&quot;' : '&#39;',
  );
}

/**
 * Parses a Cookie header leniently: malformed pairs are skipped, never thrown on.
 * @param {string | undefined} header
 * @returns {Array<[string, string]>} name/value pairs in the order received
 */
function parseCookieHeader(header) {
  /** @type {Array<[string, string]>} */
  const out = [];
  if (!header) return out;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    let value = part.slice(eq + 1).trim();
    if (!name) continue;
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    out.push([name, value]);
  }
  return out;
}

/**
 * @param {string | Buffer} secret
 * @param {string} payload
 * @returns {string}
 */
function mac(secret, payload) {
  return createHmac('sha256', secret).update(payload).digest('base64url');
}

/**
 * @param {string | Buffer} secret
 * @param {string} user
 * @returns {string} the demo_session cookie value
 */
function signSession(secret, user) {
  const payload = Buffer.from(JSON.stringify({ user, iat: Math.floor(Date.now() / 1000) })).toString('base64url');
  return `${payload}.${mac(secret, payload)}`;
}

/**
 * Verifies a demo_session value. Note what is missing: no expiry, no server-side record, no
 * way to revoke. That is the legacy pattern on purpose.
 * @param {string | Buffer} secret
 * @param {string | undefined} value
 * @returns {string | null} the user, or null when missing, malformed or forged
 */
function verifySession(secret, value) {
  if (!value || value.length > 4096) return null;
  const dot = value.indexOf('.');
  if (dot <= 0 || dot !== value.lastIndexOf('.')) return null;
  const payload = value.slice(0, dot);
  const given = Buffer.from(value.slice(dot + 1), 'base64url');
  const expected = Buffer.from(mac(secret, payload), 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
  try {
    const data = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    if (data && typeof data === 'object' && typeof data.user === 'string' && USERS.includes(data.user)) {
      return data.user;
    }
  } catch {
    // a valid MAC over a payload that is not JSON: treat as no session
  }
  return null;
}

/**
 * Reads the request body as text, up to MAX_BODY_BYTES.
 * @param {IncomingMessage} req
 * @returns {Promise<string>}
 */
function readBody(req) {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > MAX_BODY_BYTES) {
      reject(new HttpError(413, 'request body too large'));
      return;
    }
    /** @type {Buffer[]} */
    const chunks = [];
    let size = 0;
    let done = false;
    req.on('data', (/** @type {Buffer} */ chunk) => {
      if (done) return;
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        done = true;
        chunks.length = 0;
        reject(new HttpError(413, 'request body too large'));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (done) return;
      done = true;
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', (err) => {
      if (done) return;
      done = true;
      reject(err);
    });
  });
}

/**
 * @param {IncomingMessage} req
 * @returns {boolean}
 */
function wantsJson(req) {
  return /\bapplication\/json\b/i.test(req.headers.accept ?? '');
}

/**
 * @param {ServerResponse} res
 * @param {number} status
 * @param {unknown} body
 * @param {Record<string, string | string[]>} [headers]
 */
function sendJson(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

/**
 * @param {ServerResponse} res
 * @param {number} status
 * @param {string} title
 * @param {string} bodyHtml already-escaped HTML
 * @param {Record<string, string | string[]>} [headers]
 */
function sendHtml(res, status, title, bodyHtml, headers = {}) {
  const text =
    `<!doctype html>\n<html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>\n` +
    `<body>\n${bodyHtml}\n</body></html>\n`;
  res.writeHead(status, {
    ...headers,
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

/**
 * @param {IncomingMessage} req
 * @param {ServerResponse} res
 * @param {number} status
 * @param {string} message
 */
function sendError(req, res, status, message) {
  if (wantsJson(req) || /\bjson\b/i.test(req.headers['content-type'] ?? '')) {
    sendJson(res, status, { error: message });
  } else {
    sendHtml(res, status, `${status}`, `<h1>${status}</h1>\n<p>${escapeHtml(message)}</p>\n<p><a href="/">Home</a></p>`);
  }
}

/**
 * @param {string | Buffer} secret
 * @returns {(req: IncomingMessage, res: ServerResponse) => Promise<void>}
 */
function createHandler(secret) {
  return async function handle(req, res) {
    /** @type {URL} */
    let url;
    try {
      url = new URL(req.url ?? '/', 'http://demo.invalid');
    } catch {
      throw new HttpError(400, 'malformed request target');
    }
    const method = req.method ?? 'GET';
    const isGet = method === 'GET' || method === 'HEAD';
    const cookies = parseCookieHeader(req.headers.cookie);
    const sessionValue = cookies.find(([name]) => name === SESSION_COOKIE)?.[1];
    const user = verifySession(secret, sessionValue);

    switch (url.pathname) {
      case '/': {
        if (!isGet) throw new HttpError(405, 'method not allowed');
        const who = user ? `<p>Signed in as <b>${escapeHtml(user)}</b>.</p>` : '<p>Not signed in.</p>';
        sendHtml(
          res,
          200,
          'Legacy demo app',
          `<h1>Legacy demo app</h1>\n${who}\n` +
            '<form method="post" action="/login">\n' +
            '  <label>User <input name="user" value="alice"></label>\n' +
            '  <label>Password <input name="password" type="password" value="secret"></label>\n' +
            '  <button type="submit">Log in</button>\n</form>\n' +
            '<form method="post" action="/logout"><button type="submit">Log out</button></form>\n' +
            '<ul><li><a href="/profile">Profile</a></li><li><a href="/whoami">Who am I (JSON)</a></li>' +
            '<li><a href="/logout">Log out (GET)</a></li></ul>',
        );
        return;
      }

      case '/login': {
        if (method !== 'POST') throw new HttpError(405, 'method not allowed');
        const type = (req.headers['content-type'] ?? '').toLowerCase();
        const isJson = /\bjson\b/.test(type);
        const raw = await readBody(req);
        /** @type {unknown} */
        let name;
        /** @type {unknown} */
        let password;
        if (isJson) {
          /** @type {unknown} */
          let data;
          try {
            data = JSON.parse(raw);
          } catch {
            throw new HttpError(400, 'malformed JSON body');
          }
          if (data && typeof data === 'object' && !Array.isArray(data)) {
            name = /** @type {Record<string, unknown>} */ (data).user;
            password = /** @type {Record<string, unknown>} */ (data).password;
          }
        } else if (type === '' || type.startsWith('application/x-www-form-urlencoded')) {
          const form = new URLSearchParams(raw);
          name = form.get('user');
          password = form.get('password');
        } else {
          throw new HttpError(415, 'send application/x-www-form-urlencoded or application/json');
        }
        if (typeof name !== 'string' || !USERS.includes(name) || typeof password !== 'string' || password === '') {
          throw new HttpError(401, 'unknown user or empty password');
        }
        const setCookie = [
          `${SESSION_COOKIE}=${signSession(secret, name)}; ${SESSION_ATTRS}`,
          `${PREFS_COOKIE}=theme=dark; ${PREFS_ATTRS}`,
        ];
        if (isJson) {
          sendJson(res, 200, { ok: true, user: name }, { 'set-cookie': setCookie });
        } else {
          res.writeHead(303, { location: '/profile', 'set-cookie': setCookie, 'content-length': 0 });
          res.end();
        }
        return;
      }

      case '/profile': {
        if (!isGet) throw new HttpError(405, 'method not allowed');
        if (!user) throw new HttpError(401, 'not logged in');
        const prefs = cookies.find(([n]) => n === PREFS_COOKIE)?.[1] ?? null;
        if (wantsJson(req)) {
          sendJson(res, 200, { user, greeting: `Hello, ${user}`, prefs });
        } else {
          sendHtml(
            res,
            200,
            'Profile',
            `<h1>Hello, ${escapeHtml(user)}</h1>\n<p>Preferences: ${escapeHtml(prefs ?? '(none)')}</p>\n` +
              '<p><a href="/">Home</a> · <a href="/logout">Log out</a></p>',
          );
        }
        return;
      }

      case '/logout': {
        if (!isGet && method !== 'POST') throw new HttpError(405, 'method not allowed');
        if (method === 'POST') await readBody(req); // drain (and bound) any form body
        // The app can only ask the browser to forget; it has nothing server-side to revoke.
        const setCookie = [
          `${SESSION_COOKIE}=; Max-Age=0; ${SESSION_ATTRS}`,
          `${PREFS_COOKIE}=; Max-Age=0; ${PREFS_ATTRS}`,
        ];
        if (wantsJson(req)) {
          sendJson(res, 200, { ok: true, loggedOut: true }, { 'set-cookie': setCookie });
        } else if (method === 'POST') {
          res.writeHead(303, { location: '/', 'set-cookie': setCookie, 'content-length': 0 });
          res.end();
        } else {
          sendHtml(res, 200, 'Logged out', '<h1>Logged out</h1>\n<p><a href="/">Home</a></p>', {
            'set-cookie': setCookie,
          });
        }
        return;
      }

      case '/whoami': {
        if (!isGet) throw new HttpError(405, 'method not allowed');
        sendJson(res, 200, { user, cookieNames: cookies.map(([n]) => n) });
        return;
      }

      default:
        throw new HttpError(404, 'not found');
    }
  };
}

/**
 * Starts the demo app.
 * @param {DemoAppOptions} [options]
 * @returns {Promise<DemoApp>}
 */
export function startDemoApp({ host = '127.0.0.1', port = 3000, secret } = {}) {
  const key = secret === undefined || secret.length === 0 ? randomBytes(32) : secret;
  const handle = createHandler(key);
  const server = createServer((req, res) => {
    req.on('error', () => {}); // a client that vanishes mid-body must not crash the app
    res.on('error', () => {});
    handle(req, res).catch((/** @type {unknown} */ err) => {
      const status = err instanceof HttpError ? err.status : 500;
      const message = err instanceof HttpError ? err.message : 'internal error';
      if (!(err instanceof HttpError)) console.error('demo-app: unexpected error:', err);
      if (res.headersSent || res.destroyed) {
        res.destroy();
        return;
      }
      // Stop reading an oversized body: answer, then let node close the connection
      // (Connection: close) instead of draining the rest.
      if (status === 413) res.setHeader('connection', 'close');
      try {
        sendError(req, res, status, message);
      } catch {
        res.destroy();
      }
    });
  });
  server.on('clientError', (_err, socket) => {
    // Malformed request line or headers: answer 400 if the socket still can, never throw.
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    else socket.destroy();
  });

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      server.on('error', (err) => console.error('demo-app: server error:', err));
      const address = server.address();
      const boundPort = typeof address === 'object' && address ? address.port : port;
      const urlHost = host.includes(':') ? `[${host}]` : host;
      resolve({
        server,
        port: boundPort,
        url: `http://${urlHost}:${boundPort}`,
        close: () =>
          new Promise((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}

/** @returns {boolean} whether this module is the process entry point */
function isMain() {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(entry)).href;
  } catch {
    return false;
  }
}

if (isMain()) {
  const port = Number(process.env.DEMO_PORT ?? 3000);
  const host = process.env.DEMO_HOST ?? '127.0.0.1';
  const app = await startDemoApp({ host, port, secret: process.env.DEMO_SECRET });
  console.log(`demo app (the "legacy" app) listening on ${app.url}`);
  const stop = () => {
    app.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
