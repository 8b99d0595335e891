// Loading a configuration file: read it, then run the steps of loadConfigText. Every problem of
// a step is collected and reported at once, in document order, as one ConfigError.
//   parse (YAML with line:col) → syntax (syntax.ts) → top level is a mapping → ${VAR}
//   interpolation (interpolate.ts) → validation (schema.ts, problems from issues.ts) → deep
//   freeze → warnings (warnings.ts)
import { readFile } from 'node:fs/promises';
import { Document as YamlDocument, isMap, isScalar, LineCounter, parseDocument } from 'yaml';
import type { Document } from 'yaml';
import { ConfigError } from '../errors.js';
import { interpolate } from './interpolate.js';
import { issueMessage, issueProblems } from './issues.js';
import { dotted, positionsFrom, sortProblems, walkScalars } from './positions.js';
import type { At, Located } from './positions.js';
import { configSchema } from './schema.js';
import type { Config } from './schema.js';
import { syntaxProblems } from './syntax.js';
import { collectWarnings } from './warnings.js';

export interface LoadedConfig {
  /** The validated configuration, deep-frozen. */
  config: Readonly<Config>;
  /** Risks that are allowed but worth saying out loud, e.g. `file:3:11: cookie.secure: ...`. */
  warnings: string[];
}

/** Reads and loads a configuration file. Throws ConfigError for every kind of failure. */
export async function loadConfigFile(file: string, env: NodeJS.ProcessEnv): Promise<LoadedConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [{ path: '', message: readFailure((err as NodeJS.ErrnoException).code) }]);
  }
  return loadConfigText(text, file, env);
}

function readFailure(code: string | undefined): string {
  if (code === 'ENOENT') return 'configuration file not found';
  if (code === 'EISDIR') return 'is a directory, not a configuration file';
  if (code === 'EACCES' || code === 'EPERM') return 'configuration file is not readable (permission denied)';
  return `cannot read configuration file${code ? ` (${code})` : ''}`;
}

/** Loads configuration text; `file` is only used in messages. Throws ConfigError. */
export function loadConfigText(text: string, file: string, env: NodeJS.ProcessEnv): LoadedConfig {
  const { doc, at } = parse(text);
  // A broken document is not validated further.
  const syntax = syntaxProblems(doc, at);
  if (syntax.length > 0) throw new ConfigError(file, sortProblems(syntax));
  const topLevel = topLevelProblem(doc, at);
  if (topLevel) throw new ConfigError(file, [topLevel]);
  const interpolated = interpolateValues(doc, env, at);
  const validated = validate(toData(doc, file), doc, at, interpolated.failed);
  const problems = [...interpolated.problems, ...validated.problems];
  if (!validated.config || problems.length > 0) throw new ConfigError(file, sortProblems(problems));
  const config = deepFreeze(validated.config);
  return { config, warnings: collectWarnings(config, { file, doc, at, defaulted: interpolated.defaulted }) };
}

/**
 * Loads a configuration given as an object (the library API, index.ts): the same schema, the
 * same messages and the same ConfigError as a file, without line:col (there is no text) and
 * without `${VAR}` interpolation (the caller has its environment at hand). `name` stands for the
 * file in messages.
 */
export function loadConfigObject(value: unknown, name: string): LoadedConfig {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError(name, [{ path: '', message: 'expected a mapping of configuration keys at the top level' }]);
  }
  // A document built from the object: key paths resolve as in a file; nodes carry no offsets.
  const doc = new YamlDocument(value);
  const at: At = () => ({});
  const validated = validate(value, doc, at, []);
  if (!validated.config || validated.problems.length > 0) throw new ConfigError(name, sortProblems(validated.problems));
  const config = deepFreeze(validated.config);
  return { config, warnings: collectWarnings(config, { file: name, doc, at, defaulted: new Map() }) };
}

/** The YAML document (a leading byte order mark dropped) and line:col of its offsets. */
function parse(text: string): { doc: Document; at: At } {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, strict: true });
  return { doc, at: positionsFrom(lineCounter) };
}

/** The document must be a mapping of keys, or empty. */
function topLevelProblem(doc: Document, at: At): Located | undefined {
  const contents = doc.contents;
  if (contents === null || isMap(contents) || (isScalar(contents) && contents.value === null)) return undefined;
  return { path: '', message: 'expected a mapping of configuration keys at the top level', ...at(contents.range?.[0]) };
}

interface Interpolated {
  problems: Located[];
  /** Dotted paths of the values whose interpolation failed. */
  failed: string[];
  /** Dotted path → the first variable whose default the value used. */
  defaulted: Map<string, string>;
}

/** `${VAR}` interpolation, in place, on every string scalar value (never keys). */
function interpolateValues(doc: Document, env: NodeJS.ProcessEnv, at: At): Interpolated {
  const out: Interpolated = { problems: [], failed: [], defaulted: new Map() };
  walkScalars(doc.contents, [], (node, path) => {
    if (typeof node.value !== 'string' || !node.value.includes('$')) return;
    const r = interpolate(node.value, env);
    if ('error' in r) {
      out.problems.push({ path: dotted(path), message: r.error, ...at(node.range?.[0]) });
      out.failed.push(dotted(path));
      return;
    }
    node.value = r.value;
    const firstDefaulted = r.defaulted[0];
    if (firstDefaulted !== undefined) out.defaulted.set(dotted(path), firstDefaulted);
  });
  return out;
}

/** Plain data from the document; an empty document is an empty mapping. Aliases are capped. */
function toData(doc: Document, file: string): unknown {
  try {
    return doc.toJS({ maxAliasCount: 100 }) ?? {};
  } catch (err) {
    throw new ConfigError(file, [{ path: '', message: `cannot read the document: ${(err as Error).message}` }]);
  }
}

/** Validation against the schema: the config, or its problems (none at or under `failed`). */
function validate(data: unknown, doc: Document, at: At, failed: readonly string[]): { config?: Config; problems: Located[] } {
  const result = configSchema.safeParse(data, { error: issueMessage });
  if (!result.success) return { problems: issueProblems(result.error.issues, { doc, data, at, reported: failed }) };
  return { config: result.data, problems: [] };
}

function deepFreeze<T>(value: T): Readonly<T> {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
