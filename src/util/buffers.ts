/**
 * A copy of `data` in memory of its own. `Buffer.from(buffer)` and most small Buffers are
 * slices of a shared 8 KiB pool, and one slice that lives on keeps its whole pool chunk alive:
 * a cache or store that keeps many small slices for long can pin many times their size. Use
 * this for bytes that are kept (stored records, cached ids); short-lived ones can stay pooled.
 */
export function ownCopy(data: Uint8Array): Buffer {
  const out = Buffer.allocUnsafeSlow(data.length);
  out.set(data);
  return out;
}

/**
 * A copy of an ASCII or latin1 string that holds only its own characters. A string cut out of a
 * larger one (a ticket out of a whole `Cookie` header, say) can keep the larger string alive for
 * as long as it lives; use this for strings that a cache keeps.
 */
export function ownString(text: string): string {
  return Buffer.from(text, 'latin1').toString('latin1');
}
