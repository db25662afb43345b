/**
 * Which token a request carries upstream, per route mode (docs/http-interface.md#route-modes):
 *   user      the session's access token, refreshed first when it is about to expire; on a
 *             route with `audience` or `scopes`, a token minted for that route instead;
 *   optional  the same when there is a session, nothing otherwise;
 *   client    the gateway's own client-credentials token for the route (no session needed);
 *   none      nothing.
 * `retry` answers the upstream's 401 invalid_token with a newer token (one refresh, shared
 * with every concurrent request of the session); `tokens` lists everything that must never be
 * echoed back to the browser.
 * A token the IdP issued as `token_type: DPoP` (RFC 9449) travels as `Authorization: DPoP` with
 * a fresh proof for each request; any other type as `Bearer`.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { RouteConfig } from '../config/load.ts';
import { GatewayError } from '../errors.ts';
import type { IdpClient } from '../oidc/client.ts';
import type { ClientTokens } from '../refresh/client-tokens.ts';
import type { TokenRefresher } from '../refresh/token-refresher.ts';
import type { RequestSession, RequestSessions } from '../session/request-session.ts';
import type { SessionRecord, Sessions } from '../session/sessions.ts';

export interface Credentials {
  accessToken: string | undefined;
  session: RequestSession | undefined;
  /** Whether the current access token is DPoP-bound (its scheme is `DPoP`). */
  dpop: boolean;
  /** A newer token after an upstream rejection, or undefined when there is nothing to retry. */
  retry(): Promise<string | undefined>;
  /**
   * Every token the request has carried or could reveal. The same array while nothing changes
   * (the redactor's compiled needle set is keyed by it, scrub.ts).
   */
  tokens(): readonly string[];
}

/** A record's tokens, listed once per record (records are replaced, never changed, on refresh). */
const tokensOfRecord = new WeakMap<SessionRecord, readonly string[]>();

function recordTokens(record: SessionRecord): readonly string[] {
  let listed = tokensOfRecord.get(record);
  if (listed === undefined) {
    const { accessToken, refreshToken, idToken } = record.tokens;
    const routeTokens = Object.values(record.routeTokens ?? {}).map((token) => token.accessToken);
    listed = Object.freeze(
      [accessToken, refreshToken, idToken, ...routeTokens].filter(
        (token): token is string => typeof token === 'string' && token.length > 0,
      ),
    );
    tokensOfRecord.set(record, listed);
  }
  return listed;
}

/** `seen` with `more` added (a new array only when something is new). */
function withTokens(seen: readonly string[], more: readonly string[]): readonly string[] {
  const added = more.filter((token) => !seen.includes(token));
  return added.length === 0 ? seen : Object.freeze([...seen, ...added]);
}

/** A route with its own `audience` or `scopes` carries a token minted for it (docs/http-interface.md#route-tokens). */
function hasRouteToken(route: RouteConfig): boolean {
  return route.audience !== undefined || route.scopes !== undefined;
}

/** The token this route carries from the record: its own route token, or the session's. */
function carried(record: SessionRecord, route: RouteConfig): { accessToken: string; tokenType: string } {
  if (!hasRouteToken(route)) return record.tokens;
  const token = record.routeTokens?.[route.path];
  if (!token) throw new GatewayError('idp_unavailable', { detail: `no token for route ${route.path}` });
  return token;
}

const NO_TOKENS: readonly string[] = Object.freeze([]);
const NONE: Credentials = {
  accessToken: undefined,
  session: undefined,
  dpop: false,
  retry: async () => undefined,
  tokens: () => NO_TOKENS,
};

export function isDpopType(tokenType: string | undefined): boolean {
  return tokenType?.toLowerCase() === 'dpop';
}

export interface CredentialDeps {
  requestSessions: RequestSessions;
  sessions: Sessions;
  refresher: TokenRefresher;
  clientTokens: ClientTokens;
  /** For the DPoP key, when tokens are DPoP-bound. */
  idp: Pick<IdpClient, 'dpop'>;
}

export class CredentialSource {
  constructor(private readonly deps: CredentialDeps) {}

  /**
   * The headers that carry the token upstream: `Authorization` and, for a DPoP-bound token, a
   * proof for this very method and URL (a WebSocket URL is proven as its http(s) form).
   */
  async authHeaders(credentials: Credentials, method: string, url: string | URL): Promise<{ authorization?: string; dpop?: string }> {
    const token = credentials.accessToken;
    if (token === undefined) return {};
    if (!credentials.dpop) return { authorization: `Bearer ${token}` };
    const key = this.deps.idp.dpop;
    if (!key) throw new GatewayError('bad_gateway', { detail: 'a DPoP-bound token but no DPoP key loaded' });
    return { authorization: `DPoP ${token}`, dpop: await key.proof(method, url, token) };
  }

  /** The credentials a request on `route` carries, refreshing or fetching a token when needed. */
  async for(route: RouteConfig, headers: IncomingHttpHeaders): Promise<Credentials> {
    const { clientTokens, refresher, requestSessions, sessions } = this.deps;
    if (route.token === 'none') return NONE;
    if (route.token === 'client') {
      const first = await clientTokens.tokenFor(route);
      let used: readonly string[] = Object.freeze([first.accessToken]);
      const credentials: Credentials = {
        accessToken: first.accessToken,
        session: undefined,
        dpop: isDpopType(first.tokenType),
        async retry() {
          clientTokens.invalidate(route, credentials.accessToken as string);
          const next = await clientTokens.tokenFor(route);
          credentials.accessToken = next.accessToken;
          credentials.dpop = isDpopType(next.tokenType);
          used = withTokens(used, [next.accessToken]);
          return next.accessToken;
        },
        tokens: () => used,
      };
      return credentials;
    }
    const session = await requestSessions.fromHeaders(headers);
    if (!session) {
      if (route.token === 'user') throw new GatewayError('unauthenticated');
      return NONE;
    }
    const ownToken = hasRouteToken(route);
    let record = ownToken ? await refresher.ensureRouteToken(session, route) : await refresher.ensureFresh(session);
    await sessions.touch(session).catch(() => {});
    let seen = recordTokens(record);
    const first = carried(record, route);
    const credentials: Credentials = {
      accessToken: first.accessToken,
      session,
      dpop: isDpopType(first.tokenType),
      async retry() {
        const rejected = credentials.accessToken as string;
        record = ownToken
          ? await refresher.refreshRouteAfterRejection(session, route, rejected)
          : await refresher.refreshAfterRejection(session, rejected);
        seen = withTokens(seen, recordTokens(record));
        const next = carried(record, route);
        credentials.accessToken = next.accessToken;
        credentials.dpop = isDpopType(next.tokenType);
        return credentials.accessToken;
      },
      tokens: () => seen,
    };
    return credentials;
  }
}
