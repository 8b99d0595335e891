// Key paths in a parsed YAML document (config/positions.ts): the node and line:col at a path, the
// path at an offset, every scalar value with its path, dotted names, document order.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LineCounter, parseDocument } from 'yaml';
import type { Document } from 'yaml';
import { dotted, locate, pathAtOffset, positionsFrom, sortProblems, walkScalars } from '../../src/config/positions.js';
import type { At, Path } from '../../src/config/positions.js';

const LINES = [
  'listen: ":8080"', // 1
  'store:',
  '  kind: redis', // 3
  '  url:',
  'session: { managed: [a, b] }', // 5
  'login:',
  '  - path: /x', // 7
  '    methods: [GET]',
  'base: &r { x: 1 }', // 9
  'again: *r',
];

function parse(lines: string[]): { doc: Document; at: At; offsetOf: (snippet: string) => number } {
  const text = lines.join('\n');
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, strict: true });
  const offsetOf = (snippet: string): number => {
    const i = text.indexOf(snippet);
    assert.ok(i !== -1, `snippet ${JSON.stringify(snippet)} not in the test document`);
    return i;
  };
  return { doc, at: positionsFrom(lineCounter), offsetOf };
}

/** 1-based line:col of the first occurrence of `snippet` (the test's own oracle); {} for null. */
function pos(lines: string[], snippet: string | null): { line?: number; col?: number } {
  if (snippet === null) return {};
  for (let i = 0; i < lines.length; i++) {
    const col = (lines[i] as string).indexOf(snippet);
    if (col !== -1) return { line: i + 1, col: col + 1 };
  }
  throw new Error(`snippet ${JSON.stringify(snippet)} not in the test document`);
}

describe('dotted', () => {
  const cases: [Path, string][] = [
    [[], ''],
    [['upstream'], 'upstream'],
    [['session', 'idleTimeout'], 'session.idleTimeout'],
    [['logout', 0, 'methods'], 'logout[0].methods'],
    [['secrets', 1], 'secrets[1]'],
    [[0], '[0]'],
    [['a', 0, 1], 'a[0][1]'],
  ];
  for (const [path, want] of cases) {
    it(`${JSON.stringify(path)} → ${JSON.stringify(want)}`, () => assert.equal(dotted(path), want));
  }
});

describe('positionsFrom', () => {
  it('gives 1-based line:col and keeps the offset; nothing for an unknown offset', () => {
    const { at } = parse(['a: 1', '  # comment', 'bb: 2']);
    assert.deepEqual(at(0), { line: 1, col: 1, offset: 0 });
    assert.deepEqual(at(3), { line: 1, col: 4, offset: 3 });
    assert.deepEqual(at(17), { line: 3, col: 1, offset: 17 });
    assert.deepEqual(at(undefined), {});
  });
});

