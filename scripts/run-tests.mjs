#!/usr/bin/env node
// Runs every compiled test file (build/test/**/*.test.js) and the examples' tests
// (examples/**/*.test.mjs) with node's test runner.
// Node 20 neither expands globs nor skips helpers when given a folder, so the files are listed here.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function collect(dir, suffix) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...collect(p, suffix));
    else if (name.endsWith(suffix)) out.push(p);
  }
  return out;
}

const filter = process.argv.slice(2);
// The examples' tests are plain JavaScript, run as a user would run them (they import the
// package by name: dist/, through package.json "exports").
let files = [...collect('build/test', '.test.js'), ...collect('examples', '.test.mjs')];
if (filter.length > 0) files = files.filter((f) => filter.some((x) => f.includes(x)));
if (files.length === 0) {
  console.error('no test files found under build/test');
  process.exit(1);
}
// A test that waits for an event that never comes fails after this long instead of hanging the run.
const TEST_TIMEOUT_MS = 120_000;
const r = spawnSync(process.execPath, ['--test', '--test-reporter=spec', `--test-timeout=${TEST_TIMEOUT_MS}`, ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
