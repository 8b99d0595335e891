// Builds the configured session store. No I/O here: call start() on the result.
import type { Clock } from '../clock.js';
import type { Config } from '../config/schema.js';
import { ConfigError } from '../errors.js';
import type { Logger } from '../log.js';
import { MemoryStore } from './memory.js';
import { RedisStore } from './redis.js';
import type { SessionStore } from './types.js';

export interface StoreDeps {
  clock: Clock;
  logger: Logger;
}

export function createStore(config: Config['store'], deps: StoreDeps): SessionStore {
  switch (config.kind) {
    case 'memory':
      return new MemoryStore({ clock: deps.clock, maxSessions: config.maxSessions, logger: deps.logger });
    case 'redis':
      if (!config.url) {
        // The schema already requires it; this guards hand-built configs.
        throw new ConfigError('<config>', [{ path: 'store.url', message: 'required when kind is "redis"' }]);
      }
      return new RedisStore({
        url: config.url,
        prefix: config.prefix,
        timeout: config.timeout,
        connectTimeout: config.connectTimeout,
        logger: deps.logger,
      });
  }
}
