// The user a login request names in its body (login rule `user`): forms, multipart, JSON with
// dotted paths, and every way a body can fail to name one (nothing thrown, no user).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LOGIN_BODY_LIMIT, mayReadLoginBody, userFromBody } from '../../src/pipeline/login-user.js';

const FORM = 'application/x-www-form-urlencoded';

async function multipart(fields: Record<string, string | Blob>): Promise<{ type: string; body: Buffer }> {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  const r = new Request('http://x/', { method: 'POST', body: form });
  return { type: r.headers.get('content-type') as string, body: Buffer.from(await r.arrayBuffer()) };
}

describe('userFromBody', () => {
  it('reads a urlencoded field (decoded, first occurrence, trimmed), also without a Content-Type', async () => {
    const src = { formField: 'username' };
    assert.equal(await userFromBody(src, FORM, Buffer.from('password=x&username=al%C3%AFce+b&username=mallory')), 'alïce b');
    assert.equal(await userFromBody(src, `${FORM}; charset=UTF-8`, Buffer.from('username=%20bob%20')), 'bob');
    assert.equal(await userFromBody(src, undefined, Buffer.from('username=carol')), 'carol');
  });

  it('reads a multipart field, never a file part', async () => {
    const src = { formField: 'username' };
    const m = await multipart({ username: 'dave', password: 'x' });
    assert.equal(await userFromBody(src, m.type, m.body), 'dave');
    const file = await multipart({ username: new Blob(['not a user id']) });
    assert.equal(await userFromBody(src, file.type, file.body), undefined);
    assert.equal(await userFromBody(src, 'multipart/form-data; boundary=x', Buffer.from('garbage')), undefined);
  });

  it('reads a JSON key or dotted path; numbers count, other types do not', async () => {
    const body = Buffer.from(JSON.stringify({ email: 'e@x', user: { email: 'nested@x', id: 42, tags: ['a'] } }));
    assert.equal(await userFromBody({ jsonField: 'email' }, 'application/json', body), 'e@x');
    assert.equal(await userFromBody({ jsonField: 'user.email' }, 'application/json; charset=utf-8', body), 'nested@x');
    assert.equal(await userFromBody({ jsonField: 'user.id' }, 'application/vnd.api+json', body), '42');
    assert.equal(await userFromBody({ jsonField: 'user.tags' }, 'application/json', body), undefined);
    assert.equal(await userFromBody({ jsonField: 'user.missing' }, 'application/json', body), undefined);
    assert.equal(await userFromBody({ jsonField: 'email.deeper' }, 'application/json', body), undefined);
    assert.equal(await userFromBody({ jsonField: 'constructor' }, 'application/json', Buffer.from('{}')), undefined, 'no inherited property');
  });

  it('names nobody when the body is not of the source kind, broken, empty, too long or has control characters', async () => {
    assert.equal(await userFromBody({ jsonField: 'email' }, FORM, Buffer.from('email=x')), undefined);
    assert.equal(await userFromBody({ formField: 'email' }, 'application/json', Buffer.from('{"email":"x"}')), undefined);
    assert.equal(await userFromBody({ jsonField: 'email' }, 'application/json', Buffer.from('{"email":')), undefined);
    assert.equal(await userFromBody({ formField: 'u' }, FORM, Buffer.from('u=')), undefined);
    assert.equal(await userFromBody({ formField: 'u' }, FORM, Buffer.from(`u=${'x'.repeat(257)}`)), undefined);
    assert.equal(await userFromBody({ formField: 'u' }, FORM, Buffer.from('u=a%0Ab')), undefined);
    assert.equal(await userFromBody({ formField: 'u' }, 'text/plain', Buffer.from('u=a')), undefined);
  });
});

describe('mayReadLoginBody', () => {
  it('reads a body announced within the bound or chunked; not a larger or empty one', () => {
    assert.equal(mayReadLoginBody({ 'content-length': String(LOGIN_BODY_LIMIT) }), 'read');
    assert.equal(mayReadLoginBody({ 'content-length': String(LOGIN_BODY_LIMIT + 1) }), 'too-large');
    assert.equal(mayReadLoginBody({ 'content-length': '0' }), 'empty');
    assert.equal(mayReadLoginBody({ 'transfer-encoding': 'chunked' }), 'read');
    assert.equal(mayReadLoginBody({}), 'empty');
  });
});
