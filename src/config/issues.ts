// From zod issues to configuration problems: the messages (zod's built-in issues reworded, values
// described but never a secret), union issues narrowed to the branch that was meant, unknown keys
// with a "did you mean", and each problem's key path and line:col.
import { z } from 'zod';
import type { Document } from 'yaml';
import { configSchema } from './schema.js';
import { dotted, locate } from './positions.js';
import type { At, Located, Path, PathSeg } from './positions.js';

type Issue = z.core.$ZodIssue;

const NOUNS: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping',
};

function describe(input: unknown, path: readonly PropertyKey[]): string {
  if (input === null) return 'null';
  if (Array.isArray(input)) return 'a list';
  if (typeof input === 'object') return 'a mapping';
  // Values under secrets are never echoed.
  if (path[0] === 'secrets') return typeof input === 'string' ? 'a string' : `a ${typeof input}`;
  if (typeof input === 'string') return JSON.stringify(input.length > 60 ? `${input.slice(0, 57)}...` : input);
  return String(input);
}

/**
 * Messages for zod's built-in issues; messages written in the schema take precedence. Passed to
 * `safeParse` as its error map.
 */
export function issueMessage(iss: z.core.$ZodRawIssue): string | undefined {
  const path = iss.path ?? [];
  const got = (): string => `, got ${describe(iss.input, path)}`;
  switch (iss.code) {
    case 'invalid_type':
      if (iss.input === undefined) return 'required';
      return `expected ${NOUNS[iss.expected] ?? iss.expected}${got()}`;
    case 'invalid_value': {
      const values = iss.values.map((v) => JSON.stringify(v));
      return `expected ${values.length === 1 ? values[0] : `one of ${values.join(', ')}`}${got()}`;
    }
    case 'too_small': {
      const min = Number(iss.minimum);
      if (iss.origin === 'array' || iss.origin === 'set') return `needs at least ${min} item${min === 1 ? '' : 's'}`;
      if (iss.origin === 'string') return min === 1 ? 'must not be empty' : `needs at least ${min} characters`;
      return `must be ${iss.inclusive ? 'at least' : 'greater than'} ${min}${got()}`;
    }
    case 'too_big': {
      const max = Number(iss.maximum);
      if (iss.origin === 'array' || iss.origin === 'set') return `takes at most ${max} item${max === 1 ? '' : 's'}`;
      if (iss.origin === 'string') return `takes at most ${max} characters`;
      return `must be ${iss.inclusive ? 'at most' : 'less than'} ${max}${got()}`;
    }
    case 'invalid_format':
      return iss.format === 'starts_with' && 'prefix' in iss ? `must start with ${JSON.stringify(iss.prefix)}` : `has an invalid format${got()}`;
    default:
      return undefined;
  }
}

/** What a problem is placed with: the document, the parsed data, and line:col of offsets. */
export interface IssueSource {
  doc: Document;
  /** The data that was validated (for describing a value that fits no branch of a union). */
  data: unknown;
  at: At;
  /** Dotted paths already reported (their interpolation failed): issues at or under them are noise. */
  reported: readonly string[];
}

/** One problem per issue (one per key for unknown keys), each with its key path and line:col. */
export function issueProblems(issues: readonly Issue[], source: IssueSource): Located[] {
  const problems: Located[] = [];
  for (const issue of flattenIssues(issues, [])) {
    const p = dotted(issue.path);
    if (source.reported.some((f) => p === f || p.startsWith(`${f}.`) || p.startsWith(`${f}[`))) continue;
    if (issue.code === 'unrecognized_keys') problems.push(...unknownKeyProblems(issue, source));
    else problems.push(valueProblem(issue, source));
  }
  return problems;
}

/** `unknown key "idelTimeout" (did you mean "idleTimeout"?)`, at the key. */
function unknownKeyProblems(issue: FlatIssue, { doc, at }: IssueSource): Located[] {
  return issue.keys.map((key) => {
    const found = locate(doc, [...issue.path, key]);
    const suggestion = suggest(key, knownKeys(issue.path));
    return {
      path: dotted([...issue.path, key]),
      message: `unknown key ${JSON.stringify(key)}${suggestion ? ` (did you mean ${JSON.stringify(suggestion)}?)` : ''}`,
      ...at(found.keyOffset ?? found.offset),
    };
  });
}

