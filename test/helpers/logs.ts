// The one log capture of the tests: pino's JSON lines, kept as written and parsed, that tests
// read or wait on as events.
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/log.js';

export type LogLine = Record<string, unknown> & { msg?: string; event?: string; level?: string };

/** A stream that collects JSON log lines: a logger's destination, or a child process's stdout. */
export class LogCapture extends Writable {
  /** Every line, parsed (a line that is not JSON is kept as `{ msg: text }`). */
  readonly lines: LogLine[] = [];
  /** Every line as written. */
  readonly raw: string[] = [];
  private readonly waiters: Array<{ pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  private partial = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.partial += chunk.toString('utf8');
    let nl: number;
    while ((nl = this.partial.indexOf('\n')) !== -1) {
      const text = this.partial.slice(0, nl);
      this.partial = this.partial.slice(nl + 1);
      if (!text) continue;
      this.raw.push(text);
      let line: LogLine;
      try {
        line = JSON.parse(text) as LogLine;
      } catch {
        line = { msg: text };
      }
      this.lines.push(line);
      for (let i = this.waiters.length - 1; i >= 0; i--) {
        const w = this.waiters[i] as (typeof this.waiters)[number];
        if (w.pred(line)) {
          this.waiters.splice(i, 1);
          w.resolve(line);
        }
      }
    }
    cb();
  }
  /** The lines with this `event` field. */
  events(event: string): LogLine[] {
    return this.lines.filter((l) => l.event === event);
  }
  /** The lines logged at level warn. */
  warnings(): LogLine[] {
    return this.lines.filter((l) => l.level === 'warn');
  }
  /** Resolves with the first line (already written or to come) that matches. */
  waitFor(pred: (l: LogLine) => boolean): Promise<LogLine> {
    const found = this.lines.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve) => this.waiters.push({ pred, resolve }));
  }
}

/** A logger as coatcheck builds it (src/log.ts), writing into a new LogCapture. */
export function captureLogger(level = 'debug'): { logger: Logger; logs: LogCapture } {
  const logs = new LogCapture();
  return { logger: createLogger(level, logs), logs };
}
