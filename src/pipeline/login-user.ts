// The user id a login request names in its own body (a login rule's `user` option), so that the
// app needs no change to tell coatcheck whose session it is: a field of a urlencoded or multipart
// form, or a (dotted) key of a JSON body. Only matchRules calls this, for a login rule with
// `user`, on at most LOGIN_BODY_LIMIT bytes; the app gets the body byte for byte (FormBody).
import type { UserSource } from '../config/schema.js';

/** At most this many body bytes are read to find the user; a larger body is forwarded unread. */
export const LOGIN_BODY_LIMIT = 64 * 1024;
/** Longest user id kept (as for Coatcheck-User). */
export const MAX_USER_ID = 256;

/** The media type of a Content-Type value, lower-cased, without parameters. */
function mediaType(contentType: string | undefined): string {
  if (contentType === undefined) return '';
  const semi = contentType.indexOf(';');
  return (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
}

/** Is this body one whose size allows reading it for a user (announced length within the bound, or chunked)? */
export function mayReadLoginBody(headers: { 'content-length'?: string; 'transfer-encoding'?: string }): 'read' | 'too-large' | 'empty' {
  const len = headers['content-length'];
  if (len !== undefined) {
    const n = Number(len);
    if (n === 0) return 'empty';
    return n <= LOGIN_BODY_LIMIT ? 'read' : 'too-large';
  }
  return headers['transfer-encoding'] === undefined ? 'empty' : 'read';
}

/** A user id as kept: trimmed, 1 to MAX_USER_ID characters, no control characters. */
function userId(value: unknown): string | undefined {
  if (typeof value === 'number' && Number.isFinite(value)) value = String(value);
  if (typeof value !== 'string') return undefined;
  const v = value.trim();
  // eslint-disable-next-line no-control-regex
  return v.length > 0 && v.length <= MAX_USER_ID && !/[\u0000-\u001f\u007f]/.test(v) ? v : undefined;
}

/**
 * The user a login body names, per the rule's source; undefined when the body is not of the
 * source's kind, cannot be parsed, or has no usable value there (nothing is thrown: the login
 * goes on without a user).
 */
export async function userFromBody(source: UserSource, contentType: string | undefined, body: Buffer): Promise<string | undefined> {
  const type = mediaType(contentType);
  if ('jsonField' in source) {
    if (type !== 'application/json' && !type.endsWith('+json')) return undefined;
    let value: unknown;
    try {
      value = JSON.parse(body.toString('utf8'));
    } catch {
      return undefined;
    }
    for (const key of source.jsonField.split('.')) {
      if (value === null || typeof value !== 'object' || Array.isArray(value) || !Object.hasOwn(value, key)) return undefined;
      value = (value as Record<string, unknown>)[key];
    }
    return userId(value);
  }
  // A POST without Content-Type is read as a urlencoded form, as Rack reads it.
  if (type === 'application/x-www-form-urlencoded' || type === '') {
    return userId(new URLSearchParams(body.toString('utf8')).get(source.formField));
  }
  if (type === 'multipart/form-data' && contentType !== undefined) {
    try {
      // The platform's multipart parser (undici's, behind the Fetch API's Response).
      const form = await new Response(body, { headers: { 'content-type': contentType } }).formData();
      return userId(form.get(source.formField));
    } catch {
      return undefined;
    }
  }
  return undefined;
}
