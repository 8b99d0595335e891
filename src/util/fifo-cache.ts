/**
 * A small bounded cache that evicts in write order (first in, first out): a Map in insertion
 * order, the oldest written entry dropped past `max`. A hit does not reorder (that
 * delete-and-set showed in the profile), so this is not an LRU: a busy key ages out like any
 * other and simply comes back on its next miss. Writing a key again makes it the newest.
 */
export class FifoCache<K, V> {
  private readonly map = new Map<K, V>();
  constructor(private readonly max: number) {
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError(`max must be a positive integer, got ${max}`);
  }

  get size(): number {
    return this.map.size;
  }

  get(key: K): V | undefined {
    return this.map.get(key);
  }

  set(key: K, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    if (this.map.size > this.max) {
      const oldest = this.map.keys().next();
      if (!oldest.done) this.map.delete(oldest.value);
    }
  }

  delete(key: K): void {
    this.map.delete(key);
  }
}
