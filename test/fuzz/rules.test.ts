// Property tests of rule matching (issue 13): path normalization is idempotent and never throws;
// every spelling of a logout path that a framework would route to it (percent-encoded
// unreserved characters, dot segments, doubled slashes, `;` parameters, a trailing slash, case,
// a format suffix) matches the logout rule.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { configSchema } from '../../src/config/schema.js';
import { normalizePath, ruleMatches, rulePath } from '../../src/pipeline/rules.js';
import { fuzz } from './settings.js';

const rules = configSchema.parse({ upstream: 'http://127.0.0.1:1', secrets: ['x'.repeat(32)], logout: [{ path: '/account/logout' }] }).logout.rules;

const UNRESERVED = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~';

/** One spelling of a segment: each character as itself, its other case, or %XX (either hex case). */
function spellSegment(segment: string): fc.Arbitrary<string> {
  return fc
    .tuple(...segment.split('').map((c) => fc.constantFrom(c, c.toUpperCase(), c.toLowerCase(), `%${c.charCodeAt(0).toString(16).toUpperCase()}`, `%${c.charCodeAt(0).toString(16)}`)))
    .map((cs) => cs.join(''));
}

/** Noise a path may carry and a server resolves away: `./`, `x/../`, `//`, `;params`. */
const detour = fc.constantFrom('', '', '/.', '/x/..', '/./', '/', '/a/b/../..', '/..');
const params = fc.constantFrom('', '', ';jsessionid=ABC', ';a=b;c', ';');

/** Spellings of /account/logout that frameworks route to it. */
const logoutSpelling = fc
  .tuple(detour, spellSegment('account'), params, detour, spellSegment('logout'), params, fc.constantFrom('', '/', '.json', '.html'), fc.constantFrom('', '?next=/', '?a=%2F'))
  .map(([d1, a, p1, d2, l, p2, tail, query]) => `${d1}/${a}${p1}${d2}/${l}${p2}${tail}${query}`.replace(/^\/\//, '/'));

const anyPath = fc.oneof(
  fc.string({ maxLength: 80 }).map((s) => `/${s}`),
  fc.array(fc.oneof(fc.string({ unit: fc.constantFrom(...UNRESERVED.split(''), '%', '/', '.', ';', '?', '#', ':', '@'), maxLength: 12 })), { maxLength: 8 }).map((a) => `/${a.join('/')}`),
);

describe('fuzz: rule paths', () => {
  it('normalizePath never throws and is idempotent', () => {
    fc.assert(
      fc.property(fc.oneof(anyPath, logoutSpelling), (raw) => {
        const once = normalizePath(raw.split('?')[0] as string);
        assert.equal(normalizePath(once), once, `normalizing ${JSON.stringify(raw)} twice`);
      }),
      fuzz(1000),
    );
  });

  it('every spelling that normalizes to the logout path matches the logout rule', () => {
    fc.assert(
      fc.property(logoutSpelling, fc.constantFrom('GET', 'POST', 'HEAD'), (target, method) => {
        const pathOnly = target.split('?')[0] as string;
        const path = rulePath(target, normalizePath(pathOnly));
        const lower = path.toLowerCase().replace(/\/$/, '').replace(/\.(json|html)$/, '');
        if (lower !== '/account/logout') return;
        assert.ok(ruleMatches(rules, method === 'HEAD' ? ['HEAD', 'GET'] : method, path), `${method} ${JSON.stringify(target)} (${path}) escaped the logout rule`);
      }),
      fuzz(1000),
    );
  });
});
