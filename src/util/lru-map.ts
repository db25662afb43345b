/**
 * A map of at most `limit` entries that forgets the least recently used first: a hit moves an
 * entry to the back, a new entry at the limit pushes out the front (a Map iterates in
 * insertion order). For the per-request memos of the hot path, so a working set that fits
 * keeps hitting while one that does not cannot grow memory.
 */
export class LruMap<K, V> {
  private readonly entries = new Map<K, V>();

  constructor(private readonly limit: number) {}

  get size(): number {
    return this.entries.size;
  }

  get(key: K): V | undefined {
    const value = this.entries.get(key);
    if (value !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }

  set(key: K, value: V): void {
    this.entries.delete(key);
    if (this.entries.size >= this.limit) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(key, value);
  }
}
