// Loading a configuration file: YAML (with line:col for every node), ${VAR} interpolation,
// validation against the one schema (schema.ts), and a deep-frozen, typed result.
// Every problem is collected and reported at once, in document order, as one ConfigError.
import { readFile } from 'node:fs/promises';
import { Alias, isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit } from 'yaml';
import type { Document, Node as YamlNode, Scalar } from 'yaml';
import type { z } from 'zod';
import { ConfigError, formatConfigProblem } from '../errors.js';
import type { ConfigProblem } from '../errors.js';
import { configSchema } from './schema.js';
import type { Config } from './schema.js';

export interface LoadedConfig {
  /** The validated configuration, deep-frozen. */
  config: Readonly<Config>;
  /** Risks that are allowed but worth saying out loud, e.g. `file:3:11: cookie.secure: ...`. */
  warnings: string[];
}

type PathSeg = string | number;
type Path = PathSeg[];

/** Problem plus the source offset used to sort into document order. */
interface Located extends ConfigProblem {
  offset?: number;
}

/** Reads and loads a configuration file. Throws ConfigError for every kind of failure. */
export async function loadConfigFile(file: string, env: NodeJS.ProcessEnv): Promise<LoadedConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const message =
      code === 'ENOENT'
        ? 'configuration file not found'
        : code === 'EISDIR'
          ? 'is a directory, not a configuration file'
          : code === 'EACCES' || code === 'EPERM'
            ? 'configuration file is not readable (permission denied)'
            : `cannot read configuration file${code ? ` (${code})` : ''}`;
    throw new ConfigError(file, [{ path: '', message }]);
  }
  return loadConfigText(text, file, env);
}

/** Loads configuration text; `file` is only used in messages. Throws ConfigError. */
export function loadConfigText(text: string, file: string, env: NodeJS.ProcessEnv): LoadedConfig {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, strict: true });
  const at = (offset: number | undefined): Pick<Located, 'line' | 'col' | 'offset'> => {
    if (offset === undefined) return {};
    const { line, col } = lineCounter.linePos(offset);
    return { line, col, offset };
  };

  // 1. YAML syntax (duplicate keys included). A broken document is not validated further.
  const syntax: Located[] = [];
  for (const err of [...doc.errors, ...doc.warnings]) {
    const offset = err.pos[0];
    if (err.code === 'DUPLICATE_KEY') {
      const path = pathAtOffset(doc, offset);
      const key = path[path.length - 1];
      syntax.push({ path: dotted(path), message: `duplicate key ${JSON.stringify(String(key ?? ''))}`, ...at(offset) });
    } else {
      // The document's structure is broken here, so a key path would be a guess: none is given.
      syntax.push({ path: '', message: yamlMessage(err.message), ...at(offset) });
    }
  }
  visit(doc, {
    Alias(_key, node) {
      if (!node.resolve(doc)) {
        syntax.push({
          path: '',
          message: `unknown alias ${JSON.stringify(`*${node.source}`)} (no anchor ${JSON.stringify(`&${node.source}`)} before it)`,
          ...at(node.range?.[0]),
        });
      }
    },
  });
  if (syntax.length > 0) throw new ConfigError(file, sortProblems(syntax));

  const contents = doc.contents;
  if (contents !== null && !isMap(contents) && !(isScalar(contents) && contents.value === null)) {
    throw new ConfigError(file, [{ path: '', message: 'expected a mapping of configuration keys at the top level', ...at(contents.range?.[0]) }]);
  }

  // 2. ${VAR} interpolation, in place, on every string scalar value (never keys).
  const problems: Located[] = [];
  const failed: string[] = [];
  const defaulted = new Map<string, string>();
  walkScalars(contents, [], (node, path) => {
    if (typeof node.value !== 'string' || !node.value.includes('$')) return;
    const r = interpolate(node.value, env);
    if ('error' in r) {
      problems.push({ path: dotted(path), message: r.error, ...at(node.range?.[0]) });
      failed.push(dotted(path));
      return;
    }
    node.value = r.value;
    const firstDefaulted = r.defaulted[0];
    if (firstDefaulted !== undefined) defaulted.set(dotted(path), firstDefaulted);
  });

  // 3. Validation.
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 }) ?? {};
  } catch (err) {
    throw new ConfigError(file, [{ path: '', message: `cannot read the document: ${(err as Error).message}` }]);
  }
  const result = configSchema.safeParse(data, { error: issueMessage });
  if (!result.success) {
    for (const issue of flattenIssues(result.error.issues, [])) {
      const path = issue.path;
      const p = dotted(path);
      // A value whose interpolation failed has already been reported; its checks are noise.
      if (failed.some((f) => p === f || p.startsWith(`${f}.`) || p.startsWith(`${f}[`))) continue;
      if (issue.code === 'unrecognized_keys') {
        for (const key of issue.keys) {
          const found = locate(doc, [...path, key]);
          const known = knownKeys(path);
          const suggestion = suggest(key, known);
          problems.push({
            path: dotted([...path, key]),
            message: `unknown key ${JSON.stringify(key)}${suggestion ? ` (did you mean ${JSON.stringify(suggestion)}?)` : ''}`,
            ...at(found.keyOffset ?? found.offset),
          });
        }
        continue;
      }
      const found = locate(doc, path);
      let message = found.exists || issue.code !== 'invalid_type' ? issue.message : 'required';
      if (issue.union && found.exists) message += `, got ${describe(valueAt(data, path), path)}`;
      problems.push({
        path: p,
        message,
        ...at(found.exists ? (found.offset ?? found.keyOffset) : (found.keyOffset ?? found.offset)),
      });
    }
  } else if (problems.length === 0) {
    const config = deepFreeze(result.data);
    return { config, warnings: collectWarnings(config, doc, defaulted, file, at) };
  }
  throw new ConfigError(file, sortProblems(problems));
}

