// The "legacy app" every bench target forwards to: a tiny keep-alive HTTP server, run in its
// own process. It keeps its session in client-side cookies, like the apps coatcheck is for.
//
//   POST /login?jar=hot     sets 5 cookies, 560 bytes of name=value (~700 bytes of Set-Cookie):
//                           a typical legacy jar (a signed client-side session of ~400
//                           characters, a CSRF token, prefs, lang, a remember-me token)
//   POST /login?jar=small3  sets 3 small cookies (~150 bytes of name=value): the jar whose
//                           Redis footprint the bench measures
//   GET  /page              ~200-byte HTML body, no Set-Cookie (the hot path)
//   GET  /update            the same body, and a new value for the `prefs` cookie
//   GET  /logout            clears app_session, csrf_token and remember_token (Max-Age=0)
//   GET  /__stats           counters (bench bookkeeping, never under load): per path, how many
//                           requests arrived and how many carried the app_session cookie
//
// Prints {"event":"ready","port":N} once listening; SIGTERM closes it.
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

const PAGE = Buffer.from(
  '<!doctype html><html><head><title>Account</title></head><body><h1>Your account</h1>' +
    '<p>Everything is in order. This page is about two hundred bytes long, like a tiny fragment.</p></body></html>\n',
);

const COMMON = 'Path=/; SameSite=Lax';

function loginCookies(kind: string): string[] {
  if (kind === 'small3') {
    // A Flask-style signed session (payload.timestamp.signature) and two more small cookies.
    const session = `eyJ1c2VyIjoiYWxpY2UifQ.${randomBytes(6).toString('base64url')}.${randomBytes(20).toString('base64url')}`;
    return [`app_session=${session}; ${COMMON}; HttpOnly`, `csrf_token=${randomBytes(32).toString('base64url')}; ${COMMON}`, `lang=en; ${COMMON}`];
  }
  // The five-cookie jar of a typical legacy app: a Rails/Flask-style client-side session of
  // ~400 characters (the app's whole login state), a CSRF token, prefs, lang and a remember-me
  // token: 412 + 54 + 31 + 7 + 56 = 560 bytes of name=value.
  return [
    `app_session=${randomBytes(300).toString('base64url')}; ${COMMON}; HttpOnly`,
    `csrf_token=${randomBytes(32).toString('base64url')}; ${COMMON}`,
    `prefs=theme.dark-lang.en-tz.utc; ${COMMON}; Max-Age=31536000`,
    `lang=en; ${COMMON}`,
    `remember_token=1042.${randomBytes(27).toString('base64url')}; ${COMMON}; HttpOnly; Max-Age=1209600`,
  ];
}

interface Counter {
  total: number;
  withSession: number;
}
const stats = new Map<string, Counter>();
let updates = 0;

function count(path: string, req: IncomingMessage): void {
  let c = stats.get(path);
  if (!c) {
    c = { total: 0, withSession: 0 };
    stats.set(path, c);
  }
  c.total += 1;
  const cookie = req.headers.cookie;
  if (cookie !== undefined && cookie.includes('app_session=')) c.withSession += 1;
}

function page(res: ServerResponse, status: number, setCookies: string[] | undefined): void {
  const headers: Record<string, string | number | string[]> = {
    'content-type': 'text/html; charset=utf-8',
    'content-length': PAGE.length,
  };
  if (setCookies) headers['set-cookie'] = setCookies;
  res.writeHead(status, headers);
  res.end(PAGE);
}

const server = createServer((req, res) => {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  if (path === '/__stats') {
    const body = JSON.stringify({ paths: Object.fromEntries(stats), updates });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
    return;
  }
  count(path, req);
  switch (path) {
    case '/login': {
      const kind = q === -1 ? 'hot' : (new URLSearchParams(url.slice(q + 1)).get('jar') ?? 'hot');
      // Consume the (normally empty) form body before answering.
      req.resume();
      req.on('end', () => page(res, 200, loginCookies(kind)));
      return;
    }
    case '/update':
      updates += 1;
      page(res, 200, [`prefs=theme.dark-lang.en-v${updates}; ${COMMON}; Max-Age=31536000`]);
      return;
    case '/logout':
      page(res, 200, [`app_session=; ${COMMON}; Max-Age=0`, `csrf_token=; ${COMMON}; Max-Age=0`, `remember_token=; ${COMMON}; Max-Age=0`]);
      return;
    default:
      page(res, 200, undefined);
  }
});
// Longer than any proxy's idle keep-alive towards it, so no proxy reuses a socket being closed.
server.keepAliveTimeout = 75_000;
server.headersTimeout = 80_000;

const sockets = new Set<Socket>();
server.on('connection', (s: Socket) => {
  sockets.add(s);
  s.on('close', () => sockets.delete(s));
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ event: 'ready', port })}\n`);
});

function stop(): void {
  server.close(() => process.exit(0));
  for (const s of sockets) s.destroy();
  setTimeout(() => process.exit(0), 1000);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
