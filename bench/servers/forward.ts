// What the bare forwarder and the minimal session proxy share: an undici Pool configured like
// coatcheck's engine (src/proxy/engine.ts), hop-by-hop filtering on flat raw header lists, and
// the process plumbing (ready line, SIGTERM). Anything here is cost that coatcheck pays too,
// so the differences between the three are the session logic.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Pool } from 'undici';

export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** The same pool settings as coatcheck's UndiciEngine. */
export function createPool(origin: string): Pool {
  return new Pool(origin, {
    connections: 128,
    headersTimeout: 60_000,
    bodyTimeout: 60_000,
    keepAliveTimeout: 4000,
    keepAliveTimeoutThreshold: 1000,
    connectTimeout: 10_000,
  });
}

export function hasBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  if (len !== undefined) return len !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

/** Flat raw request headers minus hop-by-hop ones and those in `drop` (lower-case names). */
export function requestHeaders(req: IncomingMessage, drop?: ReadonlySet<string>): string[] {
  const raw = req.rawHeaders;
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || (drop !== undefined && drop.has(lower))) continue;
    out.push(name, raw[i + 1] as string);
  }
  return out;
}

export function badGateway(res: ServerResponse): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(502, { 'content-type': 'text/plain', 'content-length': 12 });
  res.end('bad gateway\n');
}

/** Listens on 127.0.0.1 port 0, prints the ready line, and closes on SIGTERM/SIGINT. */
export function serve(server: Server, onClose: () => Promise<unknown>): void {
  const sockets = new Set<Socket>();
  server.keepAliveTimeout = 75_000;
  server.headersTimeout = 80_000;
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('clientError', (_err, socket: Socket) => socket.destroy());
  server.listen(0, '127.0.0.1', () => {
    const { port } = server.address() as AddressInfo;
    process.stdout.write(`${JSON.stringify({ event: 'ready', port })}\n`);
  });
  const stop = () => {
    server.close();
    for (const s of sockets) s.destroy();
    onClose().then(
      () => process.exit(0),
      () => process.exit(0),
    );
    setTimeout(() => process.exit(0), 2000);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

export { createServer };
