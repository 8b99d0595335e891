// Random bytes drawn from a pooled buffer: crypto.randomBytes() costs about 5 µs per call on
// this kind of machine whatever the size (a system call's worth of locking and setup), which
// showed in every sealed write (one IV each). The pool is refilled from the CSPRNG with
// randomFillSync() once every POOL_BYTES, and every byte is handed out once, never again (as
// Node's own randomUUID() pools its entropy).
import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafeSlow(POOL_BYTES);
let offset = POOL_BYTES;

/**
 * `n` fresh random bytes as a view of the pool, valid until the next call: for a value used at
 * once and not kept (an IV given to createCipheriv and copied into the sealed output).
 */
export function randomView(n: number): Buffer {
  if (n > POOL_BYTES) return randomFillSync(Buffer.allocUnsafeSlow(n));
  if (offset + n > POOL_BYTES) {
    randomFillSync(pool);
    offset = 0;
  }
  const view = pool.subarray(offset, offset + n);
  offset += n;
  return view;
}

/** `n` fresh random bytes in memory of their own (safe to keep): a drop-in for randomBytes(n). */
export function pooledRandomBytes(n: number): Buffer {
  const out = Buffer.allocUnsafeSlow(n);
  randomView(n).copy(out);
  return out;
}
