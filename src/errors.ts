// One catalogue of errors: each has a stable code and the HTTP status it maps to.

export const ErrorCodes = {
  CONFIG_INVALID: { code: 'COATCHECK_ERR_CONFIG_INVALID', status: 500 },
  USAGE: { code: 'COATCHECK_ERR_USAGE', status: 500 },
  STORE_UNAVAILABLE: { code: 'COATCHECK_ERR_STORE_UNAVAILABLE', status: 503 },
  UPSTREAM_UNAVAILABLE: { code: 'COATCHECK_ERR_UPSTREAM_UNAVAILABLE', status: 502 },
  UPSTREAM_TIMEOUT: { code: 'COATCHECK_ERR_UPSTREAM_TIMEOUT', status: 504 },
  UPSTREAM_PROTOCOL: { code: 'COATCHECK_ERR_UPSTREAM_PROTOCOL', status: 502 },
  SESSION_REVOKED: { code: 'COATCHECK_ERR_SESSION_REVOKED', status: 401 },
  SESSION_EXPIRED: { code: 'COATCHECK_ERR_SESSION_EXPIRED', status: 401 },
  SESSION_BINDING: { code: 'COATCHECK_ERR_SESSION_BINDING', status: 401 },
  BAD_REQUEST: { code: 'COATCHECK_ERR_BAD_REQUEST', status: 400 },
  INTERNAL: { code: 'COATCHECK_ERR_INTERNAL', status: 500 },
} as const;

export type ErrorKind = keyof typeof ErrorCodes;

export class CoatcheckError extends Error {
  readonly kind: ErrorKind;
  readonly code: string;
  readonly status: number;
  constructor(kind: ErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CoatcheckError';
    this.kind = kind;
    this.code = ErrorCodes[kind].code;
    this.status = ErrorCodes[kind].status;
  }
}

export class StoreUnavailableError extends CoatcheckError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('STORE_UNAVAILABLE', message, options);
    this.name = 'StoreUnavailableError';
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

export class ConfigError extends CoatcheckError {
  readonly file: string;
  readonly problems: ConfigProblem[];
  constructor(file: string, problems: ConfigProblem[]) {
    super('CONFIG_INVALID', ConfigError.format(file, problems));
    this.name = 'ConfigError';
    this.file = file;
    this.problems = problems;
  }

  static format(file: string, problems: ConfigProblem[]): string {
    const lines = problems.map((p) => {
      const where = p.line !== undefined ? `${file}:${p.line}:${p.col ?? 1}` : file;
      return `  ${where}: ${p.path ? `${p.path}: ` : ''}${p.message}`;
    });
    return `invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n${lines.join('\n')}`;
  }
}

export class UsageError extends CoatcheckError {
  constructor(message: string) {
    super('USAGE', message);
    this.name = 'UsageError';
  }
}

/** Maps any failure to the one status and code a client sees. Never exposes internals. */
export function statusOf(err: unknown): { status: number; code: string } {
  if (err instanceof CoatcheckError) return { status: err.status, code: err.code };
  return { status: 500, code: ErrorCodes.INTERNAL.code };
}
