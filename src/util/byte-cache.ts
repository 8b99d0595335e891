/**
 * A cache bounded by bytes: each entry is written with an estimate of the memory it keeps alive,
 * and past the budget the oldest written entries are dropped (first in, first out) until the
 * total fits again. Like FifoCache, a hit does not reorder (a delete-and-set per hit showed in
 * the profile); writing a key again makes it the newest and takes its new size.
 *
 * Bounding by count would let the memory grow with what each entry holds (a cache of opened
 * session records of 50 cookies holds ten times one of 5); a byte budget holds whatever the
 * entries are.
 */
export class ByteCache<K, V> {
  private readonly map = new Map<K, Slot<V>>();
  private total = 0;

  /** @param budget Most estimated bytes kept at once. */
  constructor(private readonly budget: number) {
    if (!Number.isSafeInteger(budget) || budget < 1) throw new RangeError(`budget must be a positive integer, got ${budget}`);
  }

  /** Entries held. */
  get size(): number {
    return this.map.size;
  }

  /** Estimated bytes held (the sum of the entries' sizes). */
  get bytes(): number {
    return this.total;
  }

  get(key: K): V | undefined {
    return this.map.get(key)?.value;
  }

  /**
   * Writes an entry of `bytes` estimated bytes as the newest. An entry larger than the whole
   * budget is not kept (and drops an older entry of the same key).
   */
  set(key: K, value: V, bytes: number): void {
    const old = this.map.get(key);
    if (old !== undefined) {
      this.map.delete(key);
      this.total -= old.bytes;
    }
    if (!(bytes >= 0) || bytes > this.budget) return;
    this.map.set(key, { value, bytes });
    this.total += bytes;
    if (this.total > this.budget) this.shrink();
  }

  delete(key: K): void {
    const old = this.map.get(key);
    if (old === undefined) return;
    this.map.delete(key);
    this.total -= old.bytes;
  }

  clear(): void {
    this.map.clear();
    this.total = 0;
  }

  /** Drops the oldest entries until the total fits the budget. */
  private shrink(): void {
    for (const [key, slot] of this.map) {
      if (this.total <= this.budget) return;
      this.map.delete(key);
      this.total -= slot.bytes;
    }
  }
}

interface Slot<V> {
  readonly value: V;
  readonly bytes: number;
}
