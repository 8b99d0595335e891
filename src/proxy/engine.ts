// The forwarding engine behind one small interface. HTTP goes through an undici Pool: its
// response (status and headers) arrives before anything is written to the client, so the
// response stages can await the store first. WebSocket upgrades go through the same Pool
// (dispatch with `upgrade: 'websocket'`): a 101 arrives as onRequestUpgrade with the app's
// headers and its socket, and nothing has reached the client yet, so the response stages run
// on a 101 as on any response (its managed Set-Cookies go to the jar); any other answer to an
// upgrade (401, 403, a redirect) arrives as an ordinary response and is relayed as one.
// (http-proxy-3, which the design first named for upgrades, writes the app's 101 head to the
// client in the same tick it receives it, and pipes a non-101 answer to the client raw: an
// await for the store cannot fit in between, so a managed Set-Cookie would reach the browser.)
//
// The Pool is driven through `dispatch()` with one handler object per request (`Exchange`),
// not through `request()`: that one makes, per request, an AsyncResource, a promise, a Readable
// body with its pipe() listeners and nextTick hops, and needs an AbortController with its
// AbortSignal to be cancelled. The handler keeps the raw header list, buffers the (usually small)
// body until the response stages are done, then writes it straight to the client, with
// backpressure from the client's socket back to the app's. It implements undici's
// `Dispatcher.DispatchHandler` (onRequestStart … onResponseError, with a controller) as declared,
// so that a change of that interface in undici is a type error here.
import { IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';

export interface UpstreamRequest {
  method: string;
  /** Origin-form request target: path and query. */
  path: string;
  /** Flat raw header list: name, value, name, value, … */
  headers: string[];
  body: Readable | null;
}

/** The body of an upstream response: either sent to the client, or discarded. Exactly one of the two. */
export interface UpstreamBody {
  /**
   * Writes the body to `res` (whose head is already written) and ends it. `onError(err, arg)` is
   * called when the body fails after the response started (res is destroyed right after).
   */
  sendTo<T>(res: ServerResponse, onError: (err: Error, arg: T) => void, arg: T): void;
  /** Reads and drops the rest of the body (the connection stays reusable when it is small). */
  discard(): void;
}

export interface UpstreamResponse {
  status: number;
  /** Flat raw header list, values decoded as latin1 so bytes pass through unchanged. */
  headers: string[];
  body: UpstreamBody;
  /**
   * A 101 to an upgrade(): the app's socket, detached from the pool, past the response head
   * (bytes the app sent after its head are the first it yields). `body` is empty then.
   */
  upgraded?: Duplex;
}

/** One forwarding: `response` settles with the app's status and headers, or the failure. */
export interface Forwarding {
  readonly response: Promise<UpstreamResponse>;
  /** The client went away: cancel the upstream request (quietly; `response` rejects with an abort). */
  abort(): void;
}

export interface ForwardEngine {
  forward(request: UpstreamRequest): Forwarding;
  /**
   * A WebSocket upgrade request (GET, no body; `headers` without Connection and Upgrade, which
   * the engine sets): `response` settles with a 101 and its socket (`upgraded`), or with the
   * app's other answer as from forward().
   */
  upgrade(request: Omit<UpstreamRequest, 'body' | 'method'>): Forwarding;
  close(): Promise<void>;
}

export interface UndiciEngineOptions {
  /** Upstream origin, e.g. http://127.0.0.1:3000. */
  origin: string;
  /** Time allowed for the response headers, and between two body chunks. */
  timeout: number;
  /** Idle keep-alive sockets are closed after this (keep it below the app's own keep-alive timeout). */
  keepAliveTimeout?: number;
  connections?: number;
}

export class UndiciEngine implements ForwardEngine {
  private readonly pool: Pool;

  constructor(opts: UndiciEngineOptions) {
    this.pool = new Pool(opts.origin, {
      connections: opts.connections ?? 128,
      headersTimeout: opts.timeout,
      bodyTimeout: opts.timeout,
      keepAliveTimeout: opts.keepAliveTimeout ?? 4000,
      keepAliveTimeoutThreshold: 1000,
      connectTimeout: Math.min(opts.timeout, 10_000),
    });
  }

  forward(request: UpstreamRequest): Forwarding {
    const exchange = new Exchange(request.body);
    this.pool.dispatch({ method: request.method, path: request.path, headers: request.headers, body: request.body }, exchange);
    return exchange;
  }

  upgrade(request: Omit<UpstreamRequest, 'body' | 'method'>): Forwarding {
    const exchange = new Exchange(null);
    this.pool.dispatch({ method: 'GET', path: request.path, headers: request.headers, body: null, upgrade: 'websocket' }, exchange);
    return exchange;
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}

/** The error an exchange is aborted with when the client went away. */
export class ClientGoneError extends Error {
  override readonly name = 'AbortError';
  readonly code = 'UND_ERR_ABORTED';
  constructor() {
    super('the client went away');
  }
}

/** The headers undici parses for onResponseStart (lower-case names; repeated ones as arrays, in order). */
type ParsedHeaders = Parameters<NonNullable<Dispatcher.DispatchHandler['onResponseStart']>>[2];

const enum Sink {
  /** Waiting for sendTo() or discard(). */
  None,
  Client,
  Discard,
}

/**
 * One request's exchange with the app, as an undici dispatch handler (the callbacks undici
 * calls: onRequestStart, onResponseStart, onResponseData, onResponseEnd, onResponseError; the
 * controller they get pauses, resumes and aborts the exchange). Body chunks that arrive before
 * the response stages are done are kept (at most HIGH_WATER bytes; past that the upstream socket
 * is paused), then written to the client.
 */
class Exchange implements Forwarding, UpstreamBody, Dispatcher.DispatchHandler {
  readonly response: Promise<UpstreamResponse>;
  private resolve!: (r: UpstreamResponse) => void;
  private reject!: (err: Error) => void;
  private settled = false;
  private aborted = false;
  /** undici's handle on this exchange, from onRequestStart on (unless the client was gone by then). */
  private controller: Dispatcher.DispatchController | undefined = undefined;
  private sink = Sink.None;
  private res: ServerResponse | undefined = undefined;
  private onSinkError: ((err: Error, arg: unknown) => void) | undefined = undefined;
  private onSinkErrorArg: unknown = undefined;
  /** Chunks received before a sink was chosen. */
  private pending: Buffer[] | undefined = undefined;
  private pendingBytes = 0;
  private complete = false;
  private failed: Error | undefined = undefined;
  /** The upstream is paused until the client drains. */
  private waitingDrain = false;

  constructor(private requestBody: Readable | null) {
    this.response = new Promise<UpstreamResponse>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  // ---- Forwarding

  abort(): void {
    if (this.aborted || this.complete || this.failed) return;
    this.aborted = true;
    const err = new ClientGoneError();
    if (this.controller) this.controller.abort(err);
    else this.fail(err);
  }

  // ---- UpstreamBody

  sendTo<T>(res: ServerResponse, onError: (err: Error, arg: T) => void, arg: T): void {
    if (this.sink !== Sink.None) throw new Error('the upstream body was already consumed');
    this.sink = Sink.Client;
    this.res = res;
    this.onSinkError = onError as (err: Error, arg: unknown) => void;
    this.onSinkErrorArg = arg;
    if (this.failed) {
      this.bodyFailed(this.failed);
      return;
    }
    const pending = this.pending;
    this.pending = undefined;
    this.pendingBytes = 0;
    if (this.complete) {
      // The whole body is here already (the usual case for small responses): one write.
      if (pending === undefined) res.end();
      else if (pending.length === 1) res.end(pending[0]);
      else res.end(Buffer.concat(pending));
      return;
    }
    let ok = true;
    if (pending !== undefined) for (const chunk of pending) ok = res.write(chunk);
    res.on('drain', this.onDrain);
    if (ok) this.resumeNow();
    else this.waitingDrain = true;
  }

  discard(): void {
    if (this.sink !== Sink.None) return;
    this.sink = Sink.Discard;
    this.pending = undefined;
    if (this.complete || this.failed) return;
    // A small rest is read so the connection can be reused; a large one is not worth it.
    if (this.pendingBytes >= DISCARD_LIMIT) this.cancel();
    else this.resumeNow();
  }

  /** Ends the exchange with the app now (the connection is closed by undici). */
  private cancel(): void {
    if (this.controller && !this.complete && !this.failed) this.controller.abort(new ClientGoneError());
  }

  private readonly onDrain = (): void => {
    if (!this.waitingDrain) return;
    this.waitingDrain = false;
    this.resumeNow();
  };

  private resumeNow(): void {
    const controller = this.controller;
    if (controller) controller.resume();
  }

  private fail(err: Error): void {
    if (this.failed) return;
    this.failed = err;
    if (!this.settled) {
      this.settled = true;
      this.reject(err);
    } else if (this.sink === Sink.Client) {
      this.bodyFailed(err);
    }
    this.pending = undefined;
  }

  private bodyFailed(err: Error): void {
    const res = this.res as ServerResponse;
    res.off('drain', this.onDrain);
    if (!this.aborted) (this.onSinkError as (err: Error, arg: unknown) => void)(err, this.onSinkErrorArg);
    res.destroy();
  }

  // ---- undici dispatch handler

  onRequestStart(controller: Dispatcher.DispatchController): void {
    // Called again for each attempt when undici retries; the latest controller is the live one.
    if (this.aborted) {
      controller.abort(new ClientGoneError());
      return;
    }
    this.controller = controller;
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: ParsedHeaders): void {
    // 1xx (other than 101, which is an upgrade) are interim: the final answer follows.
    if (statusCode < 200) return;
    this.settled = true;
    this.resolve({ status: statusCode, headers: rawHeaderList(controller.rawHeaders, headers), body: this });
  }

  /** A 101 to upgrade(): the socket is ours from here (undici has let go of it). */
  onRequestUpgrade(controller: Dispatcher.DispatchController, statusCode: number, headers: ParsedHeaders, socket: Duplex): void {
    this.complete = true;
    this.requestBody = null;
    if (this.aborted || this.settled) {
      socket.destroy();
      return;
    }
    this.settled = true;
    this.resolve({ status: statusCode, headers: rawHeaderList(controller.rawHeaders, headers), body: this, upgraded: socket });
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    switch (this.sink) {
      case Sink.Client: {
        if ((this.res as ServerResponse).write(chunk)) return;
        this.waitingDrain = true;
        controller.pause();
        return;
      }
      case Sink.Discard:
        this.pendingBytes += chunk.length;
        if (this.pendingBytes >= DISCARD_LIMIT) {
          controller.pause();
          // Not from inside undici's parser callback: after it returns.
          queueMicrotask(() => this.cancel());
        }
        return;
      default:
        if (this.pending === undefined) this.pending = [chunk];
        else this.pending.push(chunk);
        this.pendingBytes += chunk.length;
        // Past HIGH_WATER bytes the app's socket waits until the response stages are done.
        if (this.pendingBytes >= HIGH_WATER) controller.pause();
    }
  }

  onResponseEnd(): void {
    this.complete = true;
    this.requestBody = null;
    if (this.sink === Sink.Client) {
      const res = this.res as ServerResponse;
      res.off('drain', this.onDrain);
      res.end();
    }
  }

  // The controller is not used: undici calls this without one when the request failed before it
  // started (a closed pool, a connection that could not be made).
  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    const body = this.requestBody;
    this.requestBody = null;
    // As undici's own request() does: a request body that could not be sent is destroyed, but
    // not the client's socket under it (the client still gets an answer).
    if (body && !body.destroyed) {
      body.on('error', noop);
      if (body instanceof IncomingMessage) (body as { socket: unknown }).socket = null;
      body.destroy(err);
    }
    this.fail(err);
  }
}

/**
 * The response's header list as the app sent it: in order, duplicates (every Set-Cookie) apart,
 * names in their original case; values as latin1 so bytes pass through unchanged. undici gives
 * the raw list on the controller (Buffers from its HTTP/1.1 parser). Should a dispatcher give
 * none, the parsed headers are the fallback: names lower-cased, repeated headers still in order.
 * (undici builds that parsed object for every response of this interface whether it is used or
 * not: 1.5-3 µs for nine headers, measured on a busy 2-core machine; the old interface had no such cost.)
 */
function rawHeaderList(raw: Dispatcher.DispatchController['rawHeaders'], parsed: ParsedHeaders): string[] {
  if (Array.isArray(raw)) {
    const n = raw.length;
    const headers = new Array<string>(n);
    for (let i = 0; i < n; i += 2) {
      const name = raw[i] as Buffer | string;
      const value = raw[i + 1] as Buffer | string;
      headers[i] = typeof name === 'string' ? name : name.toString();
      headers[i + 1] = typeof value === 'string' ? value : value.toString('latin1');
    }
    return headers;
  }
  const headers: string[] = [];
  for (const name in parsed) {
    const value = parsed[name];
    if (value === undefined) continue;
    if (typeof value === 'string') headers.push(name, value);
    else for (const v of value) headers.push(name, v);
  }
  return headers;
}

function noop(): void {}

/** At most this much of a body nobody reads is drained to keep the connection (as undici's dump()). */
const DISCARD_LIMIT = 128 * 1024;

/** Body bytes kept in memory while the response stages run, before the app's socket is paused. */
const HIGH_WATER = 64 * 1024;
