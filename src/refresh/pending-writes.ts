/**
 * Refreshed records the store could not take yet.
 *
 * Once the IdP has answered a refresh it has rotated the refresh token: the one in the store is
 * spent, and presenting it again makes an IdP with reuse detection revoke the whole grant. So a
 * store write that fails after that answer (Redis down, a command timeout) must not drop the
 * new record. It is kept here, in this process: this instance's requests and refreshes use it
 * instead of the stored one, and the write is retried with capped backoff until it lands, the
 * session turns out to have ended (its new tokens are then handed to `onLost` for revocation)
 * or the session's idle or absolute timeout would have passed.
 *
 * The window left: other instances read the store, so until the retry lands they see the old
 * record. One of them that needs to refresh the same session in that window (Redis is back, our
 * lock has expired, the next retry has not run yet — at most MAX_RETRY_DELAY_MS) presents the
 * spent refresh token and the IdP ends the session. A process that exits before the write lands
 * takes the record with it.
 */
import { errorDetail, isGatewayError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { LoadedSession, SessionRecord, Sessions } from '../session/sessions.ts';

const FIRST_RETRY_DELAY_MS = 50;
export const MAX_RETRY_DELAY_MS = 1_000;

interface Pending {
  session: LoadedSession;
  /** The record before the refresh: what is still in the store. */
  before: SessionRecord;
  record: SessionRecord;
  attempt: number;
  /** The refresh lock this process took for the refresh, released once the record is stored. */
  lockOwner: string | undefined;
  timer: NodeJS.Timeout | undefined;
}

export interface PendingWritesDeps {
  sessions: Pick<Sessions, 'update'>;
  log: Logger;
  /** The session ended (or timed out) before the record could be stored: its tokens are orphans. */
  onLost(before: SessionRecord, record: SessionRecord): void;
  /**
   * Releases the refresh lock (compare-and-delete). The release right after the refresh fails
   * in the same outage; while the lock stands, no other instance refreshes with the spent token.
   */
  releaseLock(handle: string, owner: string): Promise<void>;
}

/** Whether `err` says the store could not be reached (rather than a bug or a refusal). */
export function isStoreOutage(err: unknown): boolean {
  return isGatewayError(err) && err.code === 'session_store_unavailable';
}

export class PendingWrites {
  private readonly pending = new Map<string, Pending>();
  private closed = false;

  constructor(private readonly deps: PendingWritesDeps) {}

  /** The record waiting to be stored for `handle`, newer than anything the store holds. */
  newer(handle: string): SessionRecord | undefined {
    return this.pending.get(handle)?.record;
  }

  get size(): number {
    return this.pending.size;
  }

  /** A write of `record` for `session` failed with a store outage: keep it and retry. */
  hold(session: LoadedSession, record: SessionRecord, lockOwner: string | undefined): void {
    const existing = this.pending.get(session.handle);
    if (existing) {
      // A later refresh of the same session (from the held record) supersedes the earlier one.
      existing.record = record;
      existing.lockOwner = lockOwner ?? existing.lockOwner;
      return;
    }
    const entry: Pending = { session: { ...session }, before: session.record, record, attempt: 0, lockOwner, timer: undefined };
    this.pending.set(session.handle, entry);
    this.deps.log.warn({ event: 'refresh_store_deferred' }, 'refreshed tokens kept in memory until the session store takes them');
    this.schedule(session.handle, entry);
  }

  /** A write for `handle` landed by other means (a later refresh stored directly). */
  settled(handle: string): void {
    const entry = this.pending.get(handle);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.pending.delete(handle);
  }

  private schedule(handle: string, entry: Pending): void {
    if (this.closed) return;
    const delay = Math.min(FIRST_RETRY_DELAY_MS * 2 ** entry.attempt, MAX_RETRY_DELAY_MS);
    entry.attempt += 1;
    entry.timer = setTimeout(() => void this.retry(handle, entry), delay);
    entry.timer.unref();
  }

  private async retry(handle: string, entry: Pending): Promise<void> {
    if (this.pending.get(handle) !== entry) return;
    const record = entry.record;
    let stored: boolean;
    try {
      // `update` refuses (false) once the session's timeouts have passed or its record is gone.
      stored = await this.deps.sessions.update(entry.session, record);
    } catch (err) {
      if (!isStoreOutage(err))
        this.deps.log.warn({ event: 'refresh_store_retry_failed', detail: errorDetail(err) }, 'storing refreshed tokens failed; retrying');
      this.schedule(handle, entry);
      return;
    }
    // A newer refresh replaced the record while this write was in flight: write that one too.
    if (stored && entry.record !== record) {
      this.schedule(handle, entry);
      return;
    }
    this.pending.delete(handle);
    if (entry.lockOwner) await this.deps.releaseLock(handle, entry.lockOwner).catch(() => {});
    if (stored) {
      this.deps.log.info({ event: 'refresh_stored_late', attempts: entry.attempt }, 'refreshed tokens stored after a session store outage');
      return;
    }
    this.deps.log.info({ event: 'refresh_store_gave_up' }, 'session ended before its refreshed tokens could be stored');
    this.deps.onLost(entry.before, record);
  }

  /** Stops retrying (the process is shutting down). */
  close(): void {
    this.closed = true;
    for (const entry of this.pending.values()) clearTimeout(entry.timer);
  }
}
