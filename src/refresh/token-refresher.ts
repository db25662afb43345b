/**
 * Keeping a session's access token usable (contract section 5), with at most one refresh per
 * session in flight across every instance that shares the store. Why it matters: IdPs with
 * refresh-token rotation and reuse detection (oidc-provider, Keycloak, Auth0, Okta) revoke the
 * whole grant when a rotated-out refresh token is presented, so a second concurrent refresh
 * logs the user out.
 *
 * The protocol (after oauth2-proxy's stored_session.go, extended across processes):
 *   1. In this process, concurrent callers for one session share one promise.
 *   2. Across processes, a store lock per session (SET NX PX + owner, compare-and-delete). Its
 *      TTL outlives the IdP call's timeout, so two refreshes can never overlap.
 *   3. With the lock: reload the session and check again — another instance may have
 *      refreshed already — then refresh, store (only if the session still exists), release.
 *   4. Without it: poll the session until the token changes or the lock frees (then retry),
 *      bounded by the lock TTL; a waiter that runs out answers 503 idp_unavailable, never 401.
 *
 * Outcomes, classified on the IdP's status and error code (never message text):
 *   rejected (invalid_grant or any 4xx) or an invalid response -> session destroyed, 401 session_expired;
 *   unavailable (network, timeout, 5xx) -> session kept; the current token if it is still valid,
 *   else 503 idp_unavailable.
 *
 * After an `unavailable` outcome with a still-valid token, this process leaves the session alone
 * for UNAVAILABLE_BACKOFF_MS: otherwise a slow IdP would add its whole timeout to every request
 * of that session while the token is still perfectly usable. An expired token (nothing to fall
 * back on) and an upstream rejection (the token is useless) always try again.
 */
