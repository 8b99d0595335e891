// Builds the configured session store. No I/O here: call start() on the result.
import type { Clock } from '../clock.js';
import type { Config } from '../config/schema.js';
import { ConfigError } from '../errors.js';
import type { Logger } from '../log.js';
import { MemoryStore } from './memory.js';
import { RedisStore } from './redis.js';
import type { RedisTarget } from './redis/target.js';
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
      return new RedisStore({
        target: redisTarget(config),
        prefix: config.prefix,
        timeout: config.timeout,
        connectTimeout: config.connectTimeout,
        replicas: config.replicas,
        replicaTimeout: config.replicaTimeout,
        logger: deps.logger,
      });
  }
}

/** Where the configured Redis store lives. */
export function redisTarget(config: Config['store']): RedisTarget {
  if (config.sentinel) {
    const s = config.sentinel;
    return {
      mode: 'sentinel',
      name: s.name,
      sentinels: s.nodes,
      ...(s.password !== undefined ? { sentinelPassword: s.password } : {}),
      tls: s.tls,
      ...credentials(config),
      db: config.db ?? 0,
    };
  }
  if (config.cluster) return { mode: 'cluster', nodes: config.cluster.nodes, ...credentials(config) };
  if (!config.url) {
    // The schema already requires one of them; this guards hand-built configs.
    throw new ConfigError('<config>', [{ path: 'store.url', message: 'required when kind is "redis"' }]);
  }
  return { mode: 'single', url: config.url };
}

function credentials(config: Config['store']): { username?: string; password?: string } {
  return {
    ...(config.username !== undefined ? { username: config.username } : {}),
    ...(config.password !== undefined ? { password: config.password } : {}),
  };
}
