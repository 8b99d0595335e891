// coatcheck as a library (`import { startCoatcheck } from 'coatcheck'`): the proxy in this
// process, configured with the same keys as the YAML file. The public surface is this file and
// testing.ts; everything else under dist/ is internal (package.json `exports`). Changes to it are
// listed in CHANGELOG.md.
import type { DestinationStream } from 'pino';
import { createCoatcheck } from './app.js';
import { loadConfigObject } from './config/load.js';
import type { Config, ConfigInput } from './config/schema.js';
import { ConfigError } from './errors.js';
import { createLogger, type Logger } from './log.js';

export { ConfigError } from './errors.js';
export type { ConfigProblem } from './errors.js';
export type { Config, ConfigInput } from './config/schema.js';

/** What messages name as the "file" of a configuration given as an object. */
const CONFIG_NAME = 'startCoatcheck(config)';

export interface StartOptions {
  /**
   * Where the JSON log lines go (a pino destination: any object with `write(line)`, e.g. a
   * LogRecorder from `coatcheck/testing`). Default: standard output. Ignored when `logger` is given.
   */
  logDestination?: DestinationStream;
  /** A pino logger of your own (the log level then is the logger's). */
  logger?: Logger;
}

export interface RunningCoatcheck {
  /** The proxy's base URL, e.g. "http://127.0.0.1:41234" (https with `tls`; 127.0.0.1 when listening on every interface). */
  readonly url: string;
  readonly port: number;
  /** The admin listener's base URL (/healthz, /readyz, /metrics), when `admin.listen` is set. */
  readonly adminUrl?: string;
  /** The validated configuration, defaults filled in. */
  readonly config: Readonly<Config>;
  /** Stops accepting, lets requests in flight finish (up to shutdownTimeout), closes the store. */
  close(): Promise<void>;
}

/**
 * Validates `config` (the YAML file's keys, as an object; durations as "30m" or seconds, listen
 * addresses as "127.0.0.1:0") and starts the proxy. Rejects with a ConfigError listing every
 * problem (the same messages as a file, without line:col), or with the start failure (store
 * unreachable, port taken), having released whatever it opened.
 */
export async function startCoatcheck(config: ConfigInput, options: StartOptions = {}): Promise<RunningCoatcheck> {
  const { config: valid, warnings } = loadConfigObject(config, CONFIG_NAME);
  if (valid.workers !== 1) {
    throw new ConfigError(CONFIG_NAME, [{ path: 'workers', message: 'startCoatcheck runs in this process: several workers need the command line (coatcheck --config FILE)' }]);
  }
  const logger = options.logger ?? createLogger(valid.log.level, options.logDestination);
  for (const w of warnings) logger.warn({ event: 'config.warning' }, w);
  const app = createCoatcheck({ config: valid, logger });
  let addr: Awaited<ReturnType<typeof app.start>>;
  try {
    addr = await app.start();
  } catch (err) {
    await app.close().catch(() => undefined);
    throw err;
  }
  const base = (scheme: string, a: { host: string; port: number }) => `${scheme}://${urlHost(a.host)}:${a.port}`;
  return {
    url: base(valid.tls ? 'https' : 'http', addr),
    port: addr.port,
    ...(addr.admin ? { adminUrl: base('http', addr.admin) } : {}),
    config: valid,
    close: () => app.close(),
  };
}

/** A listening address as a URL's host: every interface is reached on loopback; IPv6 in brackets. */
function urlHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}
