// Where the Redis store's data lives: one server (a URL), a master that Redis Sentinel watches
// over, or a Redis Cluster. Built from the `store` config (store/index.ts); connection.ts makes
// the ioredis client for it and redact.ts says how it may be named in a message.

export interface RedisNode {
  host: string;
  port: number;
}

export type RedisTarget =
  /** One server: redis:// or rediss:// URL, credentials and db in it. */
  | { mode: 'single'; url: string }
  /** The master that the sentinels name `name`, followed across failovers. */
  | {
      mode: 'sentinel';
      name: string;
      sentinels: RedisNode[];
      /** The sentinels' own password. */
      sentinelPassword?: string;
      /** TLS to the sentinels and the data nodes. */
      tls: boolean;
      username?: string;
      password?: string;
      db: number;
    }
  /** A Redis Cluster, discovered from its seed nodes. */
  | { mode: 'cluster'; nodes: RedisNode[]; username?: string; password?: string };

function formatNode(n: RedisNode): string {
  return n.host.includes(':') ? `[${n.host}]:${n.port}` : `${n.host}:${n.port}`;
}

/** How a target is named in messages and logs: addresses only, never a password. */
export function describeTarget(target: RedisTarget): string {
  switch (target.mode) {
    case 'single':
      return describeUrl(target.url);
    case 'sentinel':
      return `sentinel master "${target.name}" via ${target.sentinels.map(formatNode).join(',')}`;
    case 'cluster':
      return `cluster ${target.nodes.map(formatNode).join(',')}`;
  }
}

/** "host:port" of a redis URL, without credentials. */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname || 'localhost'}:${u.port || '6379'}`;
  } catch {
    return '(invalid redis URL)';
  }
}
