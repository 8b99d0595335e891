// The minimal reference: the least a session proxy must do, and nothing more.
//   - read the ticket cookie (`mref=<sid>`, a random id, unsigned);
//   - one Redis GET of the jar, stored as JSON (`[["name","value"],...]`: ~600 bytes for the
//     bench's five-cookie jar), JSON.parse'd on every request to build the upstream Cookie
//     header ("a=1; b=2"), which replaces the client's;
//   - take the upstream Set-Cookies out of the response; if there are any, merge their
//     name=value pairs into the jar (one SET) and, for a new session, answer one ticket cookie;
//   - on /logout, DEL the jar before forwarding and clear the ticket.
// No signing, no encryption, no RFC 6265 matching (path, domain, expiry, Secure), no idle or
// absolute timeouts, no rotation, no tombstones, no logging. ioredis with its defaults (one
// command per round trip, no auto-pipelining).
// Forwarding: with `coatcheck`, coatcheck's own engine (src/proxy/engine.ts: `Pool#dispatch`
// with a handler object, the body written straight to the client) — THE reference of the bench
// ("minimal reference (engine)"): coatcheck against it is what the session features alone cost,
// both proxies forwarding the same way. With `request`, undici's `Pool#request()` and
// `stream.pipeline()`, as a user might write it: a second, slower line kept for comparison.
//   node minimal-proxy.js <upstream origin> <redis url> [request|coatcheck]
import { randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream';
import { Redis } from 'ioredis';
import { UndiciEngine } from '../../src/proxy/engine.js';
import { badGateway, createPool, createServer, hasBody, HOP_BY_HOP, requestHeaders, serve } from './forward.js';

const [origin, redisUrl, engineName = 'request'] = process.argv.slice(2);
if (!origin || !redisUrl || (engineName !== 'request' && engineName !== 'coatcheck')) {
  throw new Error('usage: minimal-proxy.js <upstream origin> <redis url> [request|coatcheck]');
}
const pool = createPool(origin);
// The same pool settings as coatcheck's defaults (upstream.timeout 30 s).
const engine = engineName === 'coatcheck' ? new UndiciEngine({ origin, timeout: 30_000 }) : undefined;
const redis = new Redis(redisUrl);
redis.on('error', () => undefined);

const TICKET = 'mref';
const KEY = 'minimal:';
const DROP_REQUEST = new Set(['cookie']);

function ticketOf(cookie: string | undefined): string | undefined {
  if (cookie === undefined) return undefined;
  for (const part of cookie.split(';')) {
    const p = part.trim();
    if (p.startsWith(`${TICKET}=`)) return p.slice(TICKET.length + 1) || undefined;
  }
  return undefined;
}

type Jar = Array<[string, string]>;

/** The Cookie header for the upstream, from the stored JSON jar (parsed on every request). */
function cookieHeader(json: string): string {
  const jar = JSON.parse(json) as Jar;
  let out = '';
  for (const [n, v] of jar) out += out === '' ? `${n}=${v}` : `; ${n}=${v}`;
  return out;
}

/** The jar (JSON) with the response's Set-Cookies merged into it: a value replaces, Max-Age=0 or an empty value deletes. */
function applySetCookies(json: string | null, setCookies: readonly string[]): Jar {
  const pairs = new Map<string, string>(json ? (JSON.parse(json) as Jar) : []);
  for (const sc of setCookies) {
    const semi = sc.indexOf(';');
    const pair = semi === -1 ? sc : sc.slice(0, semi);
    const eq = pair.indexOf('=');
    if (eq <= 0) continue;
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    if (value === '' || /max-age=0/i.test(sc)) pairs.delete(name);
    else pairs.set(name, value);
  }
  return [...pairs];
}

function unavailable(res: import('node:http').ServerResponse): void {
  res.writeHead(503, { 'content-type': 'text/plain', 'content-length': 12 });
  res.end('unavailable\n');
}

const server = createServer((req, res) => {
  void handle(req, res).catch(() => (res.headersSent ? res.destroy() : unavailable(res)));
});

async function handle(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): Promise<void> {
  const url = req.url ?? '/';
  const sid = ticketOf(req.headers.cookie);
  const jar = sid === undefined ? null : await redis.get(KEY + sid);
  const live = jar !== null;
  const logout = url === '/logout' || url.startsWith('/logout?');
  if (logout && live) await redis.del(KEY + (sid as string));

  const headers = requestHeaders(req, DROP_REQUEST);
  if (jar) headers.push('cookie', cookieHeader(jar));
  const upstream = await forward(req.method ?? 'GET', url, headers, hasBody(req) ? req : null, res);
  if (!upstream) return;
  const out: string[] = [];
  const setCookies: string[] = [];
  for (let i = 0; i < upstream.headers.length; i += 2) {
    const lower = (upstream.headers[i] as string).toLowerCase();
    if (HOP_BY_HOP.has(lower)) continue;
    if (lower === 'set-cookie') setCookies.push(upstream.headers[i + 1] as string);
    else out.push(upstream.headers[i] as string, upstream.headers[i + 1] as string);
  }
  if (setCookies.length > 0 || logout) {
    try {
      await persist(sid, jar, live, logout, setCookies, out);
    } catch (err) {
      upstream.discard();
      throw err;
    }
  }
  res.writeHead(upstream.status, out);
  upstream.send();
}

const kForwarding = Symbol('forwarding');
type ResponseWithForwarding = import('node:http').ServerResponse & { [kForwarding]?: { abort(): void } };
function onClose(this: ResponseWithForwarding): void {
  if (!this.writableFinished) this[kForwarding]?.abort();
}

interface Forwarded {
  status: number;
  headers: string[];
  send(): void;
  discard(): void;
}

/** Forwards with the chosen engine; answers 502 itself (and gives undefined) when the app cannot be reached. */
async function forward(
  method: string,
  path: string,
  headers: string[],
  body: import('node:http').IncomingMessage | null,
  res: import('node:http').ServerResponse,
): Promise<Forwarded | undefined> {
  try {
    if (engine) {
      const forwarding = engine.forward({ method, path, headers, body });
      // As coatcheck does: one shared listener, the forwarding kept on the response.
      (res as ResponseWithForwarding)[kForwarding] = forwarding;
      res.on('close', onClose);
      const r = await forwarding.response;
      return { status: r.status, headers: r.headers, send: () => r.body.sendTo(res, () => undefined, undefined), discard: () => r.body.discard() };
    }
    const r = await pool.request({ method: method as 'GET', path, headers, body, responseHeaders: 'raw' });
    return { status: r.statusCode, headers: r.headers as unknown as string[], send: () => pipeline(r.body, res, () => undefined), discard: () => r.body.destroy() };
  } catch {
    badGateway(res);
    return undefined;
  }
}

/** The response side: the jar update (or a new session) and the one ticket cookie. */
async function persist(sid: string | undefined, jar: string | null, live: boolean, logout: boolean, setCookies: string[], out: string[]): Promise<void> {
  if (setCookies.length > 0) {
    if (live && !logout) {
      await redis.set(KEY + (sid as string), JSON.stringify(applySetCookies(jar, setCookies)));
    } else {
      const next = applySetCookies(null, setCookies);
      if (next.length > 0) {
        const newSid = randomBytes(32).toString('base64url');
        await redis.set(KEY + newSid, JSON.stringify(next));
        out.push('set-cookie', `${TICKET}=${newSid}; Path=/; HttpOnly; SameSite=Lax`);
      } else if (logout && sid !== undefined) {
        out.push('set-cookie', `${TICKET}=; Path=/; Max-Age=0`);
      }
    }
  } else if (logout && sid !== undefined) {
    out.push('set-cookie', `${TICKET}=; Path=/; Max-Age=0`);
  }
}

serve(server, async () => {
  await pool.close();
  await engine?.close();
  redis.disconnect();
});
