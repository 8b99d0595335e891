// Docker cannot run where these tests run, so this proves what the image would run exists:
// the Dockerfile is parsed and checked against the repo, then the runtime stage's install is
// reproduced (production dependencies only, from package.json + package-lock.json, plus
// dist/ and config/) in a temp dir, and the CLI is run from there.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { REPO_ROOT } from '../helpers/coatcheck.js';


const ROOT = REPO_ROOT.replace(/\/$/, '');
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  version: string;
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};
const NO_DIST = 'dist/cli.js is missing: run npm run build first';

// ---------------------------------------------------------------------------------------
// A small Dockerfile parser: enough for instructions, stages, WORKDIR, COPY and exec form.

interface Instruction {
  keyword: string; // upper-case
  args: string; // the rest of the (joined) line
  line: number; // 1-based line where the instruction starts
}

interface Copy {
  from: string | undefined; // --from=<stage>
  sources: string[];
  dest: string; // absolute, resolved against WORKDIR
  rawDest: string; // as written
  line: number;
}

interface Stage {
  image: string;
  name: string | undefined;
  instructions: Instruction[];
  copies: Copy[];
  workdir: string;
}

function parseInstructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  let current: { text: string; line: number } | undefined;
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const trimmed = raw.trim();
    if (trimmed.startsWith('#')) return; // comments (also inside a continuation) and parser directives
    if (!current && trimmed === '') return;
    const continued = /\\\s*$/.test(raw);
    const piece = continued ? raw.replace(/\\\s*$/, '') : raw;
    if (current) current.text += ' ' + piece.trim();
    else current = { text: piece.trim(), line: i + 1 };
    if (!continued) {
      const m = /^(\S+)\s*(.*)$/s.exec(current.text);
      if (m) out.push({ keyword: m[1]!.toUpperCase(), args: m[2]!.trim(), line: current.line });
      current = undefined;
    }
  });
  return out;
}

/** Splits "--flag=x --other a b c" into flags and words; JSON exec form is supported too. */
function splitArgs(args: string): { flags: Map<string, string>; words: string[] } {
  const flags = new Map<string, string>();
  let rest = args;
  for (;;) {
    const m = /^--([a-z-]+)(?:=(\S*))?\s*/.exec(rest);
    if (!m) break;
    flags.set(m[1]!, m[2] ?? '');
    rest = rest.slice(m[0].length);
  }
  const words = rest.startsWith('[') ? (JSON.parse(rest) as string[]) : rest.split(/\s+/).filter(Boolean);
  return { flags, words };
}

function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  for (const ins of parseInstructions(text)) {
    if (ins.keyword === 'FROM') {
      const { words } = splitArgs(ins.args);
      const image = words[0] ?? '';
      const asIndex = words.findIndex((w) => w.toLowerCase() === 'as');
      const name = asIndex >= 0 ? words[asIndex + 1] : undefined;
      const parent = stages.find((s) => s.name === image);
      stages.push({ image, name, instructions: [ins], copies: [], workdir: parent ? parent.workdir : '/' });
      continue;
    }
    const stage = stages.at(-1);
    assert.ok(stage, `Dockerfile line ${ins.line}: ${ins.keyword} before the first FROM`);
    stage.instructions.push(ins);
    if (ins.keyword === 'WORKDIR') {
      stage.workdir = posix.resolve(stage.workdir, ins.args);
    } else if (ins.keyword === 'COPY' || ins.keyword === 'ADD') {
      const { flags, words } = splitArgs(ins.args);
      assert.ok(words.length >= 2, `Dockerfile line ${ins.line}: ${ins.keyword} needs a source and a destination`);
      stage.copies.push({
        from: flags.get('from'),
        sources: words.slice(0, -1),
        dest: posix.resolve(stage.workdir, words.at(-1)!),
        rawDest: words.at(-1)!,
        line: ins.line,
      });
    }
  }
  return stages;
}

