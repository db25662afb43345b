/**
 * The in-process session cache: the opened record behind a session handle, so a steady-state
 * proxied request costs no store round trip and no AES-GCM open.
 *
 * Coherent across instances through the store's change feed (`SessionStore.watchChanges`):
 * every write and every destroy of a record, on any instance (or the operator's CLI), is
 * announced with the record's handle, and each instance drops its copy when it hears it — a
 * logout, refresh, revoke or slide elsewhere takes effect here within a pub/sub delivery.
 *
 * It fails safe. The cache is consulted only while the feed is live (subscribed and
 * connected); the moment it is not — the subscriber lost its connection, the subscription was
 * refused by an ACL — every entry is dropped and reads go to the store until the feed is live
 * again. A read that raced with an announcement is not cached: each announcement or outage
 * bumps an epoch, and a record read from the store is only kept if the epoch did not move
 * while it was being read. Entries also expire after `maxAgeMs` whatever the feed says, which
 * bounds what a lost announcement could cost (a publish that failed on the writer's side).
 *
 * An expired entry is useless, so it is not kept either: entries are in the order they were
 * written (a rewrite moves one to the end), and every `put` first drops the expired ones at the
 * front. The cache holds the sessions used within the last `maxAgeMs` (and those expired
 * since the last write), not every session seen since the feed last went down: a session that
 * stops sending requests (its tab closed, its idle timeout passed) leaves at the first write
 * after `maxAgeMs` instead of staying until `maxEntries` newer ones push it out.
 *
 * Only the read behind a request's cookie uses the cache (RequestSessions.fromHeaders): the
 * refresh protocol (lock, reload, rotate), housekeeping writes and back-channel lookups always
 * read the store.
 */
import type { SessionRecord } from './sessions.ts';
import type { ChangeFeed, SessionStore } from './store.ts';

export interface CachedSession {
  record: SessionRecord;
  sealed: string;
}

interface Entry extends CachedSession {
  at: number;
}

export interface SessionCacheOptions {
  maxEntries: number;
  maxAgeMs: number;
}

export class SessionCache {
  private readonly entries = new Map<string, Entry>();
  private epoch = 0;
  private readonly feed: ChangeFeed;

  /** Undefined when the store cannot announce changes: then nothing may be cached. */
  static attach(store: SessionStore, options: SessionCacheOptions, now: () => number = Date.now): SessionCache | undefined {
    if (!store.watchChanges) return undefined;
    return new SessionCache(store, options, now);
  }

  private constructor(
    store: SessionStore,
    private readonly options: SessionCacheOptions,
    private readonly now: () => number,
  ) {
    // `null`: the feed went down or came back; anything may have changed meanwhile.
    this.feed = (store.watchChanges as NonNullable<SessionStore['watchChanges']>)((handle) =>
      handle === null ? this.clear() : this.invalidate(handle),
    );
  }

  /** Whether the cache may be used right now (the change feed is live). */
  get usable(): boolean {
    return this.feed.live;
  }

  get size(): number {
    return this.entries.size;
  }

  get(handle: string): CachedSession | undefined {
    if (!this.feed.live) return undefined;
    const entry = this.entries.get(handle);
    if (entry === undefined) return undefined;
    if (this.now() - entry.at > this.options.maxAgeMs) {
      this.entries.delete(handle);
      return undefined;
    }
    return entry;
  }

  /** Taken before reading the store; `put` with an outdated ticket keeps nothing. */
  ticket(): number {
    return this.epoch;
  }

  put(handle: string, ticket: number, value: CachedSession): void {
    if (ticket !== this.epoch || !this.feed.live) return;
    const now = this.now();
    // Re-inserted, not updated in place: a Map iterates in insertion order, so the front is
    // always the entry written longest ago.
    this.entries.delete(handle);
    for (const [oldest, entry] of this.entries) {
      if (now - entry.at <= this.options.maxAgeMs && this.entries.size < this.options.maxEntries) break;
      this.entries.delete(oldest);
    }
    this.entries.set(handle, { record: value.record, sealed: value.sealed, at: now });
  }

  invalidate(handle: string): void {
    this.epoch++;
    this.entries.delete(handle);
  }

  clear(): void {
    this.epoch++;
    this.entries.clear();
  }

  close(): void {
    this.clear();
    this.feed.close();
  }
}
