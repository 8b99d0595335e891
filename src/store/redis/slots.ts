// Redis Cluster hash slots: which of the 16384 slots a key belongs to, computed as the servers
// do (CRC16-XMODEM of the key, or of its hash tag, mod 16384). The load batcher groups one
// turn's loads by slot with it, since a multi-key command must stay within one slot. Pure.
//
// The hash tag: when the key has a '{' and, after it, a '}' with at least one byte between,
// only the bytes between the first '{' and the first '}' after it are hashed. The keys this
// store writes on a cluster are `${prefix}{<lineage>}…` (model.ts; the config refuses a prefix
// with braces), so their slot is their lineage's.

export const SLOT_COUNT = 16384;

/** CRC16-XMODEM (polynomial 0x1021, initial value 0), by table. */
const TABLE = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    t[i] = crc;
  }
  return t;
})();

function crc16(bytes: Uint8Array, start: number, end: number): number {
  let crc = 0;
  for (let i = start; i < end; i++) crc = ((crc << 8) & 0xffff) ^ (TABLE[((crc >> 8) ^ (bytes[i] as number)) & 0xff] as number);
  return crc;
}

const OPEN = 0x7b; // {
const CLOSE = 0x7d; // }

/** The hash slot of a key (its UTF-8 bytes, as ioredis sends a string key). */
export function keySlot(key: string): number {
  const bytes = Buffer.from(key, 'utf8');
  let start = 0;
  let end = bytes.length;
  const open = bytes.indexOf(OPEN);
  if (open !== -1) {
    const close = bytes.indexOf(CLOSE, open + 1);
    if (close > open + 1) {
      start = open + 1;
      end = close;
    }
  }
  return crc16(bytes, start, end) % SLOT_COUNT;
}
