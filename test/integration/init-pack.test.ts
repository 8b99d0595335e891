// First run: `coatcheck init` writes a starter configuration that passes check-config, with a
// fresh secret that is never printed, and never overwrites a file; and the package as the
// registry would ship it (`npm pack`, installed from the tarball into an empty project): the bin
// runs, `import 'coatcheck'` and `coatcheck/testing` resolve with their types, and the tarball
// holds what it needs and nothing else.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { loadConfigText } from '../../src/config/load.js';
import { UsageError } from '../../src/errors.js';
import { starterConfig, writeStarterConfig } from '../../src/init.js';
import { REPO_ROOT, runCliToEnd } from '../helpers/coatcheck.js';

const PKG = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { name: string; version: string };


/** Runs the built CLI to its end. */
const cli = (args: string[], env: NodeJS.ProcessEnv = {}) => runCliToEnd(args, env);

function run(cmd: string, args: string[], cwd: string, timeout: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, timeout, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false' } }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr: stderr + (err && code === null ? `\n${err.message}` : '') });
    });
  });
}

let dir: string;
before(async () => {
  assert.ok(existsSync(join(REPO_ROOT, 'dist', 'cli.js')), 'dist/cli.js is missing: run npm run build first');
  dir = await mkdtemp(join(tmpdir(), 'coatcheck-init-'));
});
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('coatcheck init', () => {
  /** The secret line of a starter configuration. */
  const secretOf = (text: string) => /^ {2}- "([A-Za-z0-9_-]+)"$/m.exec(text)?.[1];

  test('writes a commented configuration with a fresh secret (mode 0600, never printed) that passes check-config', async () => {
    const [out, other] = [join(dir, 'a.yaml'), join(dir, 'b.yaml')];
    // Two runs (together: each is a node start-up), two secrets.
    const [r, r2] = await Promise.all([out, other].map((f) => cli(['init', '--upstream', 'http://127.0.0.1:3000', '--out', f])));
    assert.equal(r?.code, 0, r?.stderr);
    assert.equal(r2?.code, 0, r2?.stderr);
    const text = readFileSync(out, 'utf8');
    const secret = secretOf(text);
    assert.ok(secret && secret.length >= 64, 'a secret of 48 random bytes');
    assert.notEqual(secretOf(readFileSync(other, 'utf8')), secret);
    assert.ok(!r.stdout.includes(secret) && !r.stderr.includes(secret), 'the secret is not printed');
    assert.match(r.stderr, new RegExp(`wrote ${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    assert.equal(statSync(out).mode & 0o777, 0o600);
    assert.ok(text.split('\n').filter((l) => l.trimStart().startsWith('#')).length >= 15, 'commented');
    const check = await cli(['check-config', '--config', out]);
    assert.equal(check.code, 0, check.stderr);
    const config = parseYaml(check.stdout) as { upstream: string; store: { kind: string }; admin: { listen: string } };
    assert.equal(config.upstream, 'http://127.0.0.1:3000');
    assert.equal(config.store.kind, 'memory');
    assert.equal(config.admin.listen, '127.0.0.1:9090');
    assert.ok(!check.stdout.includes(secret), 'check-config redacts it');
  });

  test('--redis gives a Redis store (the same loader as check-config)', () => {
    const text = starterConfig({ upstream: 'http://app:3000', redis: 'redis://redis:6379/0' }, 'x'.repeat(64));
    const { config } = loadConfigText(text, 'starter.yaml', {});
    assert.equal(config.store.kind, 'redis');
    assert.equal(config.store.url, 'redis://redis:6379/0');
  });

  test('refuses to overwrite a file: exit 2, the file unchanged', async () => {
    const out = join(dir, 'mine.yaml');
    await writeFile(out, 'my own configuration\n');
    const r = await cli(['init', '--upstream', 'http://127.0.0.1:3000', '--out', out]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /exists already; not overwriting it/);
    assert.equal(readFileSync(out, 'utf8'), 'my own configuration\n');
  });

  test('bad input: exit 2 with a message naming the flag, nothing written', async () => {
    const out = join(dir, 'bad.yaml');
    const cases: Array<[string[], RegExp[]]> = [
      [['init', '--out', out], [/init needs --upstream URL/]],
      [
        ['init', '--upstream', 'ftp://x', '--redis', 'http://x', '--out', out],
        [/--upstream: expected an http:\/\/ or https:\/\/ URL, got "ftp:\/\/x"/, /--redis: expected a redis:\/\/ or rediss:\/\/ URL/],
      ],
      [['init', '--upstream', 'http://127.0.0.1:3000', '--config', out], [/use --out FILE, not --config/]],
      [['--upstream', 'http://127.0.0.1:3000', '--config', out], [/--upstream is an option of init only/]],
    ];
    // Independent processes: run together (each is a node start-up).
    const results = await Promise.all(cases.map(([args]) => cli(args)));
    cases.forEach(([args, messages], i) => {
      assert.equal(results[i]?.code, 2, args.join(' '));
      for (const m of messages) assert.match(results[i]?.stderr ?? '', m);
    });
    assert.equal(existsSync(out), false);
    await assert.rejects(
      writeStarterConfig({ upstream: 'http://127.0.0.1:3000', out: join(dir, 'no-such-dir', 'x.yaml') }),
      (e: unknown) => e instanceof UsageError && /cannot write .*\(ENOENT\)/.test(e.message),
    );
  });
});

describe('the npm package', () => {
  let files: string[] = [];
  let project: string;

  before(async () => {
    // --ignore-scripts: "prepare" would rebuild dist/ under the other tests' feet; the suite builds it first.
    const packed = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], REPO_ROOT, 60_000);
    assert.equal(packed.code, 0, packed.stderr);
    const [info] = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    assert.ok(info);
    files = info.files.map((f) => f.path).sort();
    project = join(dir, 'project');
    await run('mkdir', ['-p', project], dir, 5_000);
    await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'uses-coatcheck', private: true, type: 'module' }));
    const installed = await run('npm', ['install', '--ignore-scripts', '--prefer-offline', join(dir, info.filename)], project, 240_000);
    assert.equal(installed.code, 0, `npm install of the tarball failed:\n${installed.stdout}\n${installed.stderr}`);
  }, { timeout: 300_000 });

  test('ships dist/ (JavaScript and types), config/, the README and the CHANGELOG; no sources, tests, source maps or deploy kit', () => {
    for (const f of ['package.json', 'README.md', 'CHANGELOG.md', 'dist/cli.js', 'dist/index.js', 'dist/index.d.ts', 'dist/testing.js', 'dist/testing.d.ts', 'config/reference.yaml']) {
      assert.ok(files.includes(f), `the tarball has ${f}`);
    }
    for (const f of files) {
      assert.match(f, /^(package\.json|README\.md|CHANGELOG\.md|LICENSE|dist\/.+\.(js|d\.ts)|config\/.+\.yaml)$/, `${f} should not be in the tarball`);
    }
  });

  test('npx coatcheck --help and --version work from the installed tarball', async () => {
    const [help, version] = await Promise.all([
      run('npx', ['--no-install', 'coatcheck', '--help'], project, 60_000),
      // The bin npm linked, without npx.
      run(join(project, 'node_modules', '.bin', 'coatcheck'), ['--version'], project, 60_000),
    ]);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /Usage:/);
    assert.match(help.stdout, /coatcheck init --upstream URL/);
    assert.equal(version.code, 0, version.stderr);
    assert.equal(version.stdout.trim(), PKG.version);
  });

  test('import "coatcheck" and "coatcheck/testing" resolve to the typed public API, and nothing else is importable', async () => {
    const script = [
      "const api = await import('coatcheck');",
      "const testing = await import('coatcheck/testing');",
      "let internal = 'importable';",
      "try { await import('coatcheck/dist/app.js'); } catch (e) { internal = e.code; }",
      'console.log(JSON.stringify({ api: Object.keys(api).sort(), testing: Object.keys(testing).sort(), internal }));',
    ].join('\n');
    await writeFile(join(project, 'probe.mjs'), script);
    const r = await run(process.execPath, ['probe.mjs'], project, 30_000);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), {
      api: ['ConfigError', 'startCoatcheck'],
      testing: ['CookieClient', 'LogRecorder', 'startDummyUpstream'],
      internal: 'ERR_PACKAGE_PATH_NOT_EXPORTED',
    });
    const pkg = JSON.parse(readFileSync(join(project, 'node_modules', PKG.name, 'package.json'), 'utf8')) as { exports: Record<string, { types: string }> };
    for (const entry of ['.', './testing']) {
      const types = pkg.exports[entry]?.types;
      assert.ok(types && existsSync(join(project, 'node_modules', PKG.name, types)), `the types of ${entry} are shipped`);
    }
  });
});