// ---------------------------------------------------------------------------------------------
// Warnings: allowed, but risky. Never include a secret's value.

function collectWarnings(
  config: Config,
  doc: Document,
  defaulted: Map<string, string>,
  file: string,
  at: (offset: number | undefined) => Pick<Located, 'line' | 'col' | 'offset'>,
): string[] {
  const out: Located[] = [];
  const warn = (path: Path, message: string): void => {
    // A warning about a default points at the parent key when there is one, else nowhere.
    const found = locate(doc, path);
    out.push({ path: dotted(path), message, ...at(found.exists ? (found.offset ?? found.keyOffset) : found.keyOffset) });
  };
  if (!config.cookie.secure) {
    warn(['cookie', 'secure'], 'is false, so the ticket cookie travels over plain HTTP, where anyone on the network can copy it and take over the session; use only for local development');
  }
  if (config.store.kind === 'memory') {
    const explicit = locate(doc, ['store', 'kind']).exists;
    warn(
      ['store', 'kind'],
      `is memory${explicit ? '' : ' (the default)'}: sessions live in this process only, are not shared between instances and are lost on restart; use redis in production`,
    );
  }
  const seen = new Map<string, number>();
  config.secrets.forEach((secret, i) => {
    const first = seen.get(secret);
    if (first !== undefined) {
      warn(['secrets', i], `is the same as secrets[${first}]`);
    } else {
      seen.set(secret, i);
    }
    const variable = defaulted.get(`secrets[${i}]`);
    if (variable !== undefined) {
      warn(['secrets', i], `environment variable ${JSON.stringify(variable)} is not set, so the default written in the configuration file is used; anyone who can read the file can forge tickets`);
    } else if (new Set(secret).size < 8) {
      warn(['secrets', i], `has only ${new Set(secret).size} distinct characters and looks like a placeholder; use a random value, e.g. \`openssl rand -base64 48\``);
    }
  });
  return sortProblems(out).map((w) => formatConfigProblem(file, w));
}

// ---------------------------------------------------------------------------------------------
// Environment interpolation.

const VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Expands `${VAR}` and `${VAR:-default}` (default used when VAR is unset or empty); `$$` is a
 * literal `$`; any other `$` is kept as is. The error never contains the text itself (it may be
 * a secret); only variable names.
 */
export function interpolate(
  text: string,
  env: NodeJS.ProcessEnv,
): { value: string; defaulted: string[] } | { error: string } {
  let out = '';
  const defaulted: string[] = [];
  const missing: string[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c !== '$') {
      out += c;
      i++;
      continue;
    }
    const next = text[i + 1];
    if (next === '$') {
      out += '$';
      i += 2;
      continue;
    }
    if (next !== '{') {
      out += '$';
      i++;
      continue;
    }
    const close = text.indexOf('}', i + 2);
    if (close === -1) {
      return { error: 'unterminated "${" (write ${NAME} or ${NAME:-default}, and $$ for a literal "$")' };
    }
    const body = text.slice(i + 2, close);
    const sep = body.indexOf(':-');
    const name = sep === -1 ? body : body.slice(0, sep);
    if (!VAR_NAME.test(name)) {
      return { error: 'malformed variable reference (write ${NAME} or ${NAME:-default}, and $$ for a literal "$")' };
    }
    const value = env[name];
    if (sep !== -1) {
      if (value === undefined || value === '') {
        out += body.slice(sep + 2);
        defaulted.push(name);
      } else {
        out += value;
      }
    } else if (value === undefined) {
      missing.push(name);
    } else {
      out += value;
    }
    i = close + 1;
  }
  if (missing.length > 0) {
    const names = missing.map((n) => JSON.stringify(n)).join(', ');
    return {
      error: `environment variable${missing.length > 1 ? 's' : ''} ${names} ${missing.length > 1 ? 'are' : 'is'} not set (give a default with \${NAME:-default})`,
    };
  }
  return { value: out, defaulted };
}

