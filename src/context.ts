/**
 * Everything a request handler needs, built once per gateway by `createGateway` and passed
 * explicitly (no globals), so tests can build several gateways in one process and inject
 * their own clock or store.
 */
import type { GatewayConfig } from './config/load.ts';
import type { Logger } from './log.ts';
import type { IdpClient } from './oidc/client.ts';
import type { LogoutTokenVerifier } from './oidc/logout-token.ts';
import type { Metrics } from './ops/metrics.ts';
import type { ClientTokens } from './refresh/client-tokens.ts';
import type { TokenRefresher } from './refresh/token-refresher.ts';
import type { SessionCookie } from './session/cookie.ts';
import type { Sealer } from './session/seal.ts';
import type { Sessions } from './session/sessions.ts';
import type { SessionStore } from './session/store.ts';

export interface GatewayContext {
  config: GatewayConfig;
  log: Logger;
  now: () => number;
  store: SessionStore;
  sealer: Sealer;
  sessions: Sessions;
  cookie: SessionCookie;
  idp: IdpClient;
  logoutTokens: LogoutTokenVerifier;
  refresher: TokenRefresher;
  clientTokens: ClientTokens;
  metrics: Metrics;
}
