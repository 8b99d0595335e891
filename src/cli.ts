#!/usr/bin/env node
// The only file that touches the process: argv, env, signals, exit codes.
//   0 clean shutdown · 2 invalid configuration or usage · 1 runtime failure
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createCoatcheck } from './app.js';
import { loadConfigFile } from './config/load.js';
import { printConfig } from './config/print.js';
import { ConfigError, ProcessError, UsageError } from './errors.js';
import { createLogger } from './log.js';
import { applyHeapGrowth, heapGrowthSetting, HEAP_ENV, type HeapGrowth } from './heap.js';

const HELP = `coatcheck — keeps a legacy web app's cookies server-side; the browser holds one revocable ticket.

Usage:
  coatcheck --config FILE                 start the proxy
  coatcheck check-config --config FILE    validate FILE and print the effective configuration (secrets redacted)
  coatcheck --version | --help

Options:
  -c, --config FILE   configuration file (YAML); defaults to $COATCHECK_CONFIG
  -h, --help          show this help
  -v, --version       print the version

Environment:
  COATCHECK_CONFIG                  the configuration file when --config is not given
  ${HEAP_ENV}    how far the heap may grow past its live data before a full
                                    garbage collection, in per cent (default 30; 0: V8 chooses)

Exit codes: 0 clean shutdown, 2 invalid configuration or usage, 1 runtime failure.
Configuration reference: README.md and config/reference.yaml.
`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

interface Parsed {
  command: 'run' | 'check-config' | 'help' | 'version';
  configFile: string;
}

function parse(argv: string[], env: NodeJS.ProcessEnv): Parsed {
  let values: { config?: string; help?: boolean; version?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: 'string', short: 'c' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) return { command: 'help', configFile: '' };
  if (values.version) return { command: 'version', configFile: '' };
  if (positionals.length > 1 || (positionals.length === 1 && positionals[0] !== 'check-config')) {
    throw new UsageError(`unknown command "${positionals.join(' ')}" (commands: check-config)`);
  }
  const configFile = values.config ?? env.COATCHECK_CONFIG;
  if (!configFile) throw new UsageError('no configuration file: pass --config FILE or set COATCHECK_CONFIG');
  return { command: positionals[0] === 'check-config' ? 'check-config' : 'run', configFile };
}

async function main(): Promise<number> {
  let parsed: Parsed;
  let heapGrowingPercent: HeapGrowth;
  try {
    parsed = parse(process.argv.slice(2), process.env);
    heapGrowingPercent = heapGrowthSetting(process.execArgv, process.env);
  } catch (err) {
    if (!(err instanceof ProcessError)) throw err;
    process.stderr.write(`coatcheck: ${err.message}\nTry "coatcheck --help".\n`);
    return err.exitCode;
  }
  if (parsed.command === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  if (parsed.command === 'version') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }

  let loaded;
  try {
    loaded = await loadConfigFile(parsed.configFile, process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`coatcheck: ${err.message}\n`);
      return err.exitCode;
    }
    throw err;
  }
  const { config, warnings } = loaded;

  if (parsed.command === 'check-config') {
    for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
    process.stdout.write(printConfig(config));
    process.stderr.write(`${parsed.configFile}: configuration is valid\n`);
    return 0;
  }

  // Before the proxy allocates anything to speak of: see heap.ts.
  applyHeapGrowth(heapGrowingPercent);
  const logger = createLogger(config.log.level);
  for (const w of warnings) logger.warn({ event: 'config.warning' }, w);
  const app = createCoatcheck({ config, logger });

  let stopping = false;
  const stopped = new Promise<number>((resolve) => {
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      // close() stops accepting at once; the line is logged after that, so it can be relied on.
      const closed = app.close();
      logger.info({ event: 'shutdown', signal }, 'shutting down: no new connections, in-flight requests finishing');
      closed.then(
        () => {
          logger.info({ event: 'stopped' }, 'stopped');
          resolve(0);
        },
        (err: unknown) => {
          logger.error({ event: 'shutdown.failed', err: (err as Error).message }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });

  try {
    const addr = await app.start();
    logger.info({ event: 'listening', host: addr.host, port: addr.port, upstream: config.upstream, store: config.store.kind, heapGrowingPercent }, 'listening');
  } catch (err) {
    logger.fatal({ event: 'start.failed', err: (err as Error).message }, `could not start: ${(err as Error).message}`);
    await app.close().catch(() => undefined);
    return 1;
  }
  return stopped;
}

main().then(
  (code) => {
    process.exitCode = code;
    // Let pino flush, then leave even if a stray handle lingers.
    setTimeout(() => process.exit(code), 200).unref();
  },
  (err: unknown) => {
    process.stderr.write(`coatcheck: unexpected failure: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