import type { GatewayConfig } from '../config/load.ts';
import { GatewayError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { classifyIdpFailure, type IdpClient } from '../oidc/client.ts';
import { sameIdentity, tokensFromResponse } from '../oidc/tokens.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { LoadedSession, SessionRecord, Sessions } from '../session/sessions.ts';
import type { SessionStore } from '../session/store.ts';

const POLL_INTERVAL_MS = 10;
const LOCK_MARGIN_MS = 5_000;
export const UNAVAILABLE_BACKOFF_MS = 5_000;
/** Above this many entries, expired backoff entries are pruned on insert (bounds memory). */
const BACKOFF_PRUNE_AT = 10_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface RefresherDeps {
  config: GatewayConfig;
  store: SessionStore;
  sessions: Sessions;
  idp: IdpClient;
  metrics: Metrics;
  log: Logger;
  now: () => number;
}

export class TokenRefresher {
  private readonly inflight = new Map<string, Promise<SessionRecord>>();
  /** handle -> time until which an `unavailable` IdP is not asked again for a valid token. */
  private readonly backoffUntil = new Map<string, number>();
  private readonly lockTtlMs: number;

  constructor(private readonly deps: RefresherDeps) {
    this.lockTtlMs = deps.config.oidc.timeoutMs + LOCK_MARGIN_MS;
  }

  private expired(record: SessionRecord): boolean {
    const { expiresAt } = record.tokens;
    return expiresAt !== null && expiresAt <= this.deps.now();
  }

  needsRefresh(record: SessionRecord): boolean {
    const { expiresAt } = record.tokens;
    return expiresAt !== null && expiresAt - this.deps.now() <= this.deps.config.tokens.refreshBeforeExpiryMs;
  }

  /** The session's record with an access token that is fresh enough to forward. */
  async ensureFresh(session: LoadedSession): Promise<SessionRecord> {
    if (!this.needsRefresh(session.record)) return session.record;
    if (this.backingOff(session.handle) && !this.expired(session.record)) return session.record;
    return this.refresh(session, session.record.tokens.accessToken);
  }

  private backingOff(handle: string): boolean {
    const until = this.backoffUntil.get(handle);
    if (until === undefined) return false;
    if (until > this.deps.now()) return true;
    this.backoffUntil.delete(handle);
    return false;
  }

  private startBackoff(handle: string): void {
    const now = this.deps.now();
    if (this.backoffUntil.size >= BACKOFF_PRUNE_AT) {
      for (const [key, until] of this.backoffUntil) if (until <= now) this.backoffUntil.delete(key);
    }
    this.backoffUntil.set(handle, now + UNAVAILABLE_BACKOFF_MS);
  }

  /**
   * After an upstream rejected `rejectedToken` (401 invalid_token): a newer token, refreshed
   * now unless another request already did.
   */
  refreshAfterRejection(session: LoadedSession, rejectedToken: string): Promise<SessionRecord> {
    return this.refresh(session, rejectedToken, true);
  }

  private refresh(session: LoadedSession, staleToken: string, force = false): Promise<SessionRecord> {
    const running = this.inflight.get(session.handle);
    if (running) {
      this.deps.metrics.tokenRefresh.inc({ result: 'coalesced' });
      return running;
    }
    const promise = this.refreshAcrossInstances(session, staleToken, force).finally(() => this.inflight.delete(session.handle));
    this.inflight.set(session.handle, promise);
    return promise;
  }

  /**
   * Someone else's refresh produced what we need: a different token than the one this request
   * started with, and still valid. "Valid", not "outside the refresh window": when the IdP's
   * token lifetime is shorter than `refreshBeforeExpiry`, every new token is inside the window,
   * and demanding more would make each waiting instance refresh once more in turn.
   */
  private settledElsewhere(record: SessionRecord, staleToken: string, force: boolean): boolean {
    return record.tokens.accessToken !== staleToken && (force || !this.expired(record));
  }

  private async refreshAcrossInstances(session: LoadedSession, staleToken: string, force: boolean): Promise<SessionRecord> {
    const { store, sessions } = this.deps;
    // Real elapsed time, not the injectable clock: the lock's TTL runs in the store's real time.
    const deadline = performance.now() + this.lockTtlMs + 1_000;
    for (;;) {
      const owner = await store.acquireLock(session.handle, this.lockTtlMs);
      if (owner) {
        try {
          const current = await sessions.loadHandle(session.handle);
          if (current.state !== 'active') throw new GatewayError('session_expired', { detail: 'session ended during refresh' });
          if (this.settledElsewhere(current.record, staleToken, force)) {
            this.deps.metrics.tokenRefresh.inc({ result: 'coalesced' });
            return current.record;
          }
          return await this.callIdp(current);
        } finally {
          await store.releaseLock(session.handle, owner).catch(() => {});
        }
      }
      // Another instance holds the lock: wait for its result.
      await sleep(POLL_INTERVAL_MS);
      const current = await sessions.loadHandle(session.handle);
      if (current.state !== 'active') throw new GatewayError('session_expired', { detail: 'session ended during a refresh elsewhere' });
      if (this.settledElsewhere(current.record, staleToken, force)) {
        this.deps.metrics.tokenRefresh.inc({ result: 'coalesced' });
        return current.record;
      }
      if (performance.now() > deadline) {
        if (!this.expired(current.record) && !force) return current.record;
        throw new GatewayError('idp_unavailable', { detail: 'timed out waiting for another instance to refresh' });
      }
    }
  }

  private async callIdp(session: LoadedSession): Promise<SessionRecord> {
    const { idp, metrics, sessions, log } = this.deps;
    const { record } = session;
    const refreshToken = record.tokens.refreshToken;
    if (!refreshToken) {
      if (!this.expired(record)) return record;
      await sessions.destroy(session.handle, record);
      throw new GatewayError('session_expired', { detail: 'access token expired and no refresh token was issued' });
    }
    const started = performance.now();
    let response;
    try {
      response = await idp.refresh(refreshToken);
    } catch (err) {
      const failure = classifyIdpFailure(err);
      if (failure.kind === 'unavailable' || (err instanceof GatewayError && err.code === 'idp_unavailable')) {
        metrics.tokenRefresh.inc({ result: 'error' });
        log.warn({ event: 'refresh_unavailable', detail: failure.kind === 'unavailable' ? failure.detail : 'not loaded' }, 'token refresh failed; session kept');
        if (!this.expired(record)) {
          this.startBackoff(session.handle);
          return record;
        }
        throw new GatewayError('idp_unavailable', { detail: 'refresh failed and the access token has expired', cause: err });
      }
      metrics.tokenRefresh.inc({ result: failure.kind === 'rejected' ? 'invalid_grant' : 'error' });
      log.info({ event: 'refresh_rejected', reason: failure.kind === 'rejected' ? failure.error : failure.detail }, 'identity provider refused the refresh; session ended');
      await sessions.destroy(session.handle, record);
      throw new GatewayError('session_expired', { detail: 'refresh rejected', cause: err });
    } finally {
      metrics.refreshDuration.observe((performance.now() - started) / 1000);
    }
    if (!sameIdentity(record.tokens.idToken, response.id_token)) {
      metrics.tokenRefresh.inc({ result: 'error' });
      await sessions.destroy(session.handle, record);
      throw new GatewayError('session_expired', { detail: 'refreshed ID token names another user, issuer or audience' });
    }
    const updated: SessionRecord = { ...record, tokens: tokensFromResponse(response, this.deps.now(), record.tokens) };
    if (!(await sessions.update(session, updated))) throw new GatewayError('session_expired', { detail: 'session ended during refresh' });
    this.backoffUntil.delete(session.handle);
    metrics.tokenRefresh.inc({ result: 'success' });
    return updated;
  }
}