function walkScalars(node: unknown, path: Path, fn: (node: Scalar, path: Path) => void): void {
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

// ---------------------------------------------------------------------------------------------
// From zod issues to problems.

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

/** Messages for zod's built-in issues; messages written in the schema take precedence. */
function issueMessage(iss: z.core.$ZodRawIssue): string | undefined {
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

/** The keys the schema accepts for the object at `path` (walking defaults, pipes, unions). */
function knownKeys(path: Path): string[] {
  const keys = new Set<string>();
  const visit = (schema: z.core.$ZodType, rest: Path): void => {
    const def = schema._zod.def as unknown as Record<string, unknown> & { type: string };
    switch (def.type) {
      case 'default':
      case 'prefault':
      case 'optional':
      case 'nullable':
      case 'readonly':
        visit(def.innerType as z.core.$ZodType, rest);
        return;
      case 'pipe':
        visit(def.in as z.core.$ZodType, rest);
        return;
      case 'union':
        for (const option of def.options as z.core.$ZodType[]) visit(option, rest);
        return;
      case 'array':
        if (rest.length > 0 && typeof rest[0] === 'number') visit(def.element as z.core.$ZodType, rest.slice(1));
        return;
      case 'object': {
        const shape = def.shape as Record<string, z.core.$ZodType>;
        if (rest.length === 0) {
          for (const k of Object.keys(shape)) keys.add(k);
          return;
        }
        const child = typeof rest[0] === 'string' ? shape[rest[0]] : undefined;
        if (child) visit(child, rest.slice(1));
        return;
      }
      default:
        return;
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

// ---------------------------------------------------------------------------------------------
// Positions.

interface Found {
  /** Whether the whole path exists in the document. */
  exists: boolean;
  /** Start of the deepest node reached (the value node when the path exists). */
  offset?: number;
  /** Start of the key of the deepest pair reached. */
  keyOffset?: number;
}

/** Finds the node at `path`, or the nearest existing parent. */
function locate(doc: Document, path: Path): Found {
  let node: unknown = doc.contents;
  let keyOffset: number | undefined;
  const start = (n: unknown): number | undefined => (n && typeof n === 'object' && 'range' in n ? (n as YamlNode).range?.[0] : undefined);
  if (isScalar(node) && node.value === null && path.length > 0) return { exists: false };
  for (const seg of path) {
    if (isAlias(node)) node = (node as Alias).resolve(doc);
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
function pathAtOffset(doc: Document, offset: number): Path {
  const contains = (n: unknown): boolean => {
    const r = n && typeof n === 'object' && 'range' in n ? (n as YamlNode).range : undefined;
    return !!r && r[0] <= offset && offset <= r[2];
  };
  const path: Path = [];
  let node: unknown = doc.contents;
  for (;;) {
    if (isMap(node)) {
      const pair = node.items.find((p) => contains(p.key) || contains(p.value));
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

function valueAt(data: unknown, path: Path): unknown {
  let v = data;
  for (const seg of path) v = v && typeof v === 'object' ? (v as Record<PathSeg, unknown>)[seg] : undefined;
  return v;
}

function dotted(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out;
}

function yamlMessage(message: string): string {
  // yaml messages may end with " at line L, column C" and a code frame; the position is ours.
  const first = message.split('\n')[0] ?? message;
  return first.replace(/ at line \d+, column \d+:?$/, '').replace(/\.$/, '');
}

function sortProblems<T extends Located>(problems: T[]): ConfigProblem[] {
  return problems
    .map((p, i) => ({ p, i }))
    .sort((a, b) => (a.p.offset ?? Infinity) - (b.p.offset ?? Infinity) || a.i - b.i)
    .map(({ p }) => {
      const { offset: _offset, ...rest } = p;
      return rest;
    });
}

function deepFreeze<T>(value: T): Readonly<T> {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
