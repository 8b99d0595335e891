// A pino logger whose JSON lines tests can read, for components that take a Logger.
import { createLogger, type Logger } from '../../src/log.js';

export interface LogLine {
  level: string;
  msg: string;
  [k: string]: unknown;
}

export function captureLogger(): { logger: Logger; lines: LogLine[]; warnings: () => LogLine[] } {
  const lines: LogLine[] = [];
  const logger = createLogger('debug', {
    write(s: string) {
      lines.push(JSON.parse(s) as LogLine);
    },
  });
  return { logger, lines, warnings: () => lines.filter((l) => l.level === 'warn') };
}
