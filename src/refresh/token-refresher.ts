/**
 * Keeping a session's access token usable (docs/http-interface.md#tokens-and-refresh), with at most one refresh per
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
 *      Tokens a refresh minted for a session that ended meanwhile are revoked, not dropped.
 *   4. Without it: poll the session until the token changes or the lock frees (then retry),
 *      bounded by the lock TTL; a waiter that runs out answers 503 idp_unavailable, never 401.
 *
 * Outcomes, as the IdP client classified them (oidc/idp-error.ts):
 *   rejected (invalid_grant or any 4xx but 408 and 429) or an invalid response -> session
 *   destroyed, 401 session_expired;
 *   unavailable (network, timeout, 408, 429, 5xx) -> session kept; the current token if it is
 *   still valid, else 503 idp_unavailable;
 *   a route-token mint rejected with invalid_target or invalid_scope -> the route's audience or
 *   scopes are wrong, not the grant: 502 bad_gateway, session kept.
 *
 * The same protocol keeps route tokens (docs/http-interface.md#route-tokens, `route-tokens.ts`): a *target* is the
 * session's main token or one route's token. In-process promises are per session and target,
 * but the store lock is per session for every target: minting a route token may rotate the
 * refresh token, so it must never overlap a main refresh of the same session.
 *
 * After an `unavailable` outcome with a still-valid token, this process leaves the session alone
 * for UNAVAILABLE_BACKOFF_MS, or for the IdP's `Retry-After` when that is longer: otherwise a slow
 * IdP would add its whole timeout to every request of that session while the token is still
 * perfectly usable. A shorter `Retry-After` (0, a date in the past, a skewed clock) never
 * shortens that floor. An expired token (nothing to fall back on) and an upstream rejection (the
 * token is useless) always try again — unless the IdP said when to come back (a positive
 * `Retry-After` on a 429 or 503, bounded by MAX_RETRY_AFTER_MS): then no call for that session
 * and target goes out before that time, and a request that cannot do without one answers 503
 * idp_unavailable at once.
 */
