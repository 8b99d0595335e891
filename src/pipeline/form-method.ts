// The `_method` field of a POST (Rails, Laravel, Symfony, Express' method-override): read from a
// bounded start of an application/x-www-form-urlencoded body, for rule matching only. The app
// gets the body byte for byte, still streamed: the bytes read are forwarded first, then the rest
// of the client's stream (FormBody). Only the matchRules stage calls this, and only for a POST
// whose path a rule takes but whose method none does, so ordinary requests are never buffered.
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';

/**
 * At most this many body bytes are read for a `_method` field. A body announced as larger is not
 * read at all; a chunked one is read until it ends or passes the bound (then it is forwarded
 * unchanged, and matched on the real method). Logout forms are a few hundred bytes.
 */
export const METHOD_FIELD_LIMIT = 16 * 1024;

/** Is this POST's body one that may carry a `_method` field that coatcheck reads? */
export function mayCarryMethodField(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  if (len !== undefined) {
    // Node has checked it is one decimal number.
    const n = Number(len);
    if (!(n > 0 && n <= METHOD_FIELD_LIMIT)) return false;
  } else if (req.headers['transfer-encoding'] === undefined) return false;
  const type = req.headers['content-type'];
  // Rack reads a POST without Content-Type as a form too.
  if (type === undefined) return true;
  const semi = type.indexOf(';');
  return (semi === -1 ? type : type.slice(0, semi)).trim().toLowerCase() === 'application/x-www-form-urlencoded';
}

/** %XX decoded where it is well-formed (a malformed escape stays as written, as Rack and PHP keep it). */
function percentDecode(s: string): string {
  if (!s.includes('%')) return s;
  return s.replace(/(?:%[0-9A-Fa-f]{2})+/g, (run) => {
    try {
      return decodeURIComponent(run);
    } catch {
      return run.replace(/%([0-9A-Fa-f]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)));
    }
  });
}

/**
 * Is a decoded form key the method field as some framework reads it? `_method` in any case;
 * spaces before it are skipped (Rack, PHP), and PHP reads a `.` in a name as `_`.
 */
function isMethodKey(key: string): boolean {
  const k = key.trimStart();
  return k.length === 7 && (k[0] === '_' || k[0] === '.') && k.slice(1).toLowerCase() === 'method';
}

/**
 * The `_method` values of a urlencoded form: every occurrence, keys and values decoded (`+` and
 * %XX) before they are compared, as the frameworks that read it do (`%5Fmethod=delete` is
 * `_method` to Rack, PHP and body-parser). Pairs are split on `&` and `;` (older Rack splits on
 * both): the rule's side is the safe one to err on.
 */
export function methodFieldsOf(form: Buffer): string[] {
  const text = form.toString('latin1');
  const out: string[] = [];
  for (const pair of text.split(/[&;]/)) {
    const eq = pair.indexOf('=');
    if (eq === -1) continue;
    const key = percentDecode(pair.slice(0, eq).replace(/\+/g, ' '));
    if (!isMethodKey(key)) continue;
    out.push(percentDecode(pair.slice(eq + 1).replace(/\+/g, ' ')));
  }
  return out;
}

/** What readBodyStart read. */
export type BodyStart =
  /** The whole body, which ended within the bound. */
  | { readonly kind: 'whole'; readonly chunks: Buffer[]; readonly bytes: number }
  /** The first chunks, past the bound; the rest is still in the (paused) request. */
  | { readonly kind: 'partial'; readonly chunks: Buffer[] }
  /** The client went away (or the request failed) before the body ended. */
  | { readonly kind: 'aborted' };

/**
 * Reads a request body until it ends or passes `limit` bytes (then the request is paused with
 * the rest unread). Settles in every case: end, bound, error, close before end, or `timeoutMs`
 * without the body ending (a client that stalls is then forwarded as past the bound: what was
 * read, then the rest as it comes, matched on its real method; it is held no longer than the
 * app would have held it).
 */
export function readBodyStart(req: IncomingMessage, limit: number = METHOD_FIELD_LIMIT, timeoutMs = 0): Promise<BodyStart> {
  if (req.destroyed) return Promise.resolve({ kind: 'aborted' });
  return new Promise<BodyStart>((resolve) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    const timer =
      timeoutMs > 0
        ? setTimeout(() => {
            req.pause();
            done({ kind: 'partial', chunks });
          }, timeoutMs)
        : undefined;
    const done = (result: BodyStart): void => {
      if (timer !== undefined) clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      bytes += chunk.length;
      if (bytes > limit) {
        req.pause();
        done({ kind: 'partial', chunks });
      }
    };
    const onEnd = (): void => done({ kind: 'whole', chunks, bytes });
    const onError = (): void => done({ kind: 'aborted' });
    const onClose = (): void => {
      if (!req.readableEnded) done({ kind: 'aborted' });
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/**
 * The body forwarded to the app after a `_method` read: the bytes already read, then (when the
 * body went past the bound) the rest of the client's request, with backpressure. Nothing is
 * read or attached until the engine starts reading. A client that goes away destroys it;
 * destroying it leaves the client's request to be drained, so that it can still be answered.
 */
export class FormBody extends Readable {
  private head: Buffer[] | undefined;
  private src: IncomingMessage | undefined;
  private attached = false;

  constructor(chunks: Buffer[], rest: IncomingMessage | undefined) {
    super();
    this.head = chunks;
    this.src = rest;
  }

  override _read(): void {
    const head = this.head;
    if (head === undefined) {
      this.src?.resume();
      return;
    }
    this.head = undefined;
    let room = true;
    for (const chunk of head) room = this.push(chunk);
    const src = this.src;
    if (src === undefined) {
      this.push(null);
      return;
    }
    if (src.destroyed && !src.readableEnded) {
      // The client went away between the read and the forwarding.
      this.src = undefined;
      this.destroy(src.errored ?? new Error('aborted'));
      return;
    }
    src.on('data', this.onData);
    src.on('end', this.onEnd);
    src.on('error', this.onError);
    src.on('close', this.onClose);
    this.attached = true;
    if (src.readableEnded) this.onEnd();
    else if (room) src.resume();
  }

  /**
   * Destroyed by its consumer (the engine, when the app failed or the request was cancelled):
   * the client's request is left to be read and dropped, as Node does for a request nobody reads,
   * so that coatcheck can still answer it (502, 504). Destroying the request would reset the
   * client's connection. A body that failed because the client went away has detached already.
   */
  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    const src = this.src;
    this.detach();
    this.head = undefined;
    if (src !== undefined && !src.readableEnded && !src.destroyed) src.resume();
    callback(err);
  }

  /**
   * The body will not be forwarded (the request was answered by coatcheck): let the rest of the
   * client's body be read and dropped, as Node does for a request nobody read.
   */
  release(): void {
    const src = this.src;
    this.detach();
    this.head = undefined;
    src?.resume();
  }

  private detach(): void {
    const src = this.src;
    this.src = undefined;
    if (src === undefined || !this.attached) return;
    this.attached = false;
    src.off('data', this.onData);
    src.off('end', this.onEnd);
    src.off('error', this.onError);
    src.off('close', this.onClose);
  }

  private readonly onData = (chunk: Buffer): void => {
    if (!this.push(chunk)) this.src?.pause();
  };

  private readonly onEnd = (): void => {
    this.detach();
    this.push(null);
  };

  private readonly onError = (err: Error): void => {
    this.detach();
    this.destroy(err);
  };

  private readonly onClose = (): void => {
    const src = this.src;
    if (src === undefined || src.readableEnded) return;
    this.detach();
    this.destroy(src.errored ?? new Error('aborted'));
  };
}
