/**
 * The composition root: every service the gateway runs on, built once from the configuration
 * as plain objects — no HTTP server in here. The HTTP adapters (server.ts: the auth routes, the
 * proxy, WebSockets, the admin listener) and the operator CLI each take the few services they
 * use from this one place; nothing else constructs a service, and nothing below the adapters
 * sees more than it needs.
 *
 * Built here, in dependency order:
 *   logger, clock, metrics, store
 *   sessions:  Sessions (records, lifetimes, indexes), RequestSessions (the session behind a
 *              cookie; its timeouts are counted as `timeout` logouts, its reads are spans while
 *              tracing is on), the session cookie,
 *              SessionEnding (logout, back-channel, admin: destroy, count, revoke)
 *   one-time:  OneTimeClaims and OneTimeValues, the store's named one-time namespaces
 *              (login state, logout-token jti, session-ended markers, logout hand-offs)
 *   IdP:       the OIDC client, the logout-token verifier
 *   tokens:    the refresher (main and route tokens), client-credentials tokens, and the
 *              credentials a proxied request carries
 *   login:     pending login transactions (sealed into the login cookie), logout hand-offs
 * Tests inject their own logger, clock, metrics or store (`ServiceDeps`).
 */
import { LoginTransactions } from './auth/login-transactions.ts';
import { LogoutHandoffs } from './auth/logout-handoff.ts';
import { SessionEnding } from './auth/end-session.ts';
import type { GatewayConfig } from './config/load.ts';
import { createLogger, type Logger } from './log.ts';
import { IdpClient } from './oidc/client.ts';
import { LogoutTokenVerifier } from './oidc/logout-token.ts';
import { Metrics } from './ops/metrics.ts';
import { CredentialSource } from './proxy/credentials.ts';
import { ClientTokens } from './refresh/client-tokens.ts';
import { TokenRefresher } from './refresh/token-refresher.ts';
import { SessionCookie } from './session/cookie.ts';
import { MemoryStore } from './session/memory-store.ts';
import { countStoreErrors } from './session/counted-store.ts';
import { OneTimeClaims, OneTimeValues } from './session/one-time.ts';
import { RedisStore } from './session/redis-store.ts';
import { RequestSessions } from './session/request-session.ts';
import { Sealer } from './session/seal.ts';
import { SessionCache } from './session/session-cache.ts';
import { Sessions } from './session/sessions.ts';
import { instanceId } from './telemetry/instance.ts';
import { traceSessionLoad } from './telemetry/session-span.ts';
import { startTracing } from './telemetry/tracing.ts';
import { AssertionSigner } from './authz/assertion.ts';
import { RouteIdentity } from './authz/route-identity.ts';
import type { SessionStore } from './session/store.ts';

export interface ServiceDeps {
  log?: Logger;
  store?: SessionStore;
  now?: () => number;
  metrics?: Metrics;
}

export interface Services {
  config: GatewayConfig;
  log: Logger;
  now: () => number;
  metrics: Metrics;
  /** The shared store: for readiness probes and session-end announcements; services use it for everything else. */
  store: SessionStore;
  cookie: SessionCookie;
  sessions: Sessions;
  requestSessions: RequestSessions;
  ending: SessionEnding;
  claims: OneTimeClaims;
  idp: IdpClient;
  logoutTokens: LogoutTokenVerifier;
  refresher: TokenRefresher;
  clientTokens: ClientTokens;
  credentials: CredentialSource;
  transactions: LoginTransactions;
  handoffs: LogoutHandoffs;
  /** Route rules, claim headers and identity assertions (docs/authorization.md). */
  identity: RouteIdentity;
  /** Signs identity assertions; undefined without `identity.assertion`. */
  assertions: AssertionSigner | undefined;
  /** Stops IdP discovery and closes the store. */
  close(): Promise<void>;
}

async function createStore(config: GatewayConfig, log: Logger): Promise<SessionStore> {
  // The Redis store logs its connection's state changes (connected, lost, auth failed) itself.
  return config.session.store === 'memory'
    ? new MemoryStore()
    : RedisStore.connect(config.session.redis, { log: log.child({ component: 'session-store' }) });
}

export async function buildServices(config: GatewayConfig, deps: ServiceDeps = {}): Promise<Services> {
  const log = deps.log ?? createLogger();
  // Off unless the OTEL_* environment asks for it (src/telemetry/tracing.ts).
  const tracing = startTracing({ instanceId: instanceId() });
  if (tracing) log.info({ event: 'tracing_on' }, 'OpenTelemetry tracing on (OTLP/HTTP)');
  const now = deps.now ?? Date.now;
  const metrics = deps.metrics ?? new Metrics({ processMetrics: true });
  // Every store call goes through the error counter (bff_store_errors_total).
  const store = countStoreErrors(deps.store ?? (await createStore(config, log)), (op) => metrics.storeErrors.inc({ op }));

  const sealer = new Sealer(config.session.encryptionKeys);
  const claims = new OneTimeClaims(store);
  const values = new OneTimeValues(store);
  const cookie = new SessionCookie(config.session);
  // Only a store with a change feed (Redis) can keep an in-process cache coherent.
  const sessionCache = config.session.cache.enabled ? SessionCache.attach(store, config.session.cache, now) : undefined;
  const sessions = new Sessions(store, sealer, config.session, now, claims, sessionCache);
  // The read behind a cookie is a `bff.session.load` span while tracing is on; off, nothing wraps it.
  const requestSessions = new RequestSessions(
    cookie,
    sessions,
    now,
    () => metrics.logouts.inc({ kind: 'timeout' }),
    tracing ? traceSessionLoad : undefined,
  );

  const idp = new IdpClient(config, log);
  const ending = new SessionEnding({ sessions, idp, metrics, log });
  const refresher = new TokenRefresher({ config, store, sessions, idp, metrics, log, now });
  const clientTokens = new ClientTokens(config, idp, now);

  const assertionConfig = config.identity.assertion;
  const assertions = assertionConfig
    ? await AssertionSigner.create({ ...assertionConfig, issuer: assertionConfig.issuer ?? config.publicUrl }, now)
    : undefined;
  const identity = new RouteIdentity({ routes: config.routes, signer: assertions, assertionHeader: assertionConfig?.header });

  return {
    config,
    log,
    now,
    metrics,
    store,
    cookie,
    sessions,
    requestSessions,
    ending,
    claims,
    idp,
    logoutTokens: new LogoutTokenVerifier(config, idp, claims),
    refresher,
    clientTokens,
    credentials: new CredentialSource({ requestSessions, sessions, refresher, clientTokens, idp }),
    transactions: new LoginTransactions(sealer, now, claims),
    handoffs: new LogoutHandoffs(values, sealer),
    identity,
    assertions,
    async close() {
      idp.stop();
      refresher.pending.close();
      sessionCache?.close();
      await store.close();
    },
  };
}
