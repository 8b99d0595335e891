// Just enough of RFC 6455 framing to close a WebSocket that coatcheck otherwise only pipes:
// where a frame ends (so that a close frame of ours is never written into the middle of one of
// theirs), whether a peer already sent its close frame, and the close frames themselves.
// Payloads are never read, copied, unmasked or inflated: the bytes pass as they came, and
// extensions such as permessage-deflate work end to end.
import { randomBytes } from 'node:crypto';

const OPCODE_CLOSE = 0x8;

/**
 * Follows frame boundaries in one direction of a WebSocket byte stream. Only headers (2 to 14
 * bytes per frame) are looked at, byte by byte; a payload is skipped by its length.
 */
export class FrameTracker {
  private readonly header = Buffer.alloc(14);
  private headerLength = 0;
  /** Header bytes the current frame has (known once its first two bytes are in). */
  private headerNeeded = 2;
  private payloadLeft = 0;
  /** A close frame went through in this direction. */
  sawClose = false;

  /** No frame is partly through: a frame of ours may be written now. */
  get atBoundary(): boolean {
    return this.headerLength === 0 && this.payloadLeft === 0;
  }

  /**
   * Follows `chunk` through. With `untilBoundary`, stops at the first frame boundary and returns
   * how many bytes of the chunk finish the frame in progress (0 when at a boundary already);
   * otherwise consumes all of it and returns its length.
   */
  feed(chunk: Buffer, untilBoundary = false): number {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (untilBoundary && this.atBoundary) return i;
      if (this.payloadLeft > 0) {
        const take = Math.min(this.payloadLeft, n - i);
        this.payloadLeft -= take;
        i += take;
        continue;
      }
      this.header[this.headerLength++] = chunk[i++] as number;
      if (this.headerLength === 2) {
        const len7 = (this.header[1] as number) & 0x7f;
        const masked = ((this.header[1] as number) & 0x80) !== 0;
        this.headerNeeded = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0);
      }
      if (this.headerLength >= 2 && this.headerLength === this.headerNeeded) this.frameStarts();
    }
    return i;
  }

  private frameStarts(): void {
    const h = this.header;
    const len7 = (h[1] as number) & 0x7f;
    let length: number;
    if (len7 === 126) length = h.readUInt16BE(2);
    else if (len7 === 127) length = Number(h.readBigUInt64BE(2));
    else length = len7;
    if (((h[0] as number) & 0x0f) === OPCODE_CLOSE) this.sawClose = true;
    this.payloadLeft = length;
    this.headerLength = 0;
    this.headerNeeded = 2;
  }
}

/**
 * A close frame (RFC 6455 §5.5.1) with `code` and a short `reason` (at most 123 bytes of UTF-8).
 * `masked` for the app's side: a client's frames are masked, a server's are not.
 */
export function closeFrame(code: number, reason: string, masked: boolean): Buffer {
  const text = Buffer.from(reason, 'utf8').subarray(0, 123);
  const payload = Buffer.alloc(2 + text.length);
  payload.writeUInt16BE(code, 0);
  text.copy(payload, 2);
  if (!masked) return Buffer.concat([Buffer.from([0x80 | OPCODE_CLOSE, payload.length]), payload]);
  const mask = randomBytes(4);
  for (let i = 0; i < payload.length; i++) payload[i] = (payload[i] as number) ^ (mask[i & 3] as number);
  return Buffer.concat([Buffer.from([0x80 | OPCODE_CLOSE, 0x80 | payload.length]), mask, payload]);
}
