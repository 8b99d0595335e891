// Key paths in the parsed YAML document: the node (and so the line:col) at a key path, the key
// path at a source offset, every scalar value with its key path, and problems in document order.
import { isAlias, isMap, isPair, isScalar, isSeq } from 'yaml';
import type { Document, LineCounter, Node as YamlNode, Scalar } from 'yaml';
import type { ConfigProblem } from '../errors.js';

export type PathSeg = string | number;
export type Path = PathSeg[];

/** Problem plus the source offset used to sort into document order. */
export interface Located extends ConfigProblem {
  offset?: number;
}

export type Position = Pick<Located, 'line' | 'col' | 'offset'>;

/** Turns a source offset into line:col (keeping the offset for sorting); nothing when unknown. */
export type At = (offset: number | undefined) => Position;

export function positionsFrom(lineCounter: LineCounter): At {
  return (offset) => {
    if (offset === undefined) return {};
    const { line, col } = lineCounter.linePos(offset);
    return { line, col, offset };
  };
}

/** `session.idleTimeout`, `logout[0].methods`; "" for the document itself. */
export function dotted(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out;
}

export interface Found {
  /** Whether the whole path exists in the document. */
  exists: boolean;
  /** Start of the deepest node reached (the value node when the path exists). */
  offset?: number;
  /** Start of the key of the deepest pair reached. */
  keyOffset?: number;
}

/** Finds the node at `path`, or the nearest existing parent. */
export function locate(doc: Document, path: Path): Found {
  let node: unknown = doc.contents;
  let keyOffset: number | undefined;
  const start = (n: unknown): number | undefined => (n && typeof n === 'object' && 'range' in n ? (n as YamlNode).range?.[0] : undefined);
  if (isScalar(node) && node.value === null && path.length > 0) return { exists: false };
  for (const seg of path) {
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && String(isScalar(p.key) ? p.key.value : p.key) === String(seg));
      if (!pair) return { exists: false, offset: start(node), keyOffset };
      keyOffset = start(pair.key);
      node = pair.value;
      // "key:" with no value: point at the key.
      if (node === null || (isScalar(node) && node.value === null && (!node.range || node.range[0] === node.range[1]))) {
        node = null;
        continue;
      }
    } else if (isSeq(node) && typeof seg === 'number' && seg < node.items.length) {
      node = node.items[seg];
      keyOffset = undefined;
    } else {
      return { exists: false, offset: start(node), keyOffset };
    }
  }
  return { exists: true, offset: start(node), keyOffset };
}

/** The path of the deepest node (or pair key) containing `offset`. */
export function pathAtOffset(doc: Document, offset: number): Path {
  const contains = (n: unknown): boolean => {
    const r = n && typeof n === 'object' && 'range' in n ? (n as YamlNode).range : undefined;
    return !!r && r[0] <= offset && offset <= r[2];
  };
  const path: Path = [];
  let node: unknown = doc.contents;
  for (;;) {
    if (isMap(node)) {
      // Keys first: a value's range ends after its line break, so it also "contains" column 1
      // of the next line, where the next key starts.
      const pair = node.items.find((p) => contains(p.key)) ?? node.items.find((p) => contains(p.value));
      if (!pair) return path;
      path.push(String(isScalar(pair.key) ? pair.key.value : pair.key));
      if (contains(pair.key)) return path;
      node = pair.value;
    } else if (isSeq(node)) {
      const i = node.items.findIndex((item) => contains(item));
      if (i === -1) return path;
      path.push(i);
      node = node.items[i];
    } else {
      return path;
    }
  }
}

/** Calls `fn` with every scalar value under `node` (never a key) and its path. */
export function walkScalars(node: unknown, path: Path, fn: (node: Scalar, path: Path) => void): void {
  if (isScalar(node)) {
    fn(node, path);
  } else if (isMap(node)) {
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? pair.key.value : pair.key;
      walkScalars(pair.value, [...path, String(key)], fn);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => walkScalars(item, [...path, i], fn));
  }
}

/** Document order (problems without a position last), then the order they were found in. */
export function sortProblems<T extends Located>(problems: T[]): ConfigProblem[] {
  return problems
    .map((p, i) => ({ p, i }))
    .sort((a, b) => (a.p.offset ?? Infinity) - (b.p.offset ?? Infinity) || a.i - b.i)
    .map(({ p }) => {
      const { offset: _offset, ...rest } = p;
      return rest;
    });
}