import type { GatewayConfig } from '../config/load.ts';
import { errorDetail, GatewayError, isGatewayError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { TokenGrants } from '../oidc/client.ts';
import { IdpError } from '../oidc/idp-error.ts';
import { revokeTokens } from '../oidc/revoke-tokens.ts';
import { sameIdentity, tokensFromResponse } from '../oidc/tokens.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { RouteConfig } from '../config/load.ts';
import { expiresWithin, type AccessToken, type LoadedSession, type SessionRecord, type Sessions } from '../session/sessions.ts';
import type { SessionStore } from '../session/store.ts';
import { isStoreOutage, PendingWrites } from './pending-writes.ts';
import { mintRouteToken } from './route-tokens.ts';
import { inSpan } from '../telemetry/tracing.ts';

const POLL_INTERVAL_MS = 10;
const LOCK_MARGIN_MS = 5_000;
export const UNAVAILABLE_BACKOFF_MS = 5_000;
/**
 * From this many entries on, expired backoff entries are pruned on insert (bounds memory). The
 * next prune waits until the map has doubled again, so each insert costs O(1) amortised.
 */
const BACKOFF_PRUNE_AT = 10_000;
/** OAuth errors that say the route's `audience`/`scopes` are wrong (RFC 8707 section 2, RFC 6749 section 5.2). */
const ROUTE_CONFIGURATION_ERRORS = new Set(['invalid_target', 'invalid_scope']);

/**
 * Until when the IdP is left alone for a still-valid token (`until`), and until when even an
 * expired token waits because the IdP said so with `Retry-After` (`askedUntil`, never after `until`).
 */
interface Backoff {
  until: number;
  askedUntil: number;
}

/** Whose token a refresh produces: the session's main token, or the token of one route. */
type Target = { route?: RouteConfig };
const MAIN: Target = {};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface RefresherDeps {
  config: GatewayConfig;
  store: SessionStore;
  sessions: Sessions;
  idp: TokenGrants;
  metrics: Metrics;
  log: Logger;
  now: () => number;
}

export class TokenRefresher {
  private readonly inflight = new Map<string, Promise<SessionRecord>>();
  /** handle+target -> until when an `unavailable` IdP is not asked again. */
  private readonly backoffs = new Map<string, Backoff>();
  /** The map size at which the next prune of expired backoffs runs. */
  private pruneAt = BACKOFF_PRUNE_AT;
  private readonly lockTtlMs: number;
  /** Refreshed records a store outage kept from being written (see pending-writes.ts). */
  readonly pending: PendingWrites;

  constructor(private readonly deps: RefresherDeps) {
    this.lockTtlMs = deps.config.oidc.timeoutMs + LOCK_MARGIN_MS;
    this.pending = new PendingWrites({
      sessions: deps.sessions,
      log: deps.log,
      onLost: (before, record) => this.revokeUnstored(before, record, MAIN),
      releaseLock: (handle, owner) => deps.store.releaseLock(handle, owner),
    });
  }

  /** `session` with the record this process refreshed but could not store yet, if any. */
  private withPending<T extends LoadedSession>(session: T): T {
    const newer = this.pending.newer(session.handle);
    if (newer) session.record = newer;
    return session;
  }

  private tokenOf(record: SessionRecord, target: Target): AccessToken | undefined {
    return target.route ? record.routeTokens?.[target.route.path] : record.tokens;
  }

  private expiredToken(token: AccessToken | undefined): boolean {
    return expiresWithin(token, this.deps.now(), 0);
  }

  private expired(record: SessionRecord, target: Target = MAIN): boolean {
    return this.expiredToken(this.tokenOf(record, target));
  }

  private stale(token: AccessToken | undefined): boolean {
    return expiresWithin(token, this.deps.now(), this.deps.config.tokens.refreshBeforeExpiryMs);
  }

  /** The session's record with an access token that is fresh enough to forward. */
  ensureFresh(session: LoadedSession): Promise<SessionRecord> {
    return this.ensure(session, MAIN);
  }

  /** The session's record with a fresh enough token for `route` in `routeTokens[route.path]`. */
  ensureRouteToken(session: LoadedSession, route: RouteConfig): Promise<SessionRecord> {
    return this.ensure(session, { route });
  }

  private async ensure(session: LoadedSession, target: Target): Promise<SessionRecord> {
    this.withPending(session);
    const token = this.tokenOf(session.record, target);
    if (!this.stale(token)) return session.record;
    if (this.backingOff(this.key(session.handle, target)) && !this.expiredToken(token)) return session.record;
    return this.refresh(session, target, token?.accessToken);
  }

  private key(handle: string, target: Target): string {
    return target.route ? `${handle} ${target.route.path}` : handle;
  }

  /** The backoff in force for `key`, if any. */
  private backingOff(key: string): Backoff | undefined {
    const backoff = this.backoffs.get(key);
    if (backoff === undefined) return undefined;
    if (backoff.until > this.deps.now()) return backoff;
    this.backoffs.delete(key);
    return undefined;
  }

  /**
   * After an `unavailable` outcome: valid tokens wait at least UNAVAILABLE_BACKOFF_MS (longer when
   * the IdP asked for longer); expired ones only for what the IdP asked (`retryAfterMs` > 0).
   */
  private startBackoff(key: string, retryAfterMs: number | undefined): void {
    const now = this.deps.now();
    if (this.backoffs.size >= this.pruneAt) {
      for (const [entry, backoff] of this.backoffs) if (backoff.until <= now) this.backoffs.delete(entry);
      this.pruneAt = Math.max(BACKOFF_PRUNE_AT, 2 * this.backoffs.size);
    }
    const asked = retryAfterMs ?? 0;
    this.backoffs.set(key, { until: now + Math.max(asked, UNAVAILABLE_BACKOFF_MS), askedUntil: now + asked });
  }

  /**
   * After an upstream rejected `rejectedToken` (401 invalid_token): a newer token, refreshed
   * now unless another request already did.
   */
  refreshAfterRejection(session: LoadedSession, rejectedToken: string): Promise<SessionRecord> {
    return this.refresh(session, MAIN, rejectedToken, true);
  }

  /** The same for a route token the upstream rejected. */
  refreshRouteAfterRejection(session: LoadedSession, route: RouteConfig, rejectedToken: string): Promise<SessionRecord> {
    return this.refresh(session, { route }, rejectedToken, true);
  }

  private refresh(session: LoadedSession, target: Target, staleToken: string | undefined, force = false): Promise<SessionRecord> {
    const key = this.key(session.handle, target);
    const running = this.inflight.get(key);
    if (running) {
      this.deps.metrics.tokenRefresh.inc({ result: 'coalesced' });
      return running;
    }
    const backoff = this.backingOff(key);
    if (backoff && backoff.askedUntil > this.deps.now()) {
      return Promise.reject(
        new GatewayError('idp_unavailable', { detail: 'the identity provider asked to wait before the next refresh (Retry-After)' }),
      );
    }
    const attributes = { 'bff.refresh.target': target.route ? 'route' : 'main' };
    const refreshing = () => this.refreshAcrossInstances(session, target, staleToken, force);
    const promise = inSpan('bff.token_refresh', attributes, refreshing, () => ({ 'bff.refresh.result': 'success' })).finally(() =>
      this.inflight.delete(key),
    );
    this.inflight.set(key, promise);
    return promise;
  }

  /**
   * Someone else's refresh produced what we need: a different token than the one this request
   * started with, and still valid. "Valid", not "outside the refresh window": when the IdP's
   * token lifetime is shorter than `refreshBeforeExpiry`, every new token is inside the window,
   * and demanding more would make each waiting instance refresh once more in turn.
   */
  private settledElsewhere(record: SessionRecord, target: Target, staleToken: string | undefined, force: boolean): boolean {
    const token = this.tokenOf(record, target);
    return token !== undefined && token.accessToken !== staleToken && (force || !this.expiredToken(token));
  }

  private async refreshAcrossInstances(
    session: LoadedSession,
    target: Target,
    staleToken: string | undefined,
    force: boolean,
  ): Promise<SessionRecord> {
    const { store, sessions } = this.deps;
    // Real elapsed time, not the injectable clock: the lock's TTL runs in the store's real time.
    const deadline = performance.now() + this.lockTtlMs + 1_000;
    for (;;) {
      const owner = await store.acquireLock(session.handle, this.lockTtlMs);
      if (owner) {
        try {
          const current = await sessions.loadHandle(session.handle);
          if (current.state !== 'active') throw new GatewayError('session_expired', { detail: 'session ended during refresh' });
          this.withPending(current);
          if (this.settledElsewhere(current.record, target, staleToken, force)) {
            this.deps.metrics.tokenRefresh.inc({ result: 'coalesced' });
            return current.record;
          }
          return await this.callIdp(current, target, owner);
        } finally {
          await store.releaseLock(session.handle, owner).catch(() => {});
        }
      }
      // Another instance (or another target of this session) holds the lock: wait for its result.
      await sleep(POLL_INTERVAL_MS);
      const current = await sessions.loadHandle(session.handle);
      if (current.state !== 'active') throw new GatewayError('session_expired', { detail: 'session ended during a refresh elsewhere' });
      this.withPending(current);
      if (this.settledElsewhere(current.record, target, staleToken, force)) {
        this.deps.metrics.tokenRefresh.inc({ result: 'coalesced' });
        return current.record;
      }
      if (performance.now() > deadline) {
        if (!this.expired(current.record, target) && !force) return current.record;
        throw new GatewayError('idp_unavailable', { detail: 'timed out waiting for another instance to refresh' });
      }
    }
  }

  /** With the session's lock held. */
  private async callIdp(session: LoadedSession, target: Target, lockOwner?: string): Promise<SessionRecord> {
    const { metrics } = this.deps;
    const started = performance.now();
    let updated: SessionRecord;
    try {
      if (target.route) {
        const route = target.route;
        // Token exchange presents the main access token: make it fresh first, under this lock.
        const freshMain = async (current: LoadedSession) =>
          this.stale(current.record.tokens) ? this.callIdp(current, MAIN, lockOwner) : current.record;
        updated = await mintRouteToken({ idp: this.deps.idp, now: this.deps.now, route, session, freshMain });
      } else {
        const refreshed = await this.refreshMain(session);
        if (!refreshed) return session.record;
        updated = refreshed;
      }
    } catch (err) {
      return this.failed(session, target, err);
    } finally {
      metrics.refreshDuration.observe((performance.now() - started) / 1000);
    }
    if (!(await this.store(session, updated, lockOwner))) {
      this.revokeUnstored(session.record, updated, target);
      throw new GatewayError('session_expired', { detail: 'session ended during refresh' });
    }
    this.backoffs.delete(this.key(session.handle, target));
    metrics.tokenRefresh.inc({ result: 'success' });
    return updated;
  }

  /**
   * Stores a refreshed record. The IdP has already rotated the refresh token, so a store outage
   * must not lose it: the record is kept in process and written later (pending-writes.ts), and
   * this request goes on with it. False when the session was gone.
   */
  private async store(session: LoadedSession, updated: SessionRecord, lockOwner: string | undefined): Promise<boolean> {
    try {
      const stored = await this.deps.sessions.update(session, updated);
      if (stored) this.pending.settled(session.handle);
      return stored;
    } catch (err) {
      if (!isStoreOutage(err)) throw err;
      this.pending.hold(session, updated, lockOwner);
      session.record = updated;
      return true;
    }
  }

  /**
   * The refresh lost the race to a logout (or a timeout): the session is gone, so the tokens it
   * just minted were never stored and nobody will ever use them — but the IdP considers them
   * live. Revoke them (refresh token first), in the background: the request answers 401 now
   * whatever the IdP says, and the session's lock no longer protects anything.
   */
  private revokeUnstored(before: SessionRecord, minted: SessionRecord, target: Target): void {
    const { refreshToken } = minted.tokens;
    const accessTokens = [minted.tokens.accessToken, ...Object.values(minted.routeTokens ?? {}).map((token) => token.accessToken)];
    const known = new Set([before.tokens.accessToken, ...Object.values(before.routeTokens ?? {}).map((token) => token.accessToken)]);
    const unstored = {
      refreshToken: refreshToken && refreshToken !== before.tokens.refreshToken ? refreshToken : undefined,
      accessTokens: [...new Set(accessTokens)].filter((token) => !known.has(token)),
    };
    if (!unstored.refreshToken && unstored.accessTokens.length === 0) return;
    const { idp, log } = this.deps;
    const count = (unstored.refreshToken ? 1 : 0) + unstored.accessTokens.length;
    void revokeTokens(idp, log, unstored, { kind: 'refresh_lost_race', route: target.route?.path }).then((failed) => {
      const fields = { route: target.route?.path, tokens: count, failed };
      if (!idp.canRevoke)
        log.info(
          { event: 'lost_race_tokens_not_revoked', ...fields },
          'tokens from a refresh that finished after the session ended were dropped; the identity provider offers no revocation',
        );
      else if (failed === 0)
        log.info(
          { event: 'lost_race_tokens_revoked', ...fields },
          'tokens from a refresh that finished after the session ended were revoked',
        );
      else
        log.warn(
          { event: 'lost_race_tokens_revoke_failed', ...fields },
          `${failed} of ${count} tokens from a refresh that finished after the session ended could not be revoked`,
        );
    });
  }

  /** The record with a refreshed main token; undefined to keep the record as it is. */
  private async refreshMain(session: LoadedSession): Promise<SessionRecord | undefined> {
    const { record } = session;
    const refreshToken = record.tokens.refreshToken;
    if (!refreshToken) {
      if (!this.expired(record)) return undefined;
      await this.deps.sessions.destroy(session.handle, record);
      throw new GatewayError('session_expired', { detail: 'access token expired and no refresh token was issued' });
    }
    const response = await this.deps.idp.refresh(refreshToken);
    if (!sameIdentity(record.tokens.idToken, response.id_token)) {
      this.deps.metrics.tokenRefresh.inc({ result: 'error' });
      await this.deps.sessions.destroy(session.handle, record);
      throw new GatewayError('session_expired', { detail: 'refreshed ID token names another user, issuer or audience' });
    }
    return { ...record, tokens: tokensFromResponse(response, this.deps.now(), record.tokens) };
  }

  /**
   * A failed IdP call: keep the session (and maybe its token) or end it. Failures that did not
   * come from the IdP (the store, nothing to mint with) keep the session like an unavailable IdP.
   */
  private async failed(session: LoadedSession, target: Target, err: unknown): Promise<SessionRecord> {
    const { metrics, sessions, log } = this.deps;
    const { record } = session;
    const route = target.route?.path;
    if (isGatewayError(err) && err.code === 'session_expired') throw err;
    const failure = err instanceof IdpError ? err : undefined;
    if (failure === undefined || failure.kind === 'unavailable') {
      metrics.tokenRefresh.inc({ result: 'error' });
      log.warn({ event: 'refresh_unavailable', route, detail: errorDetail(err) }, 'token refresh failed; session kept');
      this.startBackoff(this.key(session.handle, target), failure?.retryAfterMs);
      if (!this.expired(record, target)) return record;
      throw new GatewayError('idp_unavailable', { detail: 'refresh failed and the access token has expired', cause: err });
    }
    if (target.route && failure.kind === 'rejected' && ROUTE_CONFIGURATION_ERRORS.has(failure.reason)) {
      metrics.tokenRefresh.inc({ result: 'error' });
      log.warn(
        { event: 'route_token_refused', route, reason: failure.reason },
        "identity provider refused the route's audience or scopes; session kept",
      );
      throw new GatewayError('bad_gateway', { detail: `token for route ${target.route.path} refused: ${failure.reason}`, cause: err });
    }
    metrics.tokenRefresh.inc({ result: failure.kind === 'rejected' ? 'invalid_grant' : 'error' });
    log.info({ event: 'refresh_rejected', route, reason: failure.reason }, 'identity provider refused the refresh; session ended');
    await sessions.destroy(session.handle, record);
    throw new GatewayError('session_expired', { detail: 'refresh rejected', cause: err });
  }
}