/** Where a COPY puts one source: into dest/ when dest ends with '/' or there are several sources. */
function copyTarget(copy: Copy, source: string): string {
  return copy.rawDest.endsWith('/') || copy.sources.length > 1 ? posix.join(copy.dest, posix.basename(source)) : copy.dest;
}

/** The ENV values set in a stage (both `ENV K=V ...` and the legacy `ENV K V`). */
function envOf(stage: Stage): Map<string, string> {
  const env = new Map<string, string>();
  for (const ins of stage.instructions.filter((i) => i.keyword === 'ENV')) {
    if (/^[A-Za-z_][A-Za-z0-9_]*=/.test(ins.args)) {
      for (const m of ins.args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("([^"]*)"|\S*)/g)) env.set(m[1]!, m[3] ?? m[2]!);
    } else {
      const [key = '', ...value] = ins.args.split(/\s+/);
      env.set(key, value.join(' '));
    }
  }
  return env;
}

/** Minimal .dockerignore matching: exact paths, directory prefixes and `*` globs (no `!`). */
function ignoredBy(patterns: string[], path: string): string | undefined {
  const clean = posix.normalize(path).replace(/^\.\//, '').replace(/\/$/, '');
  for (const pattern of patterns) {
    const p = pattern.replace(/^\//, '').replace(/\/$/, '');
    const re = new RegExp('^' + p.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^/]*') + '(/.*)?$');
    if (re.test(clean)) return pattern;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------

const dockerfileText = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const stages = parseDockerfile(dockerfileText);
const finalStage = stages.at(-1)!;
const dockerignore = existsSync(join(ROOT, '.dockerignore'))
  ? readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'))
  : [];

describe('Dockerfile', () => {
  test('is multi-stage and every base image is Node 24', () => {
    assert.ok(stages.length >= 2, 'a build stage and a runtime stage');
    for (const stage of stages) {
      if (stages.some((s) => s !== stage && s.name === stage.image)) continue; // FROM <earlier stage>
      assert.match(stage.image, /^(docker\.io\/(library\/)?)?node:24(\.\d+){0,2}(-[a-z0-9.-]+)?(@sha256:[0-9a-f]{64})?$/, stage.image);
    }
    assert.ok(!finalStage.instructions.some((i) => i.keyword === 'RUN' && /\bnpm run build\b/.test(i.args)),
      'the runtime stage does not build (it copies dist/ from the build stage)');
  });

  test('every COPY source from the build context exists in the repo and is not .dockerignored', () => {
    let checked = 0;
    for (const stage of stages) {
      for (const copy of stage.copies.filter((c) => c.from === undefined)) {
        for (const source of copy.sources) {
          assert.ok(existsSync(join(ROOT, source)), `Dockerfile line ${copy.line}: COPY source ${source} does not exist in the repo`);
          assert.equal(ignoredBy(dockerignore, source), undefined, `Dockerfile line ${copy.line}: ${source} is excluded by .dockerignore`);
          checked++;
        }
      }
    }
    assert.ok(checked > 0);
  });

  test('every COPY --from source is produced by that stage (dist/ by the build) or copied into it', () => {
    const tsconfig = JSON.parse(readFileSync(join(ROOT, 'tsconfig.json'), 'utf8')) as { compilerOptions: { outDir: string } };
    let checked = 0;
    for (const stage of stages) {
      for (const copy of stage.copies.filter((c) => c.from !== undefined)) {
        const origin = stages.find((s) => s.name === copy.from || String(stages.indexOf(s)) === copy.from);
        assert.ok(origin && stages.indexOf(origin) < stages.indexOf(stage), `Dockerfile line ${copy.line}: unknown stage ${copy.from}`);
        for (const source of copy.sources) {
          const abs = posix.resolve(origin.workdir, source);
          const builtDir = posix.resolve(origin.workdir, tsconfig.compilerOptions.outDir);
          if (abs === builtDir || abs.startsWith(builtDir + '/')) {
            // Produced by `npm run build` (tsc -p tsconfig.json → outDir) in that stage, which
            // therefore needs the build inputs.
            assert.ok(origin.instructions.some((i) => i.keyword === 'RUN' && /\bnpm run build\b/.test(i.args)),
              `Dockerfile line ${copy.line}: stage ${copy.from} never runs npm run build`);
            assert.match(PKG.scripts.build ?? '', /tsc -p tsconfig\.json/);
            const copiedIn = origin.copies.flatMap((c) => c.sources);
            for (const input of ['package.json', 'package-lock.json', 'tsconfig.json', 'src']) {
              assert.ok(copiedIn.some((s) => s.replace(/^\.\//, '').replace(/\/$/, '') === input),
                `Dockerfile: stage ${copy.from} must COPY ${input} to build`);
            }
            checked++;
            continue;
          }
          // Otherwise it must be something that stage copied in from the context.
          const contextPath = origin.copies
            .filter((c) => c.from === undefined)
            .flatMap((c) => c.sources.map((s) => ({ s, target: copyTarget(c, s) })))
            .filter(({ target }) => abs === target || abs.startsWith(target + '/'))
            .map(({ s, target }) => posix.join(s, posix.relative(target, abs)))
            .at(-1);
          assert.ok(contextPath, `Dockerfile line ${copy.line}: ${source} is neither built nor copied into stage ${copy.from}`);
          assert.ok(existsSync(join(ROOT, contextPath)), `Dockerfile line ${copy.line}: ${source} comes from ${contextPath}, missing in the repo`);
          checked++;
        }
      }
    }
    assert.ok(checked > 0, 'the runtime stage copies from the build stage');
  });

  test('the runtime stage installs production dependencies only, as a non-root user', () => {
    const env = envOf(finalStage);
    assert.equal(env.get('NODE_ENV'), 'production');
    const install = finalStage.instructions.find((i) => i.keyword === 'RUN' && /\bnpm ci\b/.test(i.args));
    assert.ok(install, 'the runtime stage runs npm ci');
    assert.match(install.args, /--omit=dev\b/);
    const copied = finalStage.copies.filter((c) => c.from === undefined).flatMap((c) => c.sources);
    for (const f of ['package.json', 'package-lock.json']) assert.ok(copied.includes(f), `runtime stage copies ${f}`);

    const users = finalStage.instructions.filter((i) => i.keyword === 'USER');
    assert.ok(users.length > 0, 'the runtime stage sets USER');
    const user = users.at(-1)!.args.split(':')[0]!;
    assert.ok(!['root', '0', ''].includes(user), `runtime user ${user} must not be root`);
    const userLine = users.at(-1)!.line;
    const entryLine = finalStage.instructions.find((i) => i.keyword === 'ENTRYPOINT')?.line ?? Infinity;
    assert.ok(userLine < entryLine, 'USER comes before ENTRYPOINT');
  });

  test('ENTRYPOINT runs dist/cli.js that the runtime stage copied in; config path and port are set', () => {
    const entry = finalStage.instructions.filter((i) => i.keyword === 'ENTRYPOINT').at(-1);
    assert.ok(entry, 'ENTRYPOINT is set');
    assert.ok(entry.args.startsWith('['), 'exec form, so signals reach node');
    const argv = JSON.parse(entry.args) as string[];
    assert.equal(argv[0], 'node');
    const script = posix.resolve(finalStage.workdir, argv[1] ?? '');
    assert.match(script, /\/dist\/cli\.js$/);
    const distCopy = finalStage.copies.find((c) => c.from !== undefined && c.sources.some((s) => /(^|\/)dist\/?$/.test(s)));
    assert.ok(distCopy, 'the runtime stage copies dist/ from the build stage');
    assert.ok(script.startsWith(distCopy.dest + '/'), `${script} lies inside ${distCopy.dest}`);
    assert.ok(existsSync(join(ROOT, 'src', 'cli.ts')), 'src/cli.ts (compiled to dist/cli.js) exists');
    assert.equal(PKG.version.length > 0, true);

    const env = envOf(finalStage);
    assert.equal(env.get('COATCHECK_CONFIG'), '/etc/coatcheck/config.yaml');
    assert.ok(finalStage.instructions.some((i) => i.keyword === 'EXPOSE' && /\b8080\b/.test(i.args)), 'EXPOSE 8080');
  });

  test('the CLI reads COATCHECK_CONFIG (the image passes no --config)', () => {
    const files: string[] = [];
    const walk = (dir: string): void => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        if (e.isDirectory()) walk(join(dir, e.name));
        else if (e.name.endsWith('.ts')) files.push(join(dir, e.name));
      }
    };
    walk(join(ROOT, 'src'));
    assert.ok(files.some((f) => readFileSync(f, 'utf8').includes('COATCHECK_CONFIG')), 'some file under src/ reads COATCHECK_CONFIG');
  });

  test('.dockerignore keeps local state out of the build context', () => {
    for (const p of ['node_modules', 'dist', 'build', '.git', 'bench/results']) {
      assert.ok(ignoredBy(dockerignore, p), `.dockerignore excludes ${p}`);
    }
    for (const p of ['src', 'package.json', 'package-lock.json', 'tsconfig.json', 'config']) {
      assert.equal(ignoredBy(dockerignore, p), undefined, `.dockerignore keeps ${p}`);
    }
  });
});

// ---------------------------------------------------------------------------------------

function run(
  cmd: string,
  args: string[],
  options: { cwd: string; timeout: number; env?: NodeJS.ProcessEnv },
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { ...options, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr: stderr + (err && code === null ? `\n${err.message}` : '') });
    });
  });
}

