/**
 * Minting a route's own token from the session's grant (docs/http-interface.md#route-tokens): a route with
 * `audience` or `scopes` must not receive the session's broad access token.
 *
 * - When the IdP lists the RFC 8693 token-exchange grant, the session's (fresh) access token is
 *   exchanged for one with the route's audience (`audience` and RFC 8707 `resource`) and scopes.
 *   The refresh token is not involved.
 * - Otherwise the refresh token is redeemed with `resource` and `scope` (RFC 8707 section 2.2).
 *   With rotation that consumes the refresh token: the rotated one becomes the session's refresh
 *   token, while the main access token stays as it is.
 *
 * Runs with the session's store lock held (token-refresher.ts), which also classifies failures
 * and writes the result.
 */
import type { RouteConfig } from '../config/load.ts';
import { GatewayError } from '../errors.ts';
import type { TokenGrants, TokenResponse } from '../oidc/client.ts';
import { tokensFromResponse } from '../oidc/tokens.ts';
import type { LoadedSession, RouteToken, SessionRecord } from '../session/sessions.ts';

export interface MintRequest {
  idp: TokenGrants;
  now: () => number;
  route: RouteConfig;
  session: LoadedSession;
  /** The record with a fresh main access token (refreshing it under the held lock if needed). */
  freshMain(session: LoadedSession): Promise<SessionRecord>;
}

function routeParameters(route: RouteConfig): Record<string, string> {
  const parameters: Record<string, string> = {};
  if (route.audience) parameters.resource = route.audience;
  if (route.scopes?.length) parameters.scope = route.scopes.join(' ');
  return parameters;
}

function routeToken(response: TokenResponse, now: number): RouteToken {
  const { accessToken, tokenType, expiresAt } = tokensFromResponse(response, now);
  return { accessToken, tokenType, expiresAt };
}

/** The session record with a new token for `route`; the caller stores it. */
export async function mintRouteToken({ idp, now, route, session, freshMain }: MintRequest): Promise<SessionRecord> {
  const parameters = routeParameters(route);
  if (idp.supportsTokenExchange) {
    const record = await freshMain(session);
    const exchange = route.audience ? { ...parameters, audience: route.audience } : parameters;
    const response = await idp.tokenExchange(record.tokens.accessToken, exchange);
    return { ...record, routeTokens: { ...record.routeTokens, [route.path]: routeToken(response, now()) } };
  }
  const { record } = session;
  const refreshToken = record.tokens.refreshToken;
  // Nothing can mint a token for this route; the session itself is still fine for other routes.
  if (!refreshToken)
    throw new GatewayError('idp_unavailable', { detail: `no refresh token and no token exchange to mint a token for ${route.path}` });
  const response = await idp.refresh(refreshToken, parameters);
  return {
    ...record,
    tokens: { ...record.tokens, refreshToken: response.refresh_token ?? refreshToken },
    routeTokens: { ...record.routeTokens, [route.path]: routeToken(response, now()) },
  };
}
