#!/usr/bin/env node
// The only file that touches the process: argv, env, signals, exit codes.
//   0 clean shutdown · 2 invalid configuration or usage · 1 runtime failure
//
// The rest is imported when needed: a worker needs no configuration loader, the primary of
// several workers no proxy, and --help nothing (each process starts faster).
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import type { Coatcheck } from './app.js';
import type { Config } from './config/schema.js';
import { ConfigError, formatConfigProblem, ProcessError, UsageError } from './errors.js';
import { createLogger, type Logger } from './log.js';
import { applyHeapGrowth, heapGrowthSetting, HEAP_ENV, type HeapGrowth } from './heap.js';
import { workerCount } from './workers/count.js';
import type { PrimaryChannel } from './workers/worker.js';

const HELP = `coatcheck — keeps a legacy web app's cookies server-side; the browser holds one revocable ticket.

Usage:
  coatcheck --config FILE                 start the proxy (SIGHUP: reload FILE; SIGTERM: drain and stop)
  coatcheck check-config --config FILE    validate FILE and print the effective configuration (secrets redacted)
  coatcheck init --upstream URL [--redis URL] [--out FILE]
                                          write a commented starter configuration with a fresh random
                                          secret to FILE (default coatcheck.yaml); never overwrites
  coatcheck healthcheck [--config FILE]   exit 0 when the admin listener's /healthz answers 200
                                          (the container image's HEALTHCHECK)
  coatcheck --version | --help

Options:
  -c, --config FILE   configuration file (YAML); defaults to $COATCHECK_CONFIG
      --upstream URL  init: the app's origin, e.g. http://127.0.0.1:3000
      --redis URL     init: use this Redis (redis:// or rediss://) instead of the memory store
      --out FILE      init: where to write (default coatcheck.yaml)
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
  command: 'run' | 'check-config' | 'healthcheck' | 'init' | 'help' | 'version';
  configFile: string;
  /** init's flags. */
  init?: { upstream: string; redis?: string; out: string };
}

const COMMANDS = ['check-config', 'healthcheck', 'init'] as const;
const INIT_FLAGS = ['upstream', 'redis', 'out'] as const;

function parse(argv: string[], env: NodeJS.ProcessEnv): Parsed {
  let values: { config?: string; help?: boolean; version?: boolean; upstream?: string; redis?: string; out?: string };
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
        upstream: { type: 'string' },
        redis: { type: 'string' },
        out: { type: 'string' },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) return { command: 'help', configFile: '' };
  if (values.version) return { command: 'version', configFile: '' };
  const command = positionals[0];
  if (positionals.length > 1 || (command !== undefined && !(COMMANDS as readonly string[]).includes(command))) {
    throw new UsageError(`unknown command "${positionals.join(' ')}" (commands: ${COMMANDS.join(', ')})`);
  }
  if (command === 'init') {
    if (values.config !== undefined) throw new UsageError('init writes a new configuration: use --out FILE, not --config');
    if (!values.upstream) throw new UsageError('init needs --upstream URL: the origin of your app, e.g. --upstream http://127.0.0.1:3000');
    return {
      command: 'init',
      configFile: '',
      init: { upstream: values.upstream, ...(values.redis !== undefined ? { redis: values.redis } : {}), out: values.out ?? 'coatcheck.yaml' },
    };
  }
  const initFlag = INIT_FLAGS.find((f) => values[f] !== undefined);
  if (initFlag) throw new UsageError(`--${initFlag} is an option of init only`);
  const configFile = values.config ?? env.COATCHECK_CONFIG;
  if (!configFile) throw new UsageError('no configuration file: pass --config FILE or set COATCHECK_CONFIG');
  return { command: command === 'check-config' || command === 'healthcheck' ? command : 'run', configFile };
}

async function main(): Promise<number> {
  // A worker of several: its configuration comes from the primary, not from the file.
  if (cluster.isWorker) return runWorker();
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
  if (parsed.command === 'init' && parsed.init) {
    const { writeStarterConfig } = await import('./init.js');
    try {
      await writeStarterConfig(parsed.init);
    } catch (err) {
      if (!(err instanceof ProcessError)) throw err;
      process.stderr.write(`coatcheck: ${err.message}\n`);
      return err.exitCode;
    }
    // The secret is in the file only.
    process.stderr.write(`wrote ${parsed.init.out} (with a fresh random secret; readable by you only). Next: coatcheck check-config --config ${parsed.init.out}\n`);
    return 0;
  }

  // SIGHUP's default action ends the process: until the reload handler is in place (serve,
  // runPrimary), one that comes is ignored (the file is being read anyway).
  if (parsed.command === 'run') process.on('SIGHUP', () => undefined);
  const { loadConfigFile } = await import('./config/load.js');
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

  if (parsed.command === 'healthcheck') {
    const { checkHealth } = await import('./healthcheck.js');
    const problem = await checkHealth(config);
    if (problem === undefined) return 0;
    process.stderr.write(`coatcheck: not healthy: ${problem}\n`);
    return 1;
  }

  if (parsed.command === 'check-config') {
    for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
    const { printConfig } = await import('./config/print.js');
    process.stdout.write(printConfig(config));
    process.stderr.write(`${parsed.configFile}: configuration is valid\n`);
    return 0;
  }

  // Before the proxy allocates anything to speak of: see heap.ts.
  applyHeapGrowth(heapGrowingPercent);
  const logger = createLogger(config.log.level);
  for (const w of warnings) logger.warn({ event: 'config.warning' }, w);
  const workers = workerCount(config.workers, availableParallelism());
  const reread = () => rereadConfig(parsed.configFile, logger);
  if (workers > 1) return runPrimary(config, logger, workers, heapGrowingPercent, reread);

  const { createCoatcheck } = await import('./app.js');
  const app = createCoatcheck({ config, logger });
  return serve(app, logger, {
    reload: async () => {
      const next = await reread();
      if (next) await app.reload(next);
    },
    listening: (addr) =>
      logger.info(
        { event: 'listening', host: addr.host, port: addr.port, ...adminField(addr), upstream: config.upstream, store: config.store.kind, heapGrowingPercent },
        'listening',
      ),
  });
}

/** The admin listener's address for the "listening" line (port 0 picks one), when there is one. */
function adminField(addr: { admin?: { host: string; port: number } }): { admin?: { host: string; port: number } } {
  return addr.admin ? { admin: addr.admin } : {};
}

/**
 * Reads the configuration file again for a reload (SIGHUP). A file that does not load is logged
 * with every problem (file:line:col, as at start) and undefined is returned: the running
 * configuration stays.
 */
async function rereadConfig(file: string, logger: Logger): Promise<Config | undefined> {
  const { loadConfigFile } = await import('./config/load.js');
  try {
    const { config, warnings } = await loadConfigFile(file, process.env);
    for (const w of warnings) logger.warn({ event: 'config.warning' }, w);
    return config as Config;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    logger.error(
      { event: 'config.reload_failed', problems: err.problems.map((p) => formatConfigProblem(err.file, p)) },
      `configuration not reloaded, the running one stays: ${err.message}`,
    );
    return undefined;
  }
}

/**
 * SIGHUP runs `reload`, one at a time: a SIGHUP during a reload runs one more after it (the
 * file may have changed again). A reload that fails is logged; the process keeps running.
 */
function onSighup(logger: Logger, reload: () => Promise<void>, ready: Promise<unknown>): void {
  let running: Promise<void> | undefined;
  let again = false;
  const run = (): void => {
    running = ready
      .then(reload)
      .catch((err: unknown) => logger.error({ event: 'config.reload_failed', err: (err as Error).message }, `configuration not reloaded: ${(err as Error).message}`))
      .finally(() => {
        running = undefined;
        if (again) {
          again = false;
          run();
        }
      });
  };
  process.on('SIGHUP', () => {
    logger.info({ event: 'config.reload', signal: 'SIGHUP' }, 'reloading the configuration');
    if (running) again = true;
    else run();
  });
}

/**
 * Starts `app` and runs it until SIGTERM/SIGINT, then drains it. Resolves with the exit code:
 * 0 after a clean stop, 1 when it could not start or its shutdown failed.
 */
async function serve(
  app: Coatcheck,
  logger: Logger,
  on: {
    listening(addr: { host: string; port: number; admin?: { host: string; port: number } }): void;
    startFailed?(message: string): void;
    /** What SIGHUP does (none: SIGHUP is ignored, e.g. in a worker, whose primary sends the new configuration). */
    reload?(): Promise<void>;
  },
): Promise<number> {
  let stopping = false;
  let started!: () => void;
  const ready = new Promise<void>((resolve) => (started = resolve));
  if (on.reload) onSighup(logger, on.reload, ready);
  // SIGHUP's default action ends the process: never that.
  else process.on('SIGHUP', () => undefined);
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
    on.listening(await app.start());
    started();
  } catch (err) {
    // Stopped by a signal while starting: that is the stop asked for, not a failure.
    if (stopping) return stopped;
    // Nothing to drain: a signal from now on changes nothing.
    stopping = true;
    const message = (err as Error).message;
    logger.fatal({ event: 'start.failed', err: message }, `could not start: ${message}`);
    on.startFailed?.(message);
    await app.close().catch(() => undefined);
    return 1;
  }
  return stopped;
}

/**
 * The primary of several workers (workers/primary.ts): forks them, serves the admin listener,
 * and on SIGTERM/SIGINT drains them all. 0 when every worker stopped cleanly; 1 when one could
 * not start, when they keep failing to start (restart-policy.ts), or when one did not stop cleanly.
 */
async function runPrimary(
  config: Readonly<Config>,
  rootLogger: Logger,
  count: number,
  heapGrowingPercent: HeapGrowth,
  reread: () => Promise<Config | undefined>,
): Promise<number> {
  const { Primary } = await import('./workers/primary.js');
  const logger = rootLogger.child({ role: 'primary' });
  const primary = new Primary({ config, count, logger, cluster });
  let listening!: () => void;
  // The primary reads the file once and sends the result to every worker (workers/primary.ts).
  onSighup(
    logger,
    async () => {
      const next = await reread();
      if (next) primary.reload(next);
    },
    new Promise<void>((resolve) => (listening = resolve)),
  );
  let stopping = false;
  const stopped = new Promise<number>((resolve) => {
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      const drained = primary.stop();
      logger.info({ event: 'shutdown', signal }, 'shutting down: every worker stops accepting and finishes its in-flight requests');
      void drained.then((code) => {
        logger.info({ event: 'stopped', code }, 'stopped');
        resolve(code);
      });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });

  try {
    const addr = await primary.start();
    logger.info(
      { event: 'listening', host: addr.host, port: addr.port, ...adminField(addr), upstream: config.upstream, store: config.store.kind, workers: count, heapGrowingPercent },
      'listening',
    );
    listening();
  } catch (err) {
    if (stopping) return stopped;
    stopping = true;
    const message = (err as Error).message;
    logger.fatal({ event: 'start.failed', err: message }, `could not start: ${message}`);
    await primary.stop();
    return 1;
  }
  const gaveUp = primary.failed.then(async (reason) => {
    if (stopping) return stopped;
    stopping = true;
    logger.fatal({ event: 'workers.failing', err: reason }, `giving up: ${reason}`);
    await primary.stop();
    return 1;
  });
  return Promise.race([stopped, gaveUp]);
}

/**
 * A worker of several: asks the primary for the configuration, runs coatcheck as a single
 * process would (without the admin listener: the primary serves it), and answers the primary's
 * questions about it. Its log lines carry its slot number and pid.
 */
async function runWorker(): Promise<number> {
  // A signal before the configuration came: nothing started, nothing to drain.
  let early: string | undefined;
  const onEarly = (signal: NodeJS.Signals) => (early = signal);
  // The primary sends a new configuration on reload; SIGHUP itself (to the whole process group) must not end a worker.
  process.on('SIGHUP', () => undefined);
  process.on('SIGTERM', onEarly);
  process.on('SIGINT', onEarly);
  const [{ createCoatcheck }, { answerPrimary, receiveConfig }] = await Promise.all([import('./app.js'), import('./workers/worker.js')]);
  const channel: PrimaryChannel = {
    send: (message) => {
      // The primary may be gone (then node's cluster ends this worker); a lost answer is harmless.
      if (process.connected) process.send?.(message, undefined, undefined, () => undefined);
    },
    onMessage: (listener) => process.on('message', listener),
  };
  const { config, slot } = await receiveConfig(channel);
  process.off('SIGTERM', onEarly);
  process.off('SIGINT', onEarly);
  if (early !== undefined) return 0;
  // The primary checked the setting already.
  applyHeapGrowth(heapGrowthSetting(process.execArgv, process.env));
  const logger = createLogger(config.log.level).child({ worker: slot, pid: process.pid });
  const app = createCoatcheck({ config, logger, serveAdmin: false });
  answerPrimary(channel, app, (err) => logger.error({ event: 'config.reload_failed', err: err.message }, `configuration not reloaded: ${err.message}`));
  return serve(app, logger, {
    listening: (addr) => {
      logger.info({ event: 'worker.listening', host: addr.host, port: addr.port }, 'worker listening');
      channel.send({ cc: 'listening', host: addr.host, port: addr.port });
    },
    startFailed: (message) => channel.send({ cc: 'start-failed', reason: message }),
  });
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
