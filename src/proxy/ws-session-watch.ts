/**
 * Open WebSockets end with their session, on every instance.
 *
 * Two mechanisms, so that neither alone has to be perfect:
 *   - announcements: the store tells every instance about every `destroy` (logout, back-channel
 *     logout, admin revoke, a refresh the IdP refused, a timeout noticed by a request), and the
 *     instance ends the sockets it holds for that session at once;
 *   - re-checks: each socket re-reads its session at the session's idle/absolute deadline and at
 *     least every `CHECK_EVERY_MS` (sooner for short idle timeouts), and ends when the record is
 *     gone. This covers what is never announced (the store forgetting a record by TTL) and what
 *     is lost (an announcement made while this instance's subscriber was reconnecting).
 *
 * Browser messages are activity: a re-check that follows one slides the idle timeout, the same
 * lazy write an HTTP request makes. Upstream messages are not (a server pushing to an abandoned
 * tab does not keep the user's session alive). The absolute timeout never moves.
 *
 * When the store cannot be read, a socket stays open until the deadline it last knew of, then
 * ends: the gateway cannot vouch for a session past a deadline it could not renew.
 */
import type { GatewayConfig } from '../config/load.ts';
import type { RequestSessions } from '../session/request-session.ts';
import type { LoadedSession, Sessions } from '../session/sessions.ts';
import type { SessionStore } from '../session/store.ts';

export interface WatchDeps {
  session: GatewayConfig['session'];
  /** Session-end announcements. */
  store: Pick<SessionStore, 'onEnded'>;
  sessions: Pick<Sessions, 'idleExpiresAt' | 'touch'>;
  /** Re-reads a session, reporting a timeout as a request would. */
  requestSessions: Pick<RequestSessions, 'recheck'>;
  now: () => number;
}

const CHECK_EVERY_MS = 30_000;
/** A re-check due now still waits this long: no busy loop on a clock that disagrees. */
const MIN_DELAY_MS = 50;

interface Watch {
  handle: string;
  session: LoadedSession;
  end(): void;
  activeSinceCheck: boolean;
  timer: NodeJS.Timeout | undefined;
  checking: boolean;
  stopped: boolean;
}

export interface WatchHandle {
  /** A browser message went through: the next re-check slides the idle timeout. */
  activity(): void;
  /** The socket closed: stop watching it. */
  stop(): void;
}

export class SessionSocketWatch {
  private readonly byHandle = new Map<string, Set<Watch>>();
  private readonly unsubscribe: () => void;
  private readonly checkEveryMs: number;

  constructor(private readonly deps: WatchDeps) {
    // Several re-checks per idle window, so steady browser traffic slides it in time.
    this.checkEveryMs = Math.min(CHECK_EVERY_MS, Math.max(MIN_DELAY_MS, Math.floor(deps.session.idleTimeoutMs / 10)));
    this.unsubscribe = deps.store.onEnded((handle) => this.ended(handle));
  }

  /** Watches one socket of `session`; `end` closes it. */
  watch(session: LoadedSession, end: () => void): WatchHandle {
    const watch: Watch = {
      handle: session.handle,
      session: { handle: session.handle, record: session.record, sealed: session.sealed },
      end,
      activeSinceCheck: false,
      timer: undefined,
      checking: false,
      stopped: false,
    };
    let set = this.byHandle.get(watch.handle);
    if (!set) {
      set = new Set();
      this.byHandle.set(watch.handle, set);
    }
    set.add(watch);
    // The session may have ended between loading it for the handshake and this registration,
    // its announcement already gone by: look once more now.
    void this.check(watch);
    return {
      activity: () => {
        watch.activeSinceCheck = true;
      },
      stop: () => this.forget(watch),
    };
  }

  /** Shutdown: no more announcements, no more timers. */
  close(): void {
    this.unsubscribe();
    for (const set of this.byHandle.values()) for (const watch of set) this.forget(watch);
    this.byHandle.clear();
  }

  private ended(handle: string): void {
    for (const watch of [...(this.byHandle.get(handle) ?? [])]) this.finish(watch);
  }

  private finish(watch: Watch): void {
    if (watch.stopped) return;
    this.forget(watch);
    watch.end();
  }

  private forget(watch: Watch): void {
    watch.stopped = true;
    clearTimeout(watch.timer);
    const set = this.byHandle.get(watch.handle);
    set?.delete(watch);
    if (set?.size === 0) this.byHandle.delete(watch.handle);
  }

  private schedule(watch: Watch): void {
    if (watch.stopped) return;
    clearTimeout(watch.timer);
    const untilDeadline = this.deps.sessions.idleExpiresAt(watch.session.record) - this.deps.now();
    watch.timer = setTimeout(() => void this.check(watch), Math.max(MIN_DELAY_MS, Math.min(this.checkEveryMs, untilDeadline + 1)));
    watch.timer.unref();
  }

  private async check(watch: Watch): Promise<void> {
    if (watch.stopped || watch.checking) return;
    watch.checking = true;
    clearTimeout(watch.timer);
    try {
      const active = watch.activeSinceCheck;
      watch.activeSinceCheck = false;
      // A timeout is reported as a request would report it: once, unless a logout claimed it.
      const result = await this.deps.requestSessions.recheck(watch.handle);
      if (result.state !== 'active') return this.finish(watch);
      watch.session = { handle: result.handle, record: result.record, sealed: result.sealed };
      if (active) await this.deps.sessions.touch(watch.session);
    } catch {
      if (this.deps.now() >= this.deps.sessions.idleExpiresAt(watch.session.record)) return this.finish(watch);
    } finally {
      watch.checking = false;
      this.schedule(watch);
    }
  }
}
