// TLS on the proxy's own listener: the certificate files (read at start and on every reload, so
// a renewed certificate needs no restart) and the plain-HTTP listener that only redirects.
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { SecureContextOptions } from 'node:tls';
import type { Config } from './config/schema.js';
import type { Logger } from './log.js';

type TlsConfig = NonNullable<Config['tls']>;

/** The secure context options from the PEM files; a clear error (key path and file, never contents) when one cannot be read. */
export async function readTlsFiles(tls: TlsConfig): Promise<SecureContextOptions> {
  const read = async (key: 'cert' | 'key'): Promise<Buffer> => {
    try {
      return await readFile(tls[key]);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new Error(`tls.${key}: cannot read ${JSON.stringify(tls[key])}${code ? ` (${code})` : ''}`, { cause: err });
    }
  };
  const [cert, key] = await Promise.all([read('cert'), read('key')]);
  return { cert, key, minVersion: tls.minVersion };
}

/** A host name or address as a Host header carries it (no userinfo, no path): nothing else goes into Location. */
const HOST_RE = /^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * `tls.redirectFrom`: answers every request with 308 to the same host and path on https, on the
 * TLS listener's port (omitted when 443). Its body is empty; it never reaches the app or the store.
 */
export function createRedirectServer(httpsPort: () => number, logger: Logger): Server {
  const server = createServer((req, res) => {
    const host = req.headers.host ?? '';
    if (!HOST_RE.test(host) || !(req.url ?? '').startsWith('/')) {
      res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
      res.end('bad request: a Host header and an origin-form target are needed to redirect to https\n');
      return;
    }
    const hostname = host.replace(/:\d+$/, '');
    const port = httpsPort();
    res.writeHead(308, { location: `https://${hostname}${port === 443 ? '' : `:${port}`}${req.url}`, 'content-length': 0 });
    res.end();
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    logger.debug({ event: 'client.error', code: err.code, listener: 'redirect' }, 'malformed request on the redirect listener');
    socket.destroy();
  });
  return server;
}
