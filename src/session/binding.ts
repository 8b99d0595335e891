// Binding a session to its client (user agent, address prefix): stored as a hash keyed by the
// session's own jar key, so it needs no server secret; compared in constant time.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { SessionMeta } from './record.js';

/** The stored form of a binding: keyed by the session's own key, so it needs no server secret. */
export function bindHash(jarKey: Buffer, material: string): string {
  return createHmac('sha256', jarKey).update('coatcheck/v1/bind\0').update(material).digest('base64url').slice(0, 22);
}

/** Does a request's binding material match what the session was bound to? */
export function bindingMatches(meta: Readonly<SessionMeta>, jarKey: Buffer, material: string): boolean {
  if (meta.bind === undefined) return true;
  const a = Buffer.from(meta.bind);
  const b = Buffer.from(bindHash(jarKey, material));
  return a.length === b.length && timingSafeEqual(a, b);
}
