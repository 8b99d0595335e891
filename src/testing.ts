// `coatcheck/testing`: what a test of an app behind coatcheck needs. A client that keeps cookies
// like a browser (RFC 6265 through tough-cookie: domain, path, expiry, Secure, the __Host-
// prefix; loopback counts as a secure context, as in browsers), a recorder for coatcheck's log
// lines that picks out the security events (replays, forged tickets, ...), and a dummy upstream.
import { once } from 'node:events';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { CookieJar } from 'tough-cookie';

export interface ClientResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** The Set-Cookie values of this response, as received. */
  setCookies: string[];
}

export interface ClientRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

/**
 * A browser's cookie handling for one base URL: every response's Set-Cookie goes into its jar,
 * every request carries the cookies the jar holds for its URL. Redirects are not followed (the
 * test sees each answer). `fork()` copies the jar: a second client holding the same cookies,
 * as an attacker holding a copied ticket would.
 */
export class CookieClient {
  readonly jar: CookieJar;
  private readonly ca: string | Buffer | undefined;

  /** `ca`: the certificate to trust for https (a self-signed one in tests). */
  constructor(
    readonly baseUrl: string,
    options: { jar?: CookieJar; ca?: string | Buffer } = {},
  ) {
    this.jar = options.jar ?? new CookieJar();
    this.ca = options.ca;
  }

  get(path: string, headers: Record<string, string> = {}): Promise<ClientResponse> {
    return this.request(path, { headers });
  }

  post(path: string, body: string | Buffer = '', headers: Record<string, string> = {}): Promise<ClientResponse> {
    return this.request(path, { method: 'POST', body, headers });
  }

  async request(path: string, req: ClientRequest = {}): Promise<ClientResponse> {
    const url = new URL(path, this.baseUrl);
    const cookie = await this.jar.getCookieString(url.href);
    const headers: Record<string, string> = { ...(req.headers ?? {}) };
    if (cookie) headers.cookie = headers.cookie ? `${cookie}; ${headers.cookie}` : cookie;
    const res = await exchange(url, { method: req.method ?? 'GET', headers, body: req.body, ca: this.ca });
    for (const sc of res.setCookies) {
      // A cookie the jar refuses (a bad domain, a __Host- violation) is dropped, as a browser drops it.
      await this.jar.setCookie(sc, url.href, { ignoreError: true });
    }
    return res;
  }

  /** The value of the cookie `name` the jar would send to `path` (default "/"), if any. */
  async cookie(name: string, path = '/'): Promise<string | undefined> {
    const cookies = await this.jar.getCookies(new URL(path, this.baseUrl).href);
    return cookies.find((c) => c.key === name)?.value;
  }

  /** A second client with a copy of this one's cookies (later changes are not shared). */
  async fork(): Promise<CookieClient> {
    return new CookieClient(this.baseUrl, { jar: await this.jar.clone(), ...(this.ca ? { ca: this.ca } : {}) });
  }
}

function exchange(
  url: URL,
  opts: { method: string; headers: Record<string, string>; body: string | Buffer | undefined; ca: string | Buffer | undefined },
): Promise<ClientResponse> {
  return new Promise((resolve, reject) => {
    const options = { method: opts.method, headers: opts.headers, agent: false as const };
    const onResponse = (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), setCookies: res.headers['set-cookie'] ?? [] }),
      );
    };
    const req =
      url.protocol === 'https:'
        ? httpsRequest(url, { ...options, ...(opts.ca ? { ca: opts.ca } : {}) }, onResponse)
        : httpRequest(url, options, onResponse);
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** One of coatcheck's JSON log lines. */
export type LogLine = Record<string, unknown> & { level?: string; event?: string; msg?: string };

/**
 * A security event as logged: `class` is what it is counted as in
 * coatcheck_security_events_total ("revoked": a replay of a ticket after logout, "forged",
 * "unknown", "expired", "binding_mismatch", "legacy_cookie_presented", "write_after_revoke",
 * "ticket_conflict"). It carries the client address and user agent, never a ticket.
 */
export type SecurityEvent = LogLine & { class: string };

/**
 * Collects coatcheck's log lines: pass it as `logDestination` to startCoatcheck. Lines are kept
 * in order; waiters resolve on the first matching line, whether it came before or after.
 */
export class LogRecorder extends Writable {
  readonly lines: LogLine[] = [];
  private partial = '';
  private readonly waiters: Array<{ match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    this.partial += chunk.toString('utf8');
    let nl: number;
    while ((nl = this.partial.indexOf('\n')) !== -1) {
      const text = this.partial.slice(0, nl);
      this.partial = this.partial.slice(nl + 1);
      if (text) this.add(parseLine(text));
    }
    done();
  }

  private add(line: LogLine): void {
    this.lines.push(line);
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const w = this.waiters[i] as (typeof this.waiters)[number];
      if (w.match(line)) {
        this.waiters.splice(i, 1);
        w.resolve(line);
      }
    }
  }

  /** The lines with this `event` field (e.g. "session.replay", "config.reloaded"). */
  events(event: string): LogLine[] {
    return this.lines.filter((l) => l.event === event);
  }

  /** The security events so far, or those of one class. */
  securityEvents(kind?: string): SecurityEvent[] {
    return this.lines.filter((l): l is SecurityEvent => typeof l.class === 'string' && (kind === undefined || l.class === kind));
  }

  /** Resolves with the first line (already logged or to come) that matches. */
  waitFor(match: (l: LogLine) => boolean): Promise<LogLine> {
    const found = this.lines.find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve) => this.waiters.push({ match, resolve }));
  }

  /** Resolves with the first security event of this class. */
  waitForSecurityEvent(kind: string): Promise<SecurityEvent> {
    return this.waitFor((l) => l.class === kind) as Promise<SecurityEvent>;
  }
}

function parseLine(text: string): LogLine {
  try {
    const v = JSON.parse(text) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as LogLine) : { msg: text };
  } catch {
    return { msg: text };
  }
}

export interface DummyUpstream {
  /** Its origin, for the `upstream` key: "http://127.0.0.1:PORT". */
  readonly url: string;
  close(): Promise<void>;
}

/** An app for coatcheck to stand in front of: `handler` answers every request, on 127.0.0.1, port chosen by the system. */
export async function startDummyUpstream(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<DummyUpstream> {
  const server = createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
