// The admin listener: liveness, readiness (the store answers) and Prometheus metrics. Kept off
// the proxied port so the app can never shadow it and the public can never reach it by accident.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../log.js';
import type { SessionStore } from '../store/types.js';
import type { Metrics } from './metrics.js';

export interface AdminServer {
  readonly server: Server;
  start(host: string, port: number): Promise<{ host: string; port: number }>;
  close(): Promise<void>;
}

export function createAdminServer(deps: { metrics: Metrics; store: SessionStore; logger: Logger; isDraining: () => boolean }): AdminServer {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const reply = (status: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, 'method not allowed\n');
    if (path === '/healthz') return reply(200, 'ok\n');
    if (path === '/readyz') {
      if (deps.isDraining()) return reply(503, 'draining\n');
      deps.store.ping().then(
        () => reply(200, 'ready\n'),
        () => reply(503, 'store unavailable\n'),
      );
      return;
    }
    if (path === '/metrics') {
      deps.metrics.registry.metrics().then(
        (text) => reply(200, text, deps.metrics.registry.contentType),
        (err: unknown) => {
          deps.logger.error({ event: 'admin.metrics_failed', err: (err as Error).message }, 'metrics collection failed');
          reply(500, 'metrics failed\n');
        },
      );
      return;
    }
    reply(404, 'not found\n');
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  let listening = false;
  return {
    server,
    async start(host, port) {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      listening = true;
      const a = server.address() as AddressInfo;
      return { host: a.address, port: a.port };
    },
    async close() {
      if (!listening) return;
      listening = false;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
