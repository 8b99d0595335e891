// Runs pipeline stages without sockets: a request as Node would parse it, a context, and the
// pipeline's dependencies built from a configuration exactly as createCoatcheck builds them
// (a real session service over the memory store; an engine that refuses to forward).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createPipelineDeps } from '../../src/app.js';
import { configSchema, type Config, type ConfigInput } from '../../src/config/schema.js';
import { RequestContext, type PipelineDeps } from '../../src/pipeline/context.js';
import { requestIdOf } from '../../src/pipeline/headers.js';
import type { ForwardEngine } from '../../src/proxy/engine.js';
import { createStore } from '../../src/store/index.js';
import { captureLogger, type LogCapture } from './logs.js';

export const STAGE_SECRET = 'stage-test-secret-0123456789-abcdefghijklmnop';

/** Headers Node keeps only the first of (RFC 9110 singletons); the rest are joined. */
const SINGLE = new Set(['host', 'content-type', 'content-length', 'user-agent', 'authorization', 'referer', 'from', 'max-forwards', 'proxy-authorization']);

export interface FakeRequestInit {
  method?: string;
  url?: string;
  /** Raw header list: name, value, name, value… (names in any case, duplicates allowed). */
  headers?: string[];
  remoteAddress?: string;
  localAddress?: string;
  localPort?: number;
  encrypted?: boolean;
}

/** The parts of an IncomingMessage the request stages read, filled in as Node's parser does. */
export function fakeRequest(init: FakeRequestInit = {}): IncomingMessage {
  const raw = init.headers ?? ['Host', 'app.example'];
  const headers: Record<string, string> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    const value = raw[i + 1] as string;
    const prev = headers[name];
    if (prev === undefined) headers[name] = value;
    else if (name === 'cookie') headers[name] = `${prev}; ${value}`;
    else if (!SINGLE.has(name)) headers[name] = `${prev}, ${value}`;
  }
  const socket = {
    remoteAddress: init.remoteAddress ?? '192.0.2.10',
    localAddress: init.localAddress ?? '127.0.0.1',
    localPort: init.localPort ?? 8080,
    ...(init.encrypted ? { encrypted: true } : {}),
  };
  return { method: init.method ?? 'GET', url: init.url ?? '/', headers, rawHeaders: raw, socket } as unknown as IncomingMessage;
}

const refusingEngine: ForwardEngine = {
  forward() {
    throw new Error('a stage test never forwards');
  },
  upgrade() {
    throw new Error('a stage test never forwards');
  },
  close: async () => undefined,
};

export interface StageHarness {
  deps: PipelineDeps;
  config: Config;
  logs: LogCapture;
  /** A fresh context for `req`, with the request id the handler would give it. */
  context(req?: IncomingMessage): RequestContext;
  /** The value of a security-event counter (mode enforce unless named). */
  securityCount(event: string, mode?: 'enforce' | 'report-only'): Promise<number>;
}

/** A configuration from exactly these keys (plus the required upstream and secret); nothing is added. */
export function stageConfig(input: Partial<ConfigInput> = {}): Config {
  return configSchema.parse({ upstream: 'http://127.0.0.1:9', secrets: [STAGE_SECRET], ...input });
}

export function stageHarness(input: Partial<ConfigInput> = {}, clock: () => number = Date.now): StageHarness {
  const config = stageConfig(input);
  const { logger, logs } = captureLogger();
  const store = createStore(config.store, { clock, logger });
  const deps = createPipelineDeps({ config, logger, clock, store, engine: refusingEngine });
  return {
    deps,
    config,
    logs,
    context: (req = fakeRequest()) => new RequestContext(requestIdOf(req), req, {} as ServerResponse, logger),
    async securityCount(event, mode = 'enforce') {
      const metric = await deps.metrics.security.get();
      return metric.values.find((v) => v.labels.event === event && v.labels.mode === mode)?.value ?? 0;
    },
  };
}
