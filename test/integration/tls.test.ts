// TLS on the proxy's listener, with self-signed certificates made here by openssl: requests
// over it count as https for the app's Secure cookies without trustProxy (over plain HTTP the
// same request does not get them), minVersion is enforced, the redirect listener sends plain
// HTTP to https, and a reload reads the certificate files again (new connections get the new
// certificate; a file that cannot be read changes nothing).
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { testConfig, startCoatcheck, type Harness } from '../helpers/coatcheck.js';
import { freePort } from '../helpers/redis-server.js';
import { selfSigned } from '../helpers/tls.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** SHA-256 fingerprint of the certificate the server presented. */
  fingerprint?: string;
}

/** One request on a new connection; `host` is the Host header (the public name), the socket goes to 127.0.0.1. */
function get(scheme: 'http' | 'https', port: number, path: string, opts: { host?: string; cookie?: string; ca?: Buffer; maxVersion?: 'TLSv1.2' } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { host: opts.host ?? `127.0.0.1:${port}` };
    if (opts.cookie) headers.cookie = opts.cookie;
    const options = { host: '127.0.0.1', port, path, headers, agent: false as const };
    const onResponse = (res: import('node:http').IncomingMessage) => {
      const fingerprint = scheme === 'https' ? (res.socket as TLSSocket).getPeerCertificate().fingerprint256 : undefined;
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, ...(fingerprint ? { fingerprint } : {}) }));
    };
    const req =
      scheme === 'https'
        ? httpsRequest({ ...options, ca: opts.ca, servername: 'localhost', ...(opts.maxVersion ? { maxVersion: opts.maxVersion } : {}) }, onResponse)
        : httpRequest(options, onResponse);
    req.on('error', reject);
    req.end();
  });
}

describe('tls', () => {
  let dir: string;
  let up: Upstream;
  let one: { cert: string; key: string };
  let two: { cert: string; key: string };
  let trusted: Buffer;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'coatcheck-tls-'));
    [one, two] = await Promise.all([selfSigned(dir, 'one'), selfSigned(dir, 'two')]);
    trusted = Buffer.concat([readFileSync(one.cert), readFileSync(two.cert)]);
    up = await startUpstream();
    // A Secure app cookie, as an app behind https sets it.
    up.route('/login', (_req, res) => {
      res.setHeader('set-cookie', 'sid=app-secret-value; Path=/; Secure; HttpOnly');
      res.end('ok');
    });
  });
  after(async () => {
    await up?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const withTls = (files: { cert: string; key: string }, extra: Record<string, unknown> = {}) => ({ tls: { cert: files.cert, key: files.key, ...extra } });

  /** Logs in on `host` and returns the Cookie header the app gets on the next request (with the ticket, when one was set). */
  async function appCookieAfterLogin(scheme: 'http' | 'https', cc: Harness, host: string): Promise<string | undefined> {
    const login = await get(scheme, cc.port, '/login', { host, ca: trusted });
    assert.equal(login.status, 200);
    const ticket = ((login.headers['set-cookie'] as string[] | undefined) ?? []).map((c) => c.split(';')[0]).find((c) => c?.startsWith('coatcheck='));
    const seen = up.nextRequest('/echo');
    assert.equal((await get(scheme, cc.port, '/echo', { host, ca: trusted, ...(ticket ? { cookie: ticket } : {}) })).status, 200);
    return (await seen).headers.cookie;
  }

  test('over TLS the app\'s Secure cookies go back to it for a public host name, without trustProxy; over plain HTTP they do not', async (t) => {
    const secure = await startCoatcheck(up.origin, withTls(one));
    t.after(() => secure.close());
    const plain = await startCoatcheck(up.origin);
    t.after(() => plain.close());
    assert.equal(secure.config.trustProxy, false);
    assert.equal(await appCookieAfterLogin('https', secure, 'app.example'), 'sid=app-secret-value');
    // Over plain HTTP the jar refuses a Secure cookie, as a browser does (so no session, no ticket).
    assert.equal(await appCookieAfterLogin('http', plain, 'app.example'), undefined, 'a Secure cookie never goes over plain HTTP to a public host');
  });

  test('minVersion: TLSv1.3 refuses a TLS 1.2 client', async (t) => {
    const cc = await startCoatcheck(up.origin, withTls(one, { minVersion: 'TLSv1.3' }));
    t.after(() => cc.close());
    await assert.rejects(get('https', cc.port, '/echo', { ca: trusted, maxVersion: 'TLSv1.2' }), /protocol version|alert/i);
    assert.equal((await get('https', cc.port, '/echo', { ca: trusted })).status, 200);
  });

  test('redirectFrom answers plain HTTP with 308 to the same host and target on https; bad Host gets 400', async (t) => {
    const redirectPort = await freePort();
    const cc = await startCoatcheck(up.origin, withTls(one, { redirectFrom: `127.0.0.1:${redirectPort}` }));
    t.after(() => cc.close());
    const r = await get('http', redirectPort, '/a/b?c=d', { host: 'app.example:8080' });
    assert.equal(r.status, 308);
    assert.equal(r.headers.location, `https://app.example:${cc.port}/a/b?c=d`);
    assert.equal((await get('http', redirectPort, '/', { host: 'evil.example/x' })).status, 400);
    assert.equal(up.received.filter((x) => x.url === '/a/b?c=d').length, 0, 'the app never sees it');
  });

  test('a reload reads the certificate files again: new connections get the new certificate; an unreadable file changes nothing', async (t) => {
    const live = { cert: join(dir, 'live.crt'), key: join(dir, 'live.key') };
    copyFileSync(one.cert, live.cert);
    copyFileSync(one.key, live.key);
    const cc = await startCoatcheck(up.origin, withTls(live));
    t.after(() => cc.close());
    const before = (await get('https', cc.port, '/echo', { ca: trusted })).fingerprint;
    // Renewed in place, as cert-manager or certbot does it.
    copyFileSync(two.cert, live.cert);
    copyFileSync(two.key, live.key);
    assert.equal((await get('https', cc.port, '/echo', { ca: trusted })).fingerprint, before, 'nothing changes before the reload');
    await cc.app.reload(testConfig(up.origin, withTls(live)));
    const after = (await get('https', cc.port, '/echo', { ca: trusted })).fingerprint;
    assert.ok(before && after && after !== before, 'the new certificate is served');
    assert.ok(cc.logs.events('config.reloaded').some((l) => l.tlsFilesReread === true));

    await assert.rejects(cc.app.reload(testConfig(up.origin, withTls({ cert: join(dir, 'missing.crt'), key: live.key }))), /tls\.cert: cannot read ".*missing\.crt" \(ENOENT\)/);
    assert.equal((await get('https', cc.port, '/echo', { ca: trusted })).fingerprint, after, 'still the certificate that was loaded');
  });

  test('a certificate that cannot be read stops the start with a clear error', async () => {
    await assert.rejects(startCoatcheck(up.origin, withTls({ cert: join(dir, 'nope.crt'), key: one.key })), /tls\.cert: cannot read ".*nope\.crt" \(ENOENT\)/);
  });
});
