// The error catalogue, in two parts that never mix:
// - HTTP errors: what a client is answered (status, stable code) and how metrics count it
//   (category). Thrown by the store, the engine and the stages; answered in one place
//   (pipeline/reply.ts).
// - Process errors: what ends the command line (exit code). Thrown by argument and
//   configuration parsing; handled only by cli.ts.

/** What a failed request is counted as in metrics. */
export type ErrorCategory = 'store' | 'upstream' | 'session' | 'client' | 'internal';

export const HttpErrors = {
  STORE_UNAVAILABLE: { code: 'COATCHECK_ERR_STORE_UNAVAILABLE', status: 503, category: 'store' },
  UPSTREAM_UNAVAILABLE: { code: 'COATCHECK_ERR_UPSTREAM_UNAVAILABLE', status: 502, category: 'upstream' },
  UPSTREAM_TIMEOUT: { code: 'COATCHECK_ERR_UPSTREAM_TIMEOUT', status: 504, category: 'upstream' },
  UPSTREAM_PROTOCOL: { code: 'COATCHECK_ERR_UPSTREAM_PROTOCOL', status: 502, category: 'upstream' },
  SESSION_REVOKED: { code: 'COATCHECK_ERR_SESSION_REVOKED', status: 401, category: 'session' },
  SESSION_EXPIRED: { code: 'COATCHECK_ERR_SESSION_EXPIRED', status: 401, category: 'session' },
  SESSION_BINDING: { code: 'COATCHECK_ERR_SESSION_BINDING', status: 401, category: 'session' },
  SESSION_CONFLICT: { code: 'COATCHECK_ERR_SESSION_CONFLICT', status: 401, category: 'session' },
  BAD_REQUEST: { code: 'COATCHECK_ERR_BAD_REQUEST', status: 400, category: 'client' },
  /** websocket.enabled is false: no upgrade reaches the app. */
  WEBSOCKET_DISABLED: { code: 'COATCHECK_ERR_WEBSOCKET_DISABLED', status: 501, category: 'client' },
  /** websocket.maxConnections WebSockets are open in this process already. */
  WEBSOCKET_LIMIT: { code: 'COATCHECK_ERR_WEBSOCKET_LIMIT', status: 503, category: 'internal' },
  /** The process is shutting down: no new WebSocket. */
  SHUTTING_DOWN: { code: 'COATCHECK_ERR_SHUTTING_DOWN', status: 503, category: 'internal' },
  INTERNAL: { code: 'COATCHECK_ERR_INTERNAL', status: 500, category: 'internal' },
} as const satisfies Record<string, { code: string; status: number; category: ErrorCategory }>;

export type HttpErrorKind = keyof typeof HttpErrors;

/** A failure a client is answered with: its status and stable code, never internals. */
export class CoatcheckError extends Error {
  readonly kind: HttpErrorKind;
  readonly code: string;
  readonly status: number;
  readonly category: ErrorCategory;
  constructor(kind: HttpErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CoatcheckError';
    this.kind = kind;
    const entry = HttpErrors[kind];
    this.code = entry.code;
    this.status = entry.status;
    this.category = entry.category;
  }
}

export class StoreUnavailableError extends CoatcheckError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('STORE_UNAVAILABLE', message, options);
    this.name = 'StoreUnavailableError';
  }
}

/** Maps any failure to the one status and code a client sees (500 for what is not ours). */
export function httpErrorOf(err: unknown): { status: number; code: string; category: ErrorCategory } {
  if (err instanceof CoatcheckError) return { status: err.status, code: err.code, category: err.category };
  return { status: HttpErrors.INTERNAL.status, code: HttpErrors.INTERNAL.code, category: HttpErrors.INTERNAL.category };
}

export const ProcessErrors = {
  USAGE: { code: 'COATCHECK_ERR_USAGE', exitCode: 2 },
  CONFIG_INVALID: { code: 'COATCHECK_ERR_CONFIG_INVALID', exitCode: 2 },
} as const satisfies Record<string, { code: string; exitCode: number }>;

export type ProcessErrorKind = keyof typeof ProcessErrors;

/** A failure that ends the command: the CLI prints its message and exits with its code. */
export class ProcessError extends Error {
  readonly kind: ProcessErrorKind;
  readonly code: string;
  readonly exitCode: number;
  constructor(kind: ProcessErrorKind, message: string) {
    super(message);
    this.name = 'ProcessError';
    this.kind = kind;
    this.code = ProcessErrors[kind].code;
    this.exitCode = ProcessErrors[kind].exitCode;
  }
}

export class UsageError extends ProcessError {
  constructor(message: string) {
    super('USAGE', message);
    this.name = 'UsageError';
  }
}

/** One problem in a configuration file. */
export interface ConfigProblem {
  /** Dotted key path, e.g. "session.idleTimeout" ("" for the document itself). */
  path: string;
  message: string;
  /** 1-based position in the YAML file, when known. */
  line?: number;
  col?: number;
}

/** "file:line:col: key.path: message": the one format of a configuration problem or warning. */
export function formatConfigProblem(file: string, p: ConfigProblem): string {
  const where = p.line !== undefined ? `${file}:${p.line}:${p.col ?? 1}` : file;
  return `${where}: ${p.path ? `${p.path}: ` : ''}${p.message}`;
}

export class ConfigError extends ProcessError {
  readonly file: string;
  readonly problems: ConfigProblem[];
  constructor(file: string, problems: ConfigProblem[]) {
    const lines = problems.map((p) => `  ${formatConfigProblem(file, p)}`);
    super('CONFIG_INVALID', `invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n${lines.join('\n')}`);
    this.name = 'ConfigError';
    this.file = file;
    this.problems = problems;
  }
}
