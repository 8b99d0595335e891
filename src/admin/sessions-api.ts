// The sessions API of the admin listener: list a user's sessions, revoke them (by user, or one
// session and its family by the log id an operator read in a log line), revoke every session.
// Every call needs `Authorization: Bearer <admin.token>` (compared in constant time); JSON in
// and out; every call is an audit line with the caller's address. Served by server.ts.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { StoreUnavailableError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ListedSession, Revoked } from '../session/directory.js';

/** What the API acts through (the session directory: session/directory.ts). */
export interface SessionsBackend {
  list(user: string): Promise<ListedSession[]>;
  revokeUser(user: string): Promise<Revoked>;
  revokeLogId(logId: string): Promise<number>;
  revokeAll(): Promise<number>;
}

export interface SessionsApiDeps {
  /** admin.token; null: the API is off (404). */
  token: string | null;
  backend: SessionsBackend | undefined;
  logger: Logger;
  /** Told how many sessions a call revoked (for the metrics). */
  onRevoked?: (count: number) => void;
}

/** Largest request body read, in bytes. */
const MAX_BODY = 16 * 1024;
/** Longest user id or log id accepted. */
const MAX_ID = 256;

/** A request answered with a status and a message that says what was wrong. */
class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export function isSessionsPath(path: string): boolean {
  return path === '/sessions' || path.startsWith('/sessions/');
}

/** Handles a request whose path isSessionsPath(). */
export function handleSessions(req: IncomingMessage, res: ServerResponse, path: string, deps: SessionsApiDeps): void {
  const caller = req.socket.remoteAddress ?? 'unknown';
  const log = deps.logger;
  route(req, path, deps, caller).then(
    (body) => send(res, 200, body),
    (err: unknown) => {
      if (err instanceof ApiError) {
        send(res, err.status, { error: err.message }, err.headers);
        return;
      }
      if (err instanceof StoreUnavailableError) {
        log.warn({ event: 'admin.store_unavailable', caller, path, err: err.message }, 'a sessions API call failed: the store is unavailable');
        send(res, 503, { error: 'the session store is unavailable; nothing is known to be done, try again' });
        return;
      }
      log.error({ event: 'admin.failed', caller, path, err: (err as Error).message }, 'a sessions API call failed');
      send(res, 500, { error: 'internal error' });
    },
  );
}

async function route(req: IncomingMessage, path: string, deps: SessionsApiDeps, caller: string): Promise<unknown> {
  const { token, backend, logger: log } = deps;
  if (token === null || backend === undefined) throw new ApiError(404, 'the sessions API is off: set admin.token to turn it on');
  if (!authorized(req.headers.authorization, token)) {
    log.warn({ event: 'admin.unauthorized', caller, path, method: req.method }, 'a sessions API call without the right bearer token was refused');
    throw new ApiError(401, 'missing or wrong bearer token', { 'www-authenticate': 'Bearer realm="coatcheck-admin"' });
  }
  if (path === '/sessions') {
    allow(req, 'GET');
    const user = new URL(req.url ?? '/', 'http://admin').searchParams.get('user');
    const id = checkId(user, 'the query parameter "user"');
    const sessions = await backend.list(id);
    log.info({ event: 'admin.sessions_listed', caller, user: id, count: sessions.length }, "a user's sessions were listed");
    return { user: id, sessions };
  }
  if (path === '/sessions/revoke') {
    allow(req, 'POST');
    const body = await readJson(req);
    const keys = Object.keys(body);
    if (keys.length !== 1 || (keys[0] !== 'user' && keys[0] !== 'session')) {
      throw new ApiError(400, 'expected a JSON object with exactly one of "user" (a user id) or "session" (a log id)');
    }
    if (keys[0] === 'user') {
      const user = checkId(body.user, '"user"');
      const r = await backend.revokeUser(user);
      deps.onRevoked?.(r.revoked);
      log.warn({ event: 'admin.sessions_revoked', caller, user, count: r.revoked, sessions: r.logIds }, "a user's sessions were revoked by an admin call");
      return { revoked: r.revoked };
    }
    const session = checkId(body.session, '"session"');
    const revoked = await backend.revokeLogId(session);
    deps.onRevoked?.(revoked);
    log.warn({ event: 'admin.sessions_revoked', caller, session, count: revoked }, 'a session and its family were revoked by an admin call');
    return { revoked };
  }
  if (path === '/sessions/revoke-all') {
    allow(req, 'POST');
    await readJson(req, true);
    const time = await backend.revokeAll();
    const revokedBefore = new Date(time).toISOString();
    log.warn({ event: 'admin.sessions_revoked', caller, all: true, revokedBefore }, 'every session that existed was revoked by an admin call');
    return { revokedBefore };
  }
  throw new ApiError(404, `no such endpoint: ${path} (there are GET /sessions, POST /sessions/revoke, POST /sessions/revoke-all)`);
}

/** Constant-time comparison of the bearer token (digests of equal length, whatever was sent). */
function authorized(header: string | undefined, token: string): boolean {
  if (header === undefined) return false;
  const m = /^Bearer +(\S+) *$/i.exec(header);
  if (!m) return false;
  const given = createHash('sha256').update(m[1] as string, 'utf8').digest();
  const expected = createHash('sha256').update(token, 'utf8').digest();
  return timingSafeEqual(given, expected);
}

function allow(req: IncomingMessage, method: 'GET' | 'POST'): void {
  if (req.method !== method) throw new ApiError(405, `use ${method}`, { allow: method });
}

function checkId(value: unknown, what: string): string {
  if (typeof value !== 'string' || value.trim() === '') throw new ApiError(400, `${what} must be a non-empty string`);
  if (value.length > MAX_ID) throw new ApiError(400, `${what} is longer than ${MAX_ID} characters`);
  return value.trim();
}

/** The request's JSON object body; with `optional`, an empty body is {}. */
async function readJson(req: IncomingMessage, optional = false): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    if (bytes > MAX_BODY) throw new ApiError(413, `the body is larger than ${MAX_BODY} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '' && optional) return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ApiError(400, 'the body is not valid JSON');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ApiError(400, 'the body must be a JSON object');
  return value as Record<string, unknown>;
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}
