// A dummy WebSocket app (the `ws` package on the test upstream) and a WebSocket client that
// keeps its ticket: what the WebSocket tests need, on real sockets. Everything is awaited
// through events (open, message, close, unexpected-response), never through sleeps.
import { request as httpRequest, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { startUpstream, type Upstream } from './upstream.js';

export interface UpgradeSeen {
  url: string;
  headers: IncomingMessage['headers'];
  rawHeaders: string[];
}

export interface WsApp {
  readonly upstream: Upstream;
  readonly origin: string;
  /** Every upgrade request the app received, in order. */
  readonly upgrades: UpgradeSeen[];
  /** The app's side of every WebSocket it accepted, in order. */
  readonly sockets: WebSocket[];
  /** Resolves with the app's side of the next WebSocket it accepts. */
  nextSocket(): Promise<WebSocket>;
  close(): Promise<void>;
}

/**
 * The upstream test app, plus WebSockets:
 * - any path: echo (text stays text, binary stays binary);
 * - `/ws/close4000`: on the first message, closes with 4000 "bye";
 * - `/ws/set-cookie`: its 101 sets `wsc=from-101` (a managed cookie);
 * - `/ws/deny`: answers the upgrade 403 with `Set-Cookie: denied=1`, no WebSocket.
 */
export async function startWsApp(): Promise<WsApp> {
  const upstream = await startUpstream();
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: true });
  const upgrades: UpgradeSeen[] = [];
  const sockets: WebSocket[] = [];
  const waiters: Array<(ws: WebSocket) => void> = [];
  wss.on('headers', (headers, req) => {
    if (req.url === '/ws/set-cookie') headers.push('Set-Cookie: wsc=from-101; Path=/');
  });
  upstream.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    upgrades.push({ url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders });
    socket.on('error', () => undefined);
    if (req.url === '/ws/deny') {
      socket.end('HTTP/1.1 403 Forbidden\r\nSet-Cookie: denied=1; Path=/\r\nContent-Type: text/plain\r\nContent-Length: 6\r\nConnection: close\r\n\r\ndenied');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', () => undefined);
      sockets.push(ws);
      if (req.url === '/ws/close4000') ws.once('message', () => ws.close(4000, 'bye'));
      else ws.on('message', (data: RawData, isBinary: boolean) => ws.send(data as Buffer, { binary: isBinary }));
      waiters.shift()?.(ws);
    });
  });
  return {
    upstream,
    origin: upstream.origin,
    upgrades,
    sockets,
    nextSocket: () => new Promise((resolve) => waiters.push(resolve)),
    async close() {
      for (const ws of sockets) ws.terminate();
      wss.close();
      await upstream.close();
    },
  };
}

/** What a refused upgrade got: the ordinary HTTP answer. */
export interface Refused {
  status: number;
  headers: IncomingMessage['headers'];
  body: string;
}

export interface OpenOptions {
  ticket?: string;
  ticketName?: string;
  headers?: Record<string, string>;
  perMessageDeflate?: boolean;
  protocols?: string[];
}

/** Opens a WebSocket through coatcheck: the open socket, or the HTTP answer that refused it. */
export function openWs(port: number, path: string, opts: OpenOptions = {}): Promise<{ ws: WebSocket; upgradeHeaders: IncomingMessage['headers'] } | { refused: Refused }> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.ticket !== undefined) headers.cookie = `${opts.ticketName ?? 'coatcheck'}=${opts.ticket}${headers.cookie ? `; ${headers.cookie}` : ''}`;
  const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, opts.protocols ?? [], { headers, perMessageDeflate: opts.perMessageDeflate ?? false, maxPayload: 64 * 1024 * 1024 });
  ws.on('error', () => undefined);
  return new Promise((resolve, reject) => {
    let upgradeHeaders: IncomingMessage['headers'] = {};
    ws.once('upgrade', (res: IncomingMessage) => (upgradeHeaders = res.headers));
    ws.once('open', () => resolve({ ws, upgradeHeaders }));
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ refused: { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') } }));
      res.on('error', reject);
    });
    ws.once('close', () => reject(new Error('closed before opening')));
  });
}

/** openWs that must open. */
export async function mustOpen(port: number, path: string, opts: OpenOptions = {}): Promise<WebSocket> {
  const r = await openWs(port, path, opts);
  if ('refused' in r) throw new Error(`upgrade refused: ${r.refused.status} ${r.refused.body}`);
  return r.ws;
}

/** openWs that must be refused. */
export async function mustRefuse(port: number, path: string, opts: OpenOptions = {}): Promise<Refused> {
  const r = await openWs(port, path, opts);
  if ('ws' in r) {
    r.ws.terminate();
    throw new Error('the upgrade was not refused');
  }
  return r.refused;
}

export interface Closed {
  code: number;
  reason: string;
  /** performance.now() when the client saw the close. */
  at: number;
}

/** Resolves when `ws` closes, with the code and reason it got. */
export function closed(ws: WebSocket): Promise<Closed> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.reject(new Error('already closed'));
  return new Promise((resolve) => ws.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString('utf8'), at: performance.now() })));
}

/** The next message on `ws`. */
export function nextMessage(ws: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  return new Promise((resolve) => ws.once('message', (data: RawData, isBinary: boolean) => resolve({ data: toBuffer(data), isBinary })));
}

/** Sends and waits for the echo. */
export async function roundTrip(ws: WebSocket, data: string | Buffer): Promise<{ data: Buffer; isBinary: boolean }> {
  const reply = nextMessage(ws);
  ws.send(data);
  return reply;
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/** A streaming GET with the ticket that stays open (Server-Sent Events): the response, once its first bytes arrived. */
export function openStream(port: number, path: string, ticket: string): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers: { cookie: `coatcheck=${ticket}` }, agent: false }, (res) => {
      res.on('error', () => undefined);
      res.once('data', () => resolve(res));
    });
    req.on('error', reject);
    req.end();
  });
}