describe('locate', () => {
  interface Case {
    name: string;
    path: Path;
    exists: boolean;
    /** Where `offset` points (the value when the path exists, else the nearest node reached). */
    value: string | null;
    /** Where `keyOffset` points (the key of the deepest pair reached). */
    key: string | null;
  }
  const cases: Case[] = [
    { name: 'a top-level value', path: ['listen'], exists: true, value: '":8080"', key: 'listen' },
    { name: 'a nested value', path: ['store', 'kind'], exists: true, value: 'redis', key: 'kind' },
    { name: 'a key with no value points at the key only', path: ['store', 'url'], exists: true, value: null, key: 'url' },
    { name: 'a missing key: the parent mapping and its key', path: ['store', 'prefix'], exists: false, value: 'kind: redis', key: 'store' },
    { name: 'a list item in a flow mapping (no key of its own)', path: ['session', 'managed', 1], exists: true, value: 'b]', key: null },
    { name: 'an index past the end: the list and its key', path: ['session', 'managed', 5], exists: false, value: '[a, b]', key: 'managed' },
    { name: 'a block list of mappings', path: ['login', 0, 'methods', 0], exists: true, value: 'GET', key: null },
    { name: 'a missing list item', path: ['login', 3], exists: false, value: '- path', key: 'login' },
    { name: 'through an alias, to the anchored node', path: ['again', 'x'], exists: true, value: '1 }', key: 'x: 1' },
    { name: 'the document itself', path: [], exists: true, value: 'listen', key: null },
    { name: 'a missing top-level key', path: ['nope'], exists: false, value: 'listen', key: null },
    { name: 'below a scalar', path: ['listen', 'x'], exists: false, value: '":8080"', key: 'listen' },
  ];
  const { doc, at } = parse(LINES);
  for (const c of cases) {
    it(c.name, () => {
      const found = locate(doc, c.path);
      assert.equal(found.exists, c.exists);
      const lineCol = (offset: number | undefined) => {
        const { line, col } = at(offset);
        return line === undefined ? {} : { line, col };
      };
      assert.deepEqual(lineCol(found.offset), pos(LINES, c.value), 'offset');
      assert.deepEqual(lineCol(found.keyOffset), pos(LINES, c.key), 'keyOffset');
    });
  }

  it('finds nothing in an empty document', () => {
    for (const text of ['', '# only a comment', '---']) {
      const found = locate(parse([text]).doc, ['upstream']);
      assert.deepEqual([found.exists, found.offset, found.keyOffset], [false, undefined, undefined], JSON.stringify(text));
    }
  });
});

describe('pathAtOffset', () => {
  const cases: [string, Path][] = [
    ['listen', ['listen']],
    ['":8080"', ['listen']],
    ['kind', ['store', 'kind']],
    ['redis', ['store', 'kind']],
    ['b]', ['session', 'managed', 1]],
    ['/x', ['login', 0, 'path']],
    ['GET', ['login', 0, 'methods', 0]],
  ];
  const { doc, offsetOf } = parse(LINES);
  for (const [snippet, want] of cases) {
    it(`${JSON.stringify(snippet)} is in ${JSON.stringify(want)}`, () => assert.deepEqual(pathAtOffset(doc, offsetOf(snippet)), want));
  }

  it('names the key of a duplicate, not its value', () => {
    const { doc: dup, offsetOf: at } = parse(['cookie:', '  name: a', '  name: b']);
    assert.deepEqual(pathAtOffset(dup, at('name: b')), ['cookie', 'name']);
  });
});

describe('walkScalars', () => {
  it('visits every scalar value (never a key, never through an alias) with its path', () => {
    const { doc } = parse(LINES);
    const seen: [string, unknown][] = [];
    walkScalars(doc.contents, [], (node, path) => seen.push([dotted(path), node.value]));
    assert.deepEqual(seen, [
      ['listen', ':8080'],
      ['store.kind', 'redis'],
      ['store.url', null],
      ['session.managed[0]', 'a'],
      ['session.managed[1]', 'b'],
      ['login[0].path', '/x'],
      ['login[0].methods[0]', 'GET'],
      ['base.x', 1],
    ]);
  });
});

describe('sortProblems', () => {
  it('orders by offset, keeps the found order for equal offsets, puts unpositioned last, drops the offset', () => {
    const sorted = sortProblems([
      { path: 'c', message: 'no position' },
      { path: 'b', message: 'first at 5', line: 2, col: 1, offset: 5 },
      { path: 'a', message: 'at 2', line: 1, col: 3, offset: 2 },
      { path: 'b', message: 'second at 5', line: 2, col: 1, offset: 5 },
    ]);
    assert.deepEqual(sorted, [
      { path: 'a', message: 'at 2', line: 1, col: 3 },
      { path: 'b', message: 'first at 5', line: 2, col: 1 },
      { path: 'b', message: 'second at 5', line: 2, col: 1 },
      { path: 'c', message: 'no position' },
    ]);
  });
});
