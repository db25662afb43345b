/**
 * The session store contract. Two implementations (Redis, memory) pass one shared test suite.
 *
 * Stores hold opaque sealed strings under a *handle*: the SHA-256 of the browser's session id,
 * so a store dump yields neither tokens (sealed) nor usable session ids (hashed). A sealed
 * record is a binary string, one char per byte (latin1; record-codec.ts): a store keeps those
 * bytes, and gives back exactly the string it was given. Index keys for
 * back-channel logout are keyed by an HMAC of the IdP `sid`/`sub`, not the claim itself.
 *
 * Redis Cluster: a session's record and its refresh lock share the hash tag `{handle}`, so they
 * sit in one slot; index sets live in their own slots and are only touched by single-key
 * commands (no cross-slot transaction is ever needed).
 */
export interface SessionStore {
  /** The sealed record, or null when absent or expired. */
  get(handle: string): Promise<string | null>;
  /** Writes the record with a time-to-live; the store forgets it afterwards by itself. */
  set(handle: string, sealed: string, ttlMs: number): Promise<void>;
  /**
   * Writes only if the record still exists (SET XX): a refresh finishing after a logout must
   * not bring the session back. False when the record was gone.
   */
  update(handle: string, sealed: string, ttlMs: number): Promise<boolean>;
  /**
   * Compare-and-set: writes only if the stored value is still `expected`. Used for writes that
   * are merely housekeeping (sliding the idle timeout, re-sealing under a new key), so they can
   * never overwrite tokens that another instance has just rotated. False when it lost the race.
   */
  replace(handle: string, expected: string, sealed: string, ttlMs: number): Promise<boolean>;
  /**
   * Removes the record (and its lock), then announces the handle to every `onEnded` listener.
   * Resolves whether or not it existed.
   */
  destroy(handle: string): Promise<void>;
  /**
   * Listens for ended sessions: every `destroy`, on this store or any other connected to the
   * same data (every gateway instance, the operator's CLI), reaches every listener, so what
   * hangs off a session (open WebSockets) ends with it on every instance. Best effort: an
   * announcement made while a listener's connection is down is lost, and a record the store
   * forgets by TTL is never announced — listeners must re-check the record on their own too.
   * Returns a function that removes the listener.
   */
  onEnded(listener: (handle: string) => void): () => void;
  /**
   * Follows every change of a session record, on any instance: `listener(handle)` after each
   * successful set/update/replace/destroy, `listener(null)` whenever the feed goes down or comes
   * back (anything may have changed meanwhile). `live` is true only while announcements are
   * certain to arrive. Optional: a store without it gets no in-process session cache.
   */
  watchChanges?(listener: (handle: string | null) => void): ChangeFeed;

  /** Adds a handle to an index set (by IdP sid or sub), kept for at least `ttlMs`. */
  indexAdd(index: string, handle: string, ttlMs: number): Promise<void>;
  indexMembers(index: string): Promise<string[]>;
  indexRemove(index: string, handles: string[]): Promise<void>;
  /** Every stored session's handle, for the operator's `sessions list` and `revoke --all`. */
  scanHandles(): AsyncIterable<string>;

  /** Takes the per-session refresh lock if free. Returns an owner token, or null when held. */
  acquireLock(handle: string, ttlMs: number): Promise<string | null>;
  /** Releases the lock only if `owner` still holds it (compare-and-delete). */
  releaseLock(handle: string, owner: string): Promise<void>;
  /** True while anyone holds the lock. */
  isLocked(handle: string): Promise<boolean>;

  /** Records a one-time claim (login state, logout-token jti). True the first time, false after. */
  claimOnce(key: string, ttlMs: number): Promise<boolean>;
  /**
   * Stores a value to be taken once (the logout hand-off), apart from session records: it never
   * appears in `scanHandles` and taking it announces nothing.
   */
  putOneTime(key: string, value: string, ttlMs: number): Promise<void>;
  /** The value, deleted in the same atomic step: of concurrent takers exactly one gets it. */
  takeOneTime(key: string): Promise<string | null>;

  ping(): Promise<void>;
  close(): Promise<void>;
  /**
   * False while the store knows it cannot answer (its connection is down or was refused), so a
   * request can fail at once instead of half-way; undefined when the store cannot tell.
   */
  readonly reachable?: boolean;
}

/** A subscription to record changes (SessionStore.watchChanges). */
export interface ChangeFeed {
  /** True while subscribed and connected: announcements made now will be heard. */
  readonly live: boolean;
  close(): void;
}
