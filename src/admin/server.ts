// The admin listener: liveness, readiness, Prometheus metrics and the sessions API
// (sessions-api.ts). Kept off the proxied port so
// the app can never shadow it and the public can never reach it by accident. What "ready" and
// "the metrics" are comes from the process that serves it: a single process asks its own store
// and registry (app.ts), the primary of several workers asks its workers (workers/primary.ts).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../log.js';
import { handleSessions, isSessionsPath, type SessionsBackend } from './sessions-api.js';

/** Whether this process can serve requests now, and a one-line reason for the answer's body. */
export interface Readiness {
  ready: boolean;
  reason: string;
}

export interface AdminSources {
  logger: Logger;
  /** /readyz: 200 with the reason when ready, else 503 with it. */
  readiness(): Promise<Readiness>;
  /** /metrics: the Prometheus text exposition and its content type. */
  metrics(): Promise<{ text: string; contentType: string }>;
  /** The sessions API: admin.token (null: off) and what it acts through. */
  sessions?: { token: string | null; backend: SessionsBackend | undefined; onRevoked?: (count: number) => void };
}

export interface AdminServer {
  readonly server: Server;
  start(host: string, port: number): Promise<{ host: string; port: number }>;
  close(): Promise<void>;
}

export function createAdminServer(deps: AdminSources): AdminServer {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const reply = (status: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (isSessionsPath(path ?? '')) {
      handleSessions(req, res, path as string, { token: null, backend: undefined, ...deps.sessions, logger: deps.logger });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, 'method not allowed\n');
    if (path === '/healthz') return reply(200, 'ok\n');
    if (path === '/readyz') {
      deps.readiness().then(
        (r) => reply(r.ready ? 200 : 503, `${r.reason}\n`),
        () => reply(503, 'readiness check failed\n'),
      );
      return;
    }
    if (path === '/metrics') {
      deps.metrics().then(
        ({ text, contentType }) => reply(200, text, contentType),
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
