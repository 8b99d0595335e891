// The "legacy app" of the WebSocket bench: a login that sets an app cookie, a logout that
// clears it, and a WebSocket echo on every other path (the `ws` package, no compression, so
// that the bench measures forwarding, not deflate). Run in its own process.
//
//   POST /login     sets app_session (the jar coatcheck keeps)
//   GET  /logout    clears it
//   WebSocket *     echoes every message back as it came (text or binary)
//
// Prints {"event":"ready","port":N} once listening; SIGTERM closes it.
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocketServer, type RawData } from 'ws';

const sockets = new Set<Socket>();
const server = createServer((req, res) => {
  if (req.url === '/login') res.setHeader('set-cookie', `app_session=${randomBytes(24).toString('base64url')}; Path=/; HttpOnly`);
  else if (req.url === '/logout') res.setHeader('set-cookie', 'app_session=; Path=/; Max-Age=0');
  res.setHeader('content-type', 'text/plain');
  res.end('ok');
});
server.on('connection', (s: Socket) => {
  sockets.add(s);
  s.on('close', () => sockets.delete(s));
});
const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.on('error', () => undefined);
  ws.on('message', (data: RawData, isBinary: boolean) => ws.send(data as Buffer, { binary: isBinary }));
});
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ event: 'ready', port })}\n`);
});
function stop(): void {
  for (const s of sockets) s.destroy();
  wss.close();
  server.close(() => process.exit(0));
}
process.on('SIGTERM', stop);
