// The jar a write stores: a session's cookies with a response's changes applied in order,
// within maxCookiesPerSession and maxJarBytes (a cookie over them is dropped with a warning).
import type { Cookie } from 'tough-cookie';
import type { JarChange } from '../cookies/jar.js';
import type { Logger } from '../log.js';
import { jarBytesOf } from './record.js';
import type { SessionLimits } from './types.js';

/**
 * The jar a write stores: `base` (what the session holds), then the response's changes in
 * order, within the per-session limits (a cookie over them is dropped with a warning naming
 * it). `changed` is false when the changes left the jar as it was.
 */
export function buildJar(
  base: ReadonlyMap<string, Cookie>,
  changes: readonly JarChange[],
  logId: string,
  limits: SessionLimits,
  logger: Logger,
): { cookies: Map<string, Cookie>; changed: boolean } {
  const cookies = new Map(base);
  let bytes = 0;
  for (const [field, cookie] of cookies) bytes += jarBytesOf(field, cookie);
  let changed = false;
  for (const change of changes) {
    if (change.kind === 'set') {
      const previous = cookies.get(change.field);
      const count = cookies.size + (previous === undefined ? 1 : 0);
      const after = bytes - (previous ? jarBytesOf(change.field, previous) : 0) + jarBytesOf(change.field, change.cookie);
      if (count > limits.maxCookiesPerSession || after > limits.maxJarBytes) {
        logger.warn(
          {
            event: 'session.jar_limit',
            session: logId,
            cookieName: change.name,
            count,
            bytes: after,
            maxCookies: limits.maxCookiesPerSession,
            maxBytes: limits.maxJarBytes,
          },
          'cookie dropped: the session jar is over its limit',
        );
        continue;
      }
      cookies.set(change.field, change.cookie);
      bytes = after;
      changed = true;
    } else if (change.kind === 'delete') {
      const previous = cookies.get(change.field);
      if (previous === undefined) continue;
      cookies.delete(change.field);
      bytes -= jarBytesOf(change.field, previous);
      changed = true;
    }
  }
  return { cookies, changed };
}
