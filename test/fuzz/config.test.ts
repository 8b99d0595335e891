// Property test of configuration loading (issue 13): random mutations of the reference
// configuration (lines dropped, doubled, swapped or re-indented, values replaced by hostile
// scalars, characters inserted) either load or fail with a ConfigError — what the CLI turns into
// exit 2 — whose every problem is located (line:col in the file), never another exception.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { loadConfigText } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { REPO_ROOT } from '../helpers/coatcheck.js';
import { fuzz } from './settings.js';

const REFERENCE = readFileSync(join(REPO_ROOT, 'config', 'reference.yaml'), 'utf8');
const LINES = REFERENCE.split('\n');
const ENV = { COATCHECK_SECRET: 'fuzz-secret-0123456789-abcdefghijklmnopqrstuvwxyz' };

const scalar = fc.oneof(
  fc.constantFrom('', '~', 'null', 'true', 'no', '0', '-1', '1e309', '0x10', '.inf', '"unterminated', "'", '{', '[', '}', ']', '&a', '*a', '!!binary x', '${UNSET}', '${COATCHECK_SECRET', '|', '>', '- x', ': :', '#', '"\\u0000"', '10ms', '99999999999999999999h', 'ü', '/login', 'redis://x'),
  fc.string({ maxLength: 20 }),
);

type Mutation = (lines: string[]) => string[];
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.nat().map((i): Mutation => (l) => l.filter((_, j) => j !== i % l.length)),
  fc.nat().map((i): Mutation => (l) => [...l.slice(0, (i % l.length) + 1), l[i % l.length] as string, ...l.slice((i % l.length) + 1)]),
  fc.tuple(fc.nat(), fc.nat()).map(([i, j]): Mutation => (l) => {
    const out = [...l];
    const a = i % l.length;
    const b = j % l.length;
    [out[a], out[b]] = [out[b] as string, out[a] as string];
    return out;
  }),
  fc.tuple(fc.nat(), fc.constantFrom('', ' ', '   ', '\t', '    ')).map(([i, indent]): Mutation => (l) => l.map((line, j) => (j === i % l.length ? indent + line.trimStart() : line))),
  fc.tuple(fc.nat(), scalar).map(([i, v]): Mutation => (l) => {
    // Replace the value of the first `key: value` line at or after i.
    const out = [...l];
    for (let k = 0; k < l.length; k++) {
      const j = (i + k) % l.length;
      const m = /^(\s*[A-Za-z]+:)\s*(\S.*)$/.exec(l[j] as string);
      if (m && !(l[j] as string).trimStart().startsWith('#')) {
        out[j] = `${m[1]} ${v}`;
        break;
      }
    }
    return out;
  }),
  fc.tuple(fc.nat(), fc.nat(), fc.string({ unit: 'binary', minLength: 1, maxLength: 4 })).map(([i, at, chars]): Mutation => (l) => l.map((line, j) => (j === i % l.length ? line.slice(0, at % (line.length + 1)) + chars + line.slice(at % (line.length + 1)) : line))),
);

describe('fuzz: configuration', () => {
  it('a mutated reference configuration loads, or fails with located problems (exit 2), never a crash', () => {
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (mutations) => {
        const text = mutations.reduce((lines, m) => m(lines), LINES).join('\n');
        try {
          loadConfigText(text, 'fuzz.yaml', ENV);
        } catch (err) {
          assert.ok(err instanceof ConfigError, `not a ConfigError: ${(err as Error)?.stack ?? String(err)}\n--- config:\n${text}`);
          assert.ok(err.problems.length > 0);
          for (const p of err.problems) {
            assert.ok(p.line !== undefined && p.line >= 1, `a problem without a line: ${JSON.stringify(p)}\n--- config:\n${text}`);
            assert.ok(!/\n\s+at /.test(p.message), `a stack trace in a message: ${p.message}`);
          }
          assert.equal(err.exitCode, 2);
        }
      }),
      fuzz(300),
    );
  });
});
