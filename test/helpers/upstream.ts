// A dummy upstream app for integration tests: each test installs its own route handlers and
// reads what the app received. Started on 127.0.0.1 port 0.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type Route = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

export interface Received {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  rawHeaders: string[];
}

export interface Upstream {
  readonly port: number;
  readonly origin: string;
  readonly server: Server;
  /** Every request the app received, in order. */
  readonly received: Received[];
  /** Installs a handler for an exact path (any method). */
  route(path: string, handler: Route): void;
  /** Resolves with the next request the app receives on `path`. */
  nextRequest(path: string): Promise<Received>;
  close(): Promise<void>;
}

/** Routes every test app has: /echo answers with what it received as JSON. */
function echo(req: IncomingMessage, res: ServerResponse): void {
  const body = JSON.stringify({ method: req.method, url: req.url, headers: req.headers, rawHeaders: req.rawHeaders });
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(body);
}

export async function startUpstream(): Promise<Upstream> {
  const routes = new Map<string, Route>([['/echo', echo]]);
  const received: Received[] = [];
  const waiters: Array<{ path: string; resolve: (r: Received) => void }> = [];
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    const rec: Received = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders };
    received.push(rec);
    const path = (req.url ?? '/').split('?')[0] as string;
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i] as (typeof waiters)[number];
      if (w.path === path) {
        waiters.splice(i, 1);
        w.resolve(rec);
      }
    }
    const handler = routes.get(path) ?? echo;
    Promise.resolve(handler(req, res)).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500);
      res.end(String(err));
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    origin: `http://127.0.0.1:${port}`,
    server,
    received,
    route(path, handler) {
      routes.set(path, handler);
    },
    nextRequest(path) {
      return new Promise((resolve) => waiters.push({ path, resolve }));
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A route that sets the given Set-Cookie values and answers 200 with a short body. */
export function setsCookies(...setCookies: string[]): Route {
  return (_req, res) => {
    res.setHeader('set-cookie', setCookies);
    res.setHeader('content-type', 'text/plain');
    res.end('ok');
  };
}