describe('production-only install (what the runtime stage runs)', () => {
  let dir: string | undefined;
  const env = { ...process.env, NODE_ENV: 'production' };

  before(async () => {
    if (!existsSync(join(ROOT, 'dist', 'cli.js'))) throw new Error(NO_DIST);
    dir = mkdtempSync(join(tmpdir(), 'coatcheck-image-'));
    for (const f of ['package.json', 'package-lock.json']) cpSync(join(ROOT, f), join(dir, f));
    cpSync(join(ROOT, 'dist'), join(dir, 'dist'), { recursive: true });
    if (existsSync(join(ROOT, 'config'))) cpSync(join(ROOT, 'config'), join(dir, 'config'), { recursive: true });
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const r = await run(npm, ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund'], {
      cwd: dir,
      env,
      timeout: 240_000,
    });
    assert.equal(r.code, 0, `npm ci --omit=dev failed:\n${r.stdout}\n${r.stderr}`);
  }, { timeout: 270_000 });

  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('installs every dependency and no devDependency', () => {
    assert.ok(dir);
    for (const name of Object.keys(PKG.dependencies)) {
      assert.ok(existsSync(join(dir, 'node_modules', name, 'package.json')), `${name} installed`);
    }
    for (const name of Object.keys(PKG.devDependencies)) {
      assert.ok(!existsSync(join(dir, 'node_modules', name)), `${name} (dev) not installed`);
    }
  });

  test('node dist/cli.js --version exits 0 and prints the package version', async () => {
    assert.ok(dir);
    const r = await run(process.execPath, ['dist/cli.js', '--version'], { cwd: dir, env, timeout: 30_000 });
    assert.equal(r.code, 0, `exit code ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    const escaped = PKG.version.replace(/\./g, '\\.');
    assert.match(r.stdout.trim(), new RegExp(`(^|[^\\d.])v?${escaped}$`), `stdout: ${r.stdout}`);
  });

  test('check-config validates the shipped demo config with production dependencies only', async (t) => {
    assert.ok(dir);
    if (!existsSync(join(dir, 'config', 'demo.yaml'))) {
      t.skip('config/demo.yaml does not exist yet');
      return;
    }
    const r = await run(process.execPath, ['dist/cli.js', 'check-config', '--config', 'config/demo.yaml'], {
      cwd: dir,
      env,
      timeout: 30_000,
    });
    assert.equal(r.code, 0, `exit code ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  });
});
