// `coatcheck healthcheck`: asks the admin listener of the configuration's coatcheck for
// /healthz, for a container's HEALTHCHECK (the image has no curl). Exit 0 when it answers 200.
import { request } from 'node:http';
import type { Config } from './config/schema.js';
import { formatListen } from './config/values.js';

const TIMEOUT_MS = 3_000;

/** Resolves with the reason it is not healthy, or undefined when it is. */
export function checkHealth(config: Readonly<Config>): Promise<string | undefined> {
  const admin = config.admin.listen;
  if (admin === null) return Promise.resolve('no admin listener to ask: set admin.listen (e.g. ":9090") in the configuration');
  // A listener on every interface is reached on loopback.
  const host = admin.host === '0.0.0.0' ? '127.0.0.1' : admin.host === '::' ? '::1' : admin.host;
  const where = `http://${formatListen({ host, port: admin.port })}/healthz`;
  return new Promise((resolve) => {
    const req = request({ host, port: admin.port, path: '/healthz', method: 'GET', timeout: TIMEOUT_MS, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200 ? undefined : `${where} answered ${res.statusCode}`);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) => resolve(`${where}: ${err.code ?? err.message}`));
    req.end();
  });
}
