/**
 * Tokens for `token: client` routes (docs/http-interface.md#route-tokens): the client-credentials grant, cached
 * per route until shortly before expiry (`tokens.refreshBeforeExpiry`), one fetch at a time per
 * route in this process. Such routes need no session; the CSRF rule still applies, because the
 * token speaks for the gateway and a cross-site page must not borrow it.
 * IdP refusal or unavailability is a 503 idp_unavailable: no user session is involved.
 */
import type { GatewayConfig, RouteConfig } from '../config/load.ts';
import { errorDetail, GatewayError } from '../errors.ts';
import type { TokenGrants } from '../oidc/client.ts';
import { IdpError } from '../oidc/idp-error.ts';
import { tokensFromResponse } from '../oidc/tokens.ts';
import { expiresWithin, type SessionTokens } from '../session/sessions.ts';

export class ClientTokens {
  private readonly cache = new Map<string, SessionTokens>();
  private readonly inflight = new Map<string, Promise<SessionTokens>>();

  constructor(
    private readonly config: GatewayConfig,
    private readonly idp: Pick<TokenGrants, 'clientCredentials'>,
    private readonly now: () => number,
  ) {}

  private fresh(tokens: SessionTokens | undefined): tokens is SessionTokens {
    return tokens !== undefined && !expiresWithin(tokens, this.now(), this.config.tokens.refreshBeforeExpiryMs);
  }

  /** The route's current token (access token and type), fetching a new one when needed. */
  async tokenFor(route: RouteConfig): Promise<SessionTokens> {
    const cached = this.cache.get(route.path);
    if (this.fresh(cached)) return cached;
    let pending = this.inflight.get(route.path);
    if (!pending) {
      pending = this.fetch(route).finally(() => this.inflight.delete(route.path));
      this.inflight.set(route.path, pending);
    }
    return pending;
  }

  /** Forgets a token the upstream rejected, so the next call fetches a new one. */
  invalidate(route: RouteConfig, token: string): void {
    if (this.cache.get(route.path)?.accessToken === token) this.cache.delete(route.path);
  }

  private async fetch(route: RouteConfig): Promise<SessionTokens> {
    const parameters: Record<string, string> = {};
    if (route.scopes?.length) parameters.scope = route.scopes.join(' ');
    if (route.audience) parameters.resource = route.audience;
    try {
      const tokens = tokensFromResponse(await this.idp.clientCredentials(parameters), this.now());
      this.cache.set(route.path, tokens);
      return tokens;
    } catch (err) {
      const reason = err instanceof IdpError ? err.reason : errorDetail(err);
      throw new GatewayError('idp_unavailable', { detail: `client credentials for ${route.path}: ${reason}`, cause: err });
    }
  }
}
