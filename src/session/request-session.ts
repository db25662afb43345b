/**
 * The session behind a request's cookie: one store read, or none while the in-process session
 * cache holds it (session-cache.ts). Sessions past their idle or absolute
 * timeout are reported to `onTimeout` once each: those found expired (removed by
 * `Sessions.load`) and those the store already forgot by TTL (`Sessions.markEnded`). What
 * counts them (a metric) is the composition root's business, not the session layer's; so is
 * what watches the read behind a cookie (a trace span): `wrapLoad`, absent unless tracing is on.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { SessionCookie, VerifiedCookie } from './cookie.ts';
import { Sessions, type LoadedSession, type LoadResult } from './sessions.ts';

export interface RequestSession extends LoadedSession {
  /** The cookie was signed by a retired secret: send a re-signed one. */
  renewCookie: boolean;
  id: string;
}

/**
 * Runs the session read behind a request's cookie (`load`) and answers its result: the
 * composition root's hook around that read (a trace span when tracing is on).
 */
export type LoadWrapper = (load: () => Promise<LoadResult>) => Promise<LoadResult>;

export class RequestSessions {
  constructor(
    private readonly cookie: SessionCookie,
    private readonly sessions: Sessions,
    private readonly now: () => number,
    /** Called once for each session found to have timed out. */
    private readonly onTimeout: () => void = () => {},
    /** Around each read behind a cookie; undefined (the read is called directly) unless tracing is on. */
    private readonly wrapLoad?: LoadWrapper,
  ) {}

  async fromHeaders(headers: IncomingHttpHeaders): Promise<RequestSession | undefined> {
    const cookie = this.cookie.read(headers.cookie);
    if (!cookie) return undefined;
    const handle = this.handleOf(cookie);
    // No closure unless something wraps the read: this is every session request's path.
    const result =
      this.wrapLoad === undefined ? await this.read(handle, false, true) : await this.wrapLoad(() => this.read(handle, false, true));
    if (result.state !== 'active') return undefined;
    return { id: cookie.id, handle: result.handle, record: result.record, sealed: result.sealed, renewCookie: cookie.renew };
  }

  /** Handles of the cookies the cookie reader remembers (a hash per request saved). */
  private readonly handles = new WeakMap<VerifiedCookie, string>();

  private handleOf(cookie: VerifiedCookie): string {
    let handle = this.handles.get(cookie);
    if (handle === undefined) {
      handle = Sessions.handleOf(cookie.id);
      this.handles.set(cookie, handle);
    }
    return handle;
  }

  /**
   * Reads a session by handle (an open WebSocket re-checking its session), reporting a timeout
   * the way a request would: once, unless a logout already claimed the ending.
   */
  recheck(handle: string): Promise<LoadResult> {
    // The record is known to be gone: failing to claim its marker must not keep a socket open.
    return this.read(handle, true);
  }

  private async read(handle: string, tolerateMarkerFailure: boolean, cached = false): Promise<LoadResult> {
    const result = cached ? await this.sessions.loadCached(handle) : await this.sessions.loadHandle(handle);
    if (result.state === 'ended') this.onTimeout();
    else if (result.state === 'none') {
      const claim = this.sessions.markEnded(handle);
      if (await (tolerateMarkerFailure ? claim.catch(() => false) : claim)) this.onTimeout();
    }
    return result;
  }

  /** Seconds the session cookie should live: until the absolute timeout. */
  cookieMaxAge(session: LoadedSession): number {
    return Math.max(0, Math.floor((session.record.absoluteExpiresAt - this.now()) / 1000));
  }
}
