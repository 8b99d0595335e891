#!/usr/bin/env node
// `npm start`: the coatcheck demo.
//
// Starts the "legacy" demo app (examples/demo-app.mjs) on 127.0.0.1:3000 in this process,
// then coatcheck in front of it (node dist/cli.js --config config/demo.yaml, listening on
// 127.0.0.1:8080), forwards coatcheck's log lines, and prints a short walk-through once the
// proxy is listening. Ctrl-C (SIGINT) or SIGTERM stops coatcheck, waits for it to exit, closes
// the app and exits 0 (or coatcheck's own non-zero code, when its shutdown failed); coatcheck is
// killed if it has not stopped within 10 s. If the proxy exits on its own, the app is stopped and this
// script exits with the proxy's code. `npm start` runs this script with `exec`, so the signals
// npm forwards reach it (a plain `sh -c` would die on them and leave both running).
// COATCHECK_DEMO_PORT and COATCHECK_DEMO_APP_PORT move the two listeners (0: any free port).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { constants as osConstants } from 'node:os';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'dist', 'cli.js');
const CONFIG = join(ROOT, 'config', 'demo.yaml');
const APP_HOST = '127.0.0.1';
/** COATCHECK_DEMO_APP_PORT moves the demo app (0: any free port); coatcheck is told where it went. */
const APP_PORT = Number(process.env.COATCHECK_DEMO_APP_PORT || 3000);
const PROXY_URL = 'http://127.0.0.1:8080';
const STOP_TIMEOUT_MS = 10_000;

if (!existsSync(CLI)) {
  console.error(`demo: ${CLI} is missing: run npm install (or npm run build) first`);
  process.exit(1);
}
if (!existsSync(CONFIG)) {
  console.error(`demo: ${CONFIG} is missing`);
  process.exit(1);
}

const { startDemoApp } = await import(new URL('../examples/demo-app.mjs', import.meta.url).href);

/** @type {{ url: string, close(): Promise<void> }} */
let app;
try {
  app = await startDemoApp({ host: APP_HOST, port: APP_PORT, secret: process.env.DEMO_SECRET });
} catch (err) {
  const code = /** @type {NodeJS.ErrnoException} */ (err).code;
  console.error(
    code === 'EADDRINUSE'
      ? `demo: port ${APP_PORT} is already in use; stop whatever listens there and retry`
      : `demo: cannot start the demo app: ${String(err)}`,
  );
  process.exit(1);
}
console.error(`demo: legacy demo app listening on ${app.url}`);

const proxy = spawn(process.execPath, [CLI, '--config', CONFIG], {
  cwd: ROOT,
  env: { ...process.env, COATCHECK_DEMO_APP_PORT: String(new URL(app.url).port) },
  stdio: ['ignore', 'pipe', 'pipe'],
});
console.error(`demo: coatcheck starting (demo pid ${process.pid}, coatcheck pid ${proxy.pid})`);

let stopping = false;
let bannerShown = false;

function banner(port) {
  const url = port ? `http://127.0.0.1:${port}` : PROXY_URL;
  const lines = [
    '',
    '  coatcheck demo',
    `    legacy app (direct, vulnerable) ${app.url}`,
    `    coatcheck in front of it        ${url}   <- use this one`,
    '',
    '  Try it with curl (see the README walk-through), in a temporary folder for the cookie files:',
    '    cd "$(mktemp -d)"',
    `    curl -i -c jar.txt -d user=alice -d password=pw ${url}/login   # only a "coatcheck" ticket comes back`,
    `    curl -i -b jar.txt ${url}/profile                             # Hello, alice`,
    `    cp jar.txt stolen.txt; curl -i -b jar.txt ${url}/logout`,
    `    curl -i -b stolen.txt ${url}/profile                          # 401: the ticket was revoked`,
    '  The same against the app directly (no coatcheck):',
    `    curl -s -c app.txt -d user=alice -d password=pw ${app.url}/login; curl -s -b app.txt ${app.url}/logout`,
    `    curl -i -b app.txt ${app.url}/profile                          # 200: its own cookie outlives logout`,
    '',
    '  Ctrl-C stops both.',
    '',
  ];
  console.error(lines.join('\n'));
}

// Forward coatcheck's stdout line by line (it logs pino JSON) and watch for "listening".
createInterface({ input: proxy.stdout }).on('line', (line) => {
  process.stdout.write(line + '\n');
  if (bannerShown) return;
  try {
    const entry = JSON.parse(line);
    if (entry && entry.msg === 'listening') {
      bannerShown = true;
      banner(typeof entry.port === 'number' ? entry.port : undefined);
    }
  } catch {
    // not a JSON line: just forwarded
  }
});
proxy.stderr.pipe(process.stderr);

proxy.on('error', (err) => {
  console.error(`demo: cannot start coatcheck: ${err.message}`);
  void app.close().then(() => process.exit(1));
});

proxy.on('exit', (code, signal) => {
  // Ctrl-C in a terminal signals the whole process group, so coatcheck may get SIGINT
  // before (or instead of) the SIGTERM we send: that too is a requested stop.
  const requested = stopping || signal === 'SIGINT' || signal === 'SIGTERM';
  let exitCode;
  if (requested) exitCode = code ?? 0;
  else if (code !== null) exitCode = code;
  else exitCode = 128 + (osConstants.signals[/** @type {NodeJS.Signals} */ (signal)] ?? 0);
  if (!requested) console.error(`demo: coatcheck exited (${code !== null ? `code ${code}` : signal}); stopping the demo app`);
  void app.close().then(() => process.exit(exitCode));
});

function stop(signal) {
  // Ctrl-C under npm arrives twice (from the terminal, and forwarded by npm): one stop is enough.
  if (stopping) return;
  stopping = true;
  console.error(`\ndemo: ${signal}: stopping coatcheck and the demo app`);
  if (proxy.exitCode === null && proxy.signalCode === null) {
    proxy.kill('SIGTERM');
    setTimeout(() => {
      console.error('demo: coatcheck did not stop in time; killing it');
      proxy.kill('SIGKILL');
    }, STOP_TIMEOUT_MS).unref();
  }
  // The proxy's 'exit' handler closes the app and exits 0.
}
process.on('SIGINT', () => stop('SIGINT'));
process.on('SIGTERM', () => stop('SIGTERM'));
