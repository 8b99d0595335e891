// One function that turns a forwarding failure into the status a client sees.
import { CoatcheckError } from '../errors.js';

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT']);
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
]);

function codeOf(err: unknown): string | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 4 && e && typeof e === 'object'; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code !== 'UND_ERR') return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/** Maps an upstream failure to a CoatcheckError (502 unreachable or broken, 504 too slow). */
export function mapUpstreamError(err: unknown): CoatcheckError {
  if (err instanceof CoatcheckError) return err;
  const code = codeOf(err);
  if (code && TIMEOUT_CODES.has(code)) return new CoatcheckError('UPSTREAM_TIMEOUT', `upstream timed out (${code})`, { cause: err });
  if (code && UNAVAILABLE_CODES.has(code)) return new CoatcheckError('UPSTREAM_UNAVAILABLE', `upstream unavailable (${code})`, { cause: err });
  return new CoatcheckError('UPSTREAM_PROTOCOL', `upstream failed (${code ?? (err as Error)?.name ?? 'unknown'})`, { cause: err });
}

/** True for the errors undici raises when we aborted the request ourselves (client gone). */
export function isAbort(err: unknown): boolean {
  const code = codeOf(err);
  return code === 'UND_ERR_ABORTED' || code === 'ABORT_ERR' || (err as Error)?.name === 'AbortError';
}
