/**
 * In-process store for development and the demo. Same semantics as the Redis store (TTL,
 * locks with owners, one-time claims, session-end announcements) so the shared contract suite
 * holds for both; but it is one process only: several gateway instances must share Redis.
 */
import { randomUUID } from 'node:crypto';
import type { SessionStore } from './store.ts';

interface Entry<T> {
  value: T;
  expiresAt: number;
}

export class MemoryStore implements SessionStore {
  private readonly records = new Map<string, Entry<string>>();
  private readonly locks = new Map<string, Entry<string>>();
  private readonly indexes = new Map<string, Entry<Set<string>>>();
  private readonly claims = new Map<string, Entry<true>>();
  private readonly oneTime = new Map<string, Entry<string>>();
  private readonly endedListeners = new Set<(handle: string) => void>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly now: () => number = Date.now) {
    // Expired entries are invisible on read; the sweep only bounds memory.
    this.sweeper = setInterval(() => this.sweep(), 60_000);
    this.sweeper.unref();
  }

  private live<T>(map: Map<string, Entry<T>>, key: string): T | undefined {
    const entry = map.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.now()) {
      map.delete(key);
      return undefined;
    }
    return entry.value;
  }

  private sweep(): void {
    for (const map of [this.records, this.locks, this.indexes, this.claims, this.oneTime] as Map<string, Entry<unknown>>[]) {
      for (const key of map.keys()) this.live(map, key);
    }
  }

  async get(handle: string): Promise<string | null> {
    return this.live(this.records, handle) ?? null;
  }

  async set(handle: string, sealed: string, ttlMs: number): Promise<void> {
    this.records.set(handle, { value: sealed, expiresAt: this.now() + ttlMs });
  }

  async update(handle: string, sealed: string, ttlMs: number): Promise<boolean> {
    if (this.live(this.records, handle) === undefined) return false;
    await this.set(handle, sealed, ttlMs);
    return true;
  }

  async replace(handle: string, expected: string, sealed: string, ttlMs: number): Promise<boolean> {
    if (this.live(this.records, handle) !== expected) return false;
    await this.set(handle, sealed, ttlMs);
    return true;
  }

  async destroy(handle: string): Promise<void> {
    this.records.delete(handle);
    this.locks.delete(handle);
    // One process: the announcement is a plain call. A throwing listener must not fail a logout.
    for (const listener of [...this.endedListeners]) {
      try {
        listener(handle);
      } catch {
        // The listener's own business; the session has ended regardless.
      }
    }
  }

  onEnded(listener: (handle: string) => void): () => void {
    this.endedListeners.add(listener);
    return () => this.endedListeners.delete(listener);
  }

  async indexAdd(index: string, handle: string, ttlMs: number): Promise<void> {
    const members = this.live(this.indexes, index) ?? new Set<string>();
    members.add(handle);
    const expiresAt = Math.max(this.indexes.get(index)?.expiresAt ?? 0, this.now() + ttlMs);
    this.indexes.set(index, { value: members, expiresAt });
  }

  async indexMembers(index: string): Promise<string[]> {
    return [...(this.live(this.indexes, index) ?? [])];
  }

  async indexRemove(index: string, handles: string[]): Promise<void> {
    const members = this.live(this.indexes, index);
    if (!members) return;
    for (const handle of handles) members.delete(handle);
    if (members.size === 0) this.indexes.delete(index);
  }

  async *scanHandles(): AsyncIterable<string> {
    for (const key of [...this.records.keys()]) {
      if (this.live(this.records, key) !== undefined) yield key;
    }
  }

  async acquireLock(handle: string, ttlMs: number): Promise<string | null> {
    if (this.live(this.locks, handle) !== undefined) return null;
    const owner = randomUUID();
    this.locks.set(handle, { value: owner, expiresAt: this.now() + ttlMs });
    return owner;
  }

  async releaseLock(handle: string, owner: string): Promise<void> {
    if (this.live(this.locks, handle) === owner) this.locks.delete(handle);
  }

  async isLocked(handle: string): Promise<boolean> {
    return this.live(this.locks, handle) !== undefined;
  }

  async claimOnce(key: string, ttlMs: number): Promise<boolean> {
    if (this.live(this.claims, key) !== undefined) return false;
    this.claims.set(key, { value: true, expiresAt: this.now() + ttlMs });
    return true;
  }

  async putOneTime(key: string, value: string, ttlMs: number): Promise<void> {
    this.oneTime.set(key, { value, expiresAt: this.now() + ttlMs });
  }

  async takeOneTime(key: string): Promise<string | null> {
    const value = this.live(this.oneTime, key);
    this.oneTime.delete(key);
    return value ?? null;
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    this.endedListeners.clear();
  }
}
