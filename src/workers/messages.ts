// What the primary and its workers say to each other over the cluster's IPC channel
// (serialization "advanced": structured clones). Every message carries `cc`, so that node's own
// cluster messages and anything else on the channel are told apart and ignored.
import type { Readiness } from '../admin/server.js';
import type { Config } from '../config/schema.js';

/** One registry's metrics as prom-client's getMetricsAsJSON() gives them. */
export type MetricsSnapshot = Array<{
  name: string;
  help: string;
  type: string;
  aggregator: string;
  values: Array<{ value: number; labels: Record<string, string | number>; metricName?: string }>;
}>;

/** Primary → worker. */
export type ToWorker =
  /** The configuration the primary loaded (a worker never reads the file: a restart uses what the others run). */
  | { cc: 'config'; config: Config; slot: number }
  /** A question, answered with `answer` and the same id. */
  | { cc: 'ask'; id: number; what: 'metrics' | 'readiness' }
  /** SIGHUP: the configuration the primary read again, fixed keys kept (config/reload.ts). */
  | { cc: 'reload'; config: Config };

/** Worker → primary. */
export type ToPrimary =
  /** Ready to receive the configuration. */
  | { cc: 'hello' }
  /** Started: the store answered and the proxy listens. */
  | { cc: 'listening'; host: string; port: number }
  /** Could not start, and why (a message fit for the log: no secret, no stack). The worker exits 1. */
  | { cc: 'start-failed'; reason: string }
  | { cc: 'answer'; id: number; metrics?: MetricsSnapshot; readiness?: Readiness; error?: string };

function tagged(m: unknown): m is { cc: string } {
  return typeof m === 'object' && m !== null && typeof (m as { cc?: unknown }).cc === 'string';
}

export function isToWorker(m: unknown): m is ToWorker {
  return tagged(m) && (m.cc === 'config' || m.cc === 'ask' || m.cc === 'reload');
}

export function isToPrimary(m: unknown): m is ToPrimary {
  return tagged(m) && (m.cc === 'hello' || m.cc === 'listening' || m.cc === 'start-failed' || m.cc === 'answer');
}
