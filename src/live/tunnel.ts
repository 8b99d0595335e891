// One WebSocket after its handshake: the client's socket and the app's, piped byte for byte
// both ways, with backpressure (a side that cannot take more pauses the other's reads, so
// coatcheck never buffers more than a socket's high-water mark per direction). Frames are not
// parsed beyond their headers (frames.ts): text, binary, fragments, ping/pong, close codes and
// extensions (permessage-deflate) pass as the two ends negotiated them.
//
// close(code, reason) is coatcheck ending the connection itself (a logout, the session's
// deadline, shutdown): each direction finishes the frame in progress, then gets a close frame
// of ours (unless its peer sent one already), its socket is ended, and whatever follows from
// the other side is dropped. A side that does not finish its frame within CLOSE_GRACE_MS is
// destroyed, as is every socket still open then.
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { closeFrame, FrameTracker } from './frames.js';

/** How long a close may take before both sockets are destroyed. */
export const CLOSE_GRACE_MS = 1000;

/** One direction of the tunnel. */
class Direction {
  readonly frames = new FrameTracker();
  /** Our close frame went out this way: what still comes from `src` is dropped. */
  closed = false;
  constructor(
    readonly src: Duplex,
    readonly dst: Duplex,
    /** Frames towards the app are masked (it is the server, we are its client). */
    readonly masked: boolean,
  ) {}
}

export class WebSocketTunnel {
  /** Bytes passed since the last takeActivity(). */
  private active = false;
  private closing: { code: number; reason: string } | undefined;
  private finished = false;
  private openSockets = 2;
  private killTimer: NodeJS.Timeout | undefined;
  private readonly up: Direction;
  private readonly down: Direction;

  constructor(
    readonly client: Duplex,
    readonly app: Duplex,
    private readonly onClosed: () => void,
  ) {
    this.up = new Direction(client, app, true);
    this.down = new Direction(app, client, false);
  }

  start(): void {
    for (const s of [this.client, this.app]) {
      // A WebSocket may stay quiet for long: no idle timeout of the HTTP server or agent applies.
      (s as Socket).setTimeout?.(0);
      (s as Socket).setNoDelay?.(true);
      s.on('error', noop);
      s.once('close', () => this.socketClosed(s));
    }
    this.pump(this.up);
    this.pump(this.down);
  }

  /** Was there traffic since the last call? (The periodic touch counts it as activity.) */
  takeActivity(): boolean {
    const was = this.active;
    this.active = false;
    return was;
  }

  get isClosing(): boolean {
    return this.closing !== undefined || this.finished;
  }

  /** Ends the WebSocket with `code` and `reason` on both sides (see the top of this file). */
  close(code: number, reason: string): void {
    if (this.closing || this.finished) return;
    this.closing = { code, reason };
    this.killTimer = setTimeout(() => this.destroy(), CLOSE_GRACE_MS);
    this.killTimer.unref();
    for (const d of [this.down, this.up]) {
      if (d.frames.atBoundary) this.sendClose(d);
      // Read on until the frame in progress is through (pump writes our close frame then).
      else d.src.resume();
    }
  }

  /** Both sockets, now. */
  destroy(): void {
    this.client.destroy();
    this.app.destroy();
  }

  private pump(d: Direction): void {
    const { src, dst } = d;
    src.on('data', (chunk: Buffer) => {
      this.active = true;
      if (d.closed) return;
      if (this.closing) {
        const n = d.frames.feed(chunk, true);
        if (n > 0) dst.write(chunk.subarray(0, n));
        if (d.frames.atBoundary) this.sendClose(d);
        return;
      }
      d.frames.feed(chunk);
      if (!dst.write(chunk)) src.pause();
    });
    dst.on('drain', () => src.resume());
    // A side that ends its half of the connection ends the other's.
    src.on('end', () => {
      if (!d.closed) dst.end();
    });
  }

  private sendClose(d: Direction): void {
    if (d.closed) return;
    d.closed = true;
    const { code, reason } = this.closing as { code: number; reason: string };
    if (!d.frames.sawClose && d.dst.writable) d.dst.write(closeFrame(code, reason, d.masked));
    d.dst.end();
    // Read (and drop) the rest, the peer's close reply included, so it is never held up.
    d.src.resume();
  }

  private socketClosed(s: Duplex): void {
    this.openSockets -= 1;
    const other = s === this.client ? this.app : this.client;
    if (this.openSockets > 0) {
      // The other side gets what is in flight, then its end; destroyed if it lingers.
      other.end();
      if (this.killTimer === undefined) {
        this.killTimer = setTimeout(() => this.destroy(), CLOSE_GRACE_MS);
        this.killTimer.unref();
      }
      return;
    }
    clearTimeout(this.killTimer);
    if (this.finished) return;
    this.finished = true;
    this.onClosed();
  }
}

function noop(): void {}
