// A small HTTP client for tests that behaves like a browser for one cookie: the ticket.
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** Set-Cookie values the client received. */
  setCookies: string[];
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string | string[]>;
  body?: string | Buffer;
}

export function send(port: number, path: string, opts: RequestOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers: opts.headers ?? {}, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const sc = res.headers['set-cookie'];
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('latin1'), setCookies: sc ?? [] });
        });
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** The value a Set-Cookie gives `name`, or undefined when it sets none. */
export function cookieValue(setCookies: readonly string[], name: string): string | undefined {
  for (const sc of setCookies) {
    const pair = sc.split(';')[0] as string;
    const eq = pair.indexOf('=');
    if (pair.slice(0, eq).trim() === name) return pair.slice(eq + 1);
  }
  return undefined;
}

/** Does a Set-Cookie remove `name` (Max-Age=0)? */
export function clears(setCookies: readonly string[], name: string): boolean {
  return setCookies.some((sc) => sc.startsWith(`${name}=;`) && /;\s*Max-Age=0/i.test(sc));
}

/** A browser for one site: keeps the ticket cookie and sends it back. */
export class Browser {
  ticket: string | undefined;
  constructor(
    readonly port: number,
    readonly ticketName = 'coatcheck',
  ) {}

  async send(path: string, opts: RequestOptions = {}): Promise<Reply> {
    const headers: Record<string, string | string[]> = { ...(opts.headers ?? {}) };
    if (this.ticket) {
      const extra = headers.cookie;
      headers.cookie = `${this.ticketName}=${this.ticket}${extra ? `; ${String(extra)}` : ''}`;
    }
    const reply = await send(this.port, path, { ...opts, headers });
    if (clears(reply.setCookies, this.ticketName)) this.ticket = undefined;
    const v = cookieValue(reply.setCookies, this.ticketName);
    if (v) this.ticket = v;
    return reply;
  }
}
