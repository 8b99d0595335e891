// The pieces under live connections, without sockets: frame boundaries and close frames
// (frames.ts), and LiveConnections' admission and revocation memory.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { EventEmitter } from 'node:events';
import * as ws from 'ws';
import { closeFrame, FrameTracker } from '../../src/live/frames.js';
import { stageHarness } from '../helpers/pipeline.js';

/** A server→client frame (unmasked) of `opcode` with `payload`, in the length form its size needs. */
function frame(opcode: number, payload: Buffer, fin = true, mask?: Buffer): Buffer {
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0, n]) : n < 65536 ? Buffer.from([0, 126, n >> 8, n & 0xff]) : Buffer.concat([Buffer.from([0, 127]), (() => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(n));
    return b;
  })()]);
  head[0] = (fin ? 0x80 : 0) | opcode;
  if (!mask) return Buffer.concat([head, payload]);
  head[1] = (head[1] as number) | 0x80;
  const masked = Buffer.from(payload.map((byte, i) => byte ^ (mask[i & 3] as number)));
  return Buffer.concat([head, mask, masked]);
}

/** ws's own frame parser (exported by its ESM wrapper; @types/ws does not declare it). */
const Receiver = (ws as unknown as { Receiver: new (opts: { isServer: boolean }) => EventEmitter & { write(b: Buffer): void } }).Receiver;

describe('FrameTracker', () => {
  it('follows frames of every length form, split at every byte, masked or not', () => {
    const stream = Buffer.concat([
      frame(1, Buffer.from('hi')),
      frame(2, Buffer.alloc(300, 1), false),
      frame(0, Buffer.alloc(70_000, 2), true, Buffer.from([1, 2, 3, 4])),
      frame(9, Buffer.alloc(0)),
    ]);
    const boundaries = new Set([0]);
    let at = 0;
    for (const f of [frame(1, Buffer.from('hi')), frame(2, Buffer.alloc(300, 1), false), frame(0, Buffer.alloc(70_000, 2), true, Buffer.from([1, 2, 3, 4])), frame(9, Buffer.alloc(0))]) {
      at += f.length;
      boundaries.add(at);
    }
    for (const step of [1, 2, 3, 7, 1000, stream.length]) {
      const t = new FrameTracker();
      for (let i = 0; i < stream.length; i += step) {
        t.feed(stream.subarray(i, Math.min(stream.length, i + step)));
        const pos = Math.min(stream.length, i + step);
        assert.equal(t.atBoundary, boundaries.has(pos), `step ${step} at ${pos}`);
      }
      assert.equal(t.sawClose, false);
    }
  });

  it('with untilBoundary, stops where the frame in progress ends', () => {
    const t = new FrameTracker();
    const a = frame(1, Buffer.alloc(10, 65));
    const b = frame(1, Buffer.alloc(5, 66));
    t.feed(a.subarray(0, 4));
    assert.equal(t.atBoundary, false);
    const rest = Buffer.concat([a.subarray(4), b]);
    assert.equal(t.feed(rest, true), a.length - 4);
    assert.equal(t.atBoundary, true);
    assert.equal(t.feed(b, true), 0);
  });

  it('notes a close frame', () => {
    const t = new FrameTracker();
    t.feed(frame(8, Buffer.from([0x03, 0xe8])));
    assert.equal(t.sawClose, true);
  });
});

describe('closeFrame', () => {
  for (const masked of [false, true]) {
    it(`is a valid close frame for ws's own parser (${masked ? 'masked, towards a server' : 'unmasked, towards a client'})`, async () => {
      // ws's Receiver expects masked frames when it is the server side (isServer: true).
      const receiver = new Receiver({ isServer: masked });
      const got = new Promise<{ code: number; reason: string }>((resolve) => receiver.on('conclude', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() })));
      receiver.write(closeFrame(1008, 'session ended', masked));
      assert.deepEqual(await got, { code: 1008, reason: 'session ended' });
    });
  }

  it('keeps a reason within the 123 bytes a control frame allows', () => {
    const f = closeFrame(1001, 'x'.repeat(500), false);
    assert.equal(f.length, 2 + 2 + 123);
  });
});

describe('LiveConnections', () => {
  it('admits upgrades up to websocket.maxConnections (pending ones count), none once draining', () => {
    const { deps } = stageHarness({ websocket: { maxConnections: 2 } });
    assert.equal(deps.live.admit(), 'ok');
    assert.equal(deps.live.admit(), 'ok');
    assert.equal(deps.live.admit(), 'limit');
    deps.live.settle();
    assert.equal(deps.live.admit(), 'ok');
    deps.live.stopAccepting();
    deps.live.settle();
    assert.equal(deps.live.admit(), 'draining');
  });
});
