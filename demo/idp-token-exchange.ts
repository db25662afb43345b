/**
 * An RFC 8693 token-exchange grant for the embedded IdP (oidc-provider has none built in), so
 * the gateway's exchange path for per-route tokens runs against a real token endpoint. Policy,
 * deliberately simple: a valid JWT access token this IdP issued to the calling client may be
 * exchanged for a JWT access token of the same user for any known resource server, with the
 * requested scopes that server offers.
 */
import { createLocalJWKSet, jwtVerify, type JWK, type JWTPayload } from 'jose';
import type { Provider } from 'oidc-provider';

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

export interface ResourceServerInfo {
  scope: string;
  accessTokenFormat: 'jwt';
  audience: string;
  accessTokenTTL: number;
}

export interface TokenExchangeOptions {
  issuer: string;
  privateJwks: { keys: JWK[] };
  /** The resource server for an indicator, or undefined when it is unknown. */
  resourceServer(indicator: string): ResourceServerInfo | undefined;
}

type OidcErrors = typeof import('oidc-provider').errors;

interface ExchangeContext {
  oidc: { params: Record<string, unknown>; client: { clientId: string } };
  body: unknown;
}

// The parts of oidc-provider this grant uses that its type declarations leave out.
interface ProviderInternals {
  AccessToken: new (fields: Record<string, unknown>) => { resourceServer: unknown; expiration: number; save(): Promise<string> };
  ResourceServer: new (identifier: string, info: ResourceServerInfo) => unknown;
  registerGrantType(name: string, handler: (ctx: ExchangeContext) => Promise<void>, params: string[]): void;
}

function publicJwks(privateJwks: { keys: JWK[] }): { keys: JWK[] } {
  return { keys: privateJwks.keys.map(({ d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub }) => pub) };
}

export function registerTokenExchange(oidcProvider: Provider, errors: OidcErrors, opts: TokenExchangeOptions): void {
  const provider = oidcProvider as unknown as ProviderInternals;
  const keys = createLocalJWKSet(publicJwks(opts.privateJwks));
  const handler = async (ctx: ExchangeContext) => {
    const params = ctx.oidc.params as Record<string, string | undefined>;
    if (!params.subject_token || params.subject_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest('subject_token of type access_token is required');
    }
    let subject: JWTPayload;
    try {
      ({ payload: subject } = await jwtVerify(params.subject_token, keys, { issuer: opts.issuer }));
    } catch {
      throw new errors.InvalidGrant('subject_token is invalid or expired');
    }
    if (subject.client_id !== ctx.oidc.client.clientId || typeof subject.sub !== 'string') {
      throw new errors.InvalidGrant('subject_token was not issued to this client');
    }
    const indicator = params.resource ?? params.audience;
    const info = indicator ? opts.resourceServer(indicator) : undefined;
    if (!indicator || !info) throw new errors.InvalidTarget();
    const offered = new Set(info.scope.split(' '));
    const scope = (params.scope ?? '').split(' ').filter((s) => offered.has(s)).join(' ') || undefined;

    const token = new provider.AccessToken({ accountId: subject.sub, client: ctx.oidc.client, gty: 'token_exchange', scope });
    token.resourceServer = new provider.ResourceServer(indicator, info);
    const value = await token.save();
    ctx.body = { access_token: value, issued_token_type: ACCESS_TOKEN_TYPE, token_type: 'Bearer', expires_in: token.expiration, ...(scope ? { scope } : {}) };
  };
  provider.registerGrantType(TOKEN_EXCHANGE, handler, ['subject_token', 'subject_token_type', 'audience', 'resource', 'scope', 'requested_token_type']);
}
