// The forwarding engine behind one small interface. HTTP goes through an undici Pool: its
// response (status and headers) arrives before anything is written to the client, so the
// response stages can await the store first. (WebSocket upgrades will sit behind the same
// interface, through http-proxy-3.)
import type { Readable } from 'node:stream';
import { Pool } from 'undici';

export interface UpstreamRequest {
  method: string;
  /** Origin-form request target: path and query. */
  path: string;
  /** Flat raw header list: name, value, name, value, … */
  headers: string[];
  body: Readable | null;
  signal: AbortSignal;
}

export interface UpstreamResponse {
  status: number;
  /** Flat raw header list, values decoded as latin1 so bytes pass through unchanged. */
  headers: string[];
  body: Readable;
}

export interface ForwardEngine {
  forward(request: UpstreamRequest): Promise<UpstreamResponse>;
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

  async forward(request: UpstreamRequest): Promise<UpstreamResponse> {
    const r = await this.pool.request({
      method: request.method as never,
      path: request.path,
      headers: request.headers,
      body: request.body,
      signal: request.signal,
      responseHeaders: 'raw',
    });
    return { status: r.statusCode, headers: r.headers as unknown as string[], body: r.body };
  }

  async close(): Promise<void> {
    await this.pool.close();
  }

  /** Drops every connection at once (after a drain deadline has passed). */
  async destroy(): Promise<void> {
    await this.pool.destroy();
  }
}