/** At the value when it is there; else at the nearest key (or node) that is. */
function valueProblem(issue: FlatIssue, { doc, data, at }: IssueSource): Located {
  const found = locate(doc, issue.path);
  let message = found.exists || issue.code !== 'invalid_type' ? issue.message : 'required';
  if (issue.union && found.exists) message += `, got ${describe(valueAt(data, issue.path), issue.path)}`;
  return {
    path: dotted(issue.path),
    message,
    ...at(found.exists ? (found.offset ?? found.keyOffset) : (found.keyOffset ?? found.offset)),
  };
}

interface FlatIssue {
  code: Issue['code'];
  path: Path;
  message: string;
  keys: string[];
  /** A union none of whose branches fit: its message gets the value appended. */
  union: boolean;
}

/**
 * Flattens union issues: when one branch matches the value's type (its errors are all deeper, or
 * not about the type), that branch's issues are reported; otherwise the union's own message.
 */
function flattenIssues(issues: readonly Issue[], prefix: Path): FlatIssue[] {
  const out: FlatIssue[] = [];
  for (const issue of issues) {
    const path = [...prefix, ...(issue.path as Path)];
    if (issue.code === 'invalid_union' && issue.errors.length > 0) {
      const typeMismatch = (branch: readonly Issue[]) =>
        branch.some((b) => b.path.length === 0 && (b.code === 'invalid_type' || b.code === 'invalid_value' || b.code === 'invalid_union'));
      const match = issue.errors.find((branch) => branch.length > 0 && !typeMismatch(branch));
      if (match) {
        out.push(...flattenIssues(match, path));
        continue;
      }
    }
    out.push({ code: issue.code, path, message: issue.message, keys: issue.code === 'unrecognized_keys' ? issue.keys : [], union: issue.code === 'invalid_union' });
  }
  return out;
}

function valueAt(data: unknown, path: Path): unknown {
  let v = data;
  for (const seg of path) v = v && typeof v === 'object' ? (v as Record<PathSeg, unknown>)[seg] : undefined;
  return v;
}

/**
 * The keys the schema accepts for the object at `path` (walking defaults, pipes, unions).
 * Only zod 4's public API: `instanceof` on the classic schema classes and their accessors
 * (`unwrap()`, `in`, `options`, `element`, `shape`), so no `_zod.def` internals. Every schema in
 * schema.ts is built with classic `z`; a kind of schema not listed here contributes no keys.
 */
export function knownKeys(path: Path): string[] {
  const keys = new Set<string>();
  const visit = (schema: z.core.$ZodType, rest: Path): void => {
    if (
      schema instanceof z.ZodDefault ||
      schema instanceof z.ZodPrefault ||
      schema instanceof z.ZodOptional ||
      schema instanceof z.ZodNullable ||
      schema instanceof z.ZodReadonly
    ) {
      visit(schema.unwrap(), rest);
    } else if (schema instanceof z.ZodPipe) {
      visit(schema.in, rest);
    } else if (schema instanceof z.ZodUnion) {
      for (const option of schema.options) visit(option, rest);
    } else if (schema instanceof z.ZodArray) {
      if (rest.length > 0 && typeof rest[0] === 'number') visit(schema.element, rest.slice(1));
    } else if (schema instanceof z.ZodObject) {
      const shape = schema.shape;
      if (rest.length === 0) {
        for (const k of Object.keys(shape)) keys.add(k);
        return;
      }
      const child = typeof rest[0] === 'string' ? shape[rest[0]] : undefined;
      if (child) visit(child, rest.slice(1));
    }
  };
  visit(configSchema, path);
  return [...keys];
}

/** The closest known key, when it is obviously what was meant. */
export function suggest(key: string, known: readonly string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/[-_\s]/g, '');
  const same = known.filter((k) => norm(k) === norm(key));
  if (same.length === 1) return same[0];
  let best: string | undefined;
  let bestDistance = Infinity;
  let tie = false;
  for (const k of known) {
    const d = editDistance(norm(key), norm(k));
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
      tie = false;
    } else if (d === bestDistance) {
      tie = true;
    }
  }
  const limit = key.length <= 4 ? 1 : key.length <= 7 ? 2 : 3;
  return best !== undefined && !tie && bestDistance <= limit ? best : undefined;
}

/** Optimal string alignment distance (a swap of two neighbours counts as one edit). */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  const get = (i: number, j: number): number => (d[i] as number[])[j] as number;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(get(i - 1, j) + 1, get(i, j - 1) + 1, get(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, get(i - 2, j - 2) + 1);
      (d[i] as number[])[j] = v;
    }
  }
  return get(a.length, b.length);
}
