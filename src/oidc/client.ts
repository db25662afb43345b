/**
 * The gateway's side of OpenID Connect, on openid-client v6. The one place that knows the
 * library: discovery (retried with backoff until it succeeds), authorization URLs (plain or
 * PAR), the code, refresh and token-exchange grants, revocation (RFC 7009), end-session URLs, userinfo.
 *
 * Rules enforced here:
 * - ID tokens are signature-checked against the IdP's JWKS with an asymmetric algorithm
 *   allowlist: never `none`, never HS* (a client secret is not a signing key). openid-client
 *   skips that check for token-endpoint ID tokens, and its opt-in check
 *   (`enableNonRepudiationChecks`) refetches the JWKS for an unknown `kid` only once its copy
 *   is 60 s old — a key rotation at the IdP would then fail logins for up to a minute. So the
 *   signature is checked here (`verifyIdTokenSignature`) after openid-client has validated the
 *   claims (iss, aud, azp, exp, iat, nonce): an unknown `kid` triggers one refetch, at once.
 *   Only the IdP can put an ID token in a token response, so no one else can make us refetch.
 * - Discovery must name exactly the configured issuer (openid-client checks it); until it
 *   does, the gateway is not ready, and a call that needs the metadata waits for discovery in
 *   flight (at most `oidc.timeout`), then answers 503 idp_unavailable.
 * - Every IdP call has the configured timeout.
 * - Every failure leaves this class as an IdpError (idp-error.ts), classified once by status
 *   and OAuth error code, never by message text. Callers never see the library's errors.
 * - With `oidc.dpop`, the authorization request names the key (`dpop_jkt`) and every grant
 *   carries a DPoP proof. openid-client itself retries a grant once when the IdP answers
 *   `use_dpop_nonce` (the handle caches the nonce per Configuration, hence one handle each).
 */
import * as client from 'openid-client';
import type { Logger } from 'pino';
import { createRemoteJWKSet, errors as joseErrors, jwtVerify } from 'jose';
import type { GatewayConfig } from '../config/load.ts';
import { DpopKey } from './dpop.ts';
import { classifyIdpFailure, IdpError, InvalidIdTokenSignature } from './idp-error.ts';
import { importPrivateKey, parsePrivateKey } from './keys.ts';
import { tracedFetch, tracingOn } from '../telemetry/tracing.ts';

export const ID_TOKEN_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];

export type TokenResponse = client.TokenEndpointResponse & client.TokenEndpointResponseHelpers;

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

// JOSE errors that mean "no answer" (timeout, non-200, unparsable body) rather than "a bad token".
const JWKS_UNAVAILABLE = new Set(['ERR_JWKS_TIMEOUT', 'ERR_JOSE_GENERIC']);

/** The secrets of one authorization request (RFC 7636 PKCE, OIDC state and nonce). */
export interface LoginChecks {
  state: string;
  nonce: string;
  codeVerifier: string;
  codeChallenge: string;
}

/** Fresh random state, nonce and PKCE verifier (with its S256 challenge) for one login. */
export async function newLoginChecks(): Promise<LoginChecks> {
  const codeVerifier = client.randomPKCECodeVerifier();
  return {
    state: client.randomState(),
    nonce: client.randomNonce(),
    codeVerifier,
    codeChallenge: await client.calculatePKCECodeChallenge(codeVerifier),
  };
}

/** The grants and revocation the token layer uses (refresh/): what a fake IdP must offer in unit tests. */
export type TokenGrants = Pick<
  IdpClient,
  'refresh' | 'tokenExchange' | 'supportsTokenExchange' | 'clientCredentials' | 'canRevoke' | 'revoke'
>;

export interface AuthorizationRequest {
  state: string;
  nonce: string;
  codeChallenge: string;
  /** Validated per-request login parameters (prompt, max_age, ...): they override `authParams`. */
  loginParams?: Readonly<Record<string, string>>;
}

export class IdpClient {
  private configuration: client.Configuration | undefined;
  private keySet: ReturnType<typeof createRemoteJWKSet> | undefined;
  private loading: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly config: GatewayConfig,
    private readonly log: Logger,
  ) {}

  get ready(): boolean {
    return this.configuration !== undefined;
  }

  get redirectUri(): string {
    return `${this.config.publicUrl}/auth/callback`;
  }

  /** Discovers the IdP, retrying with capped exponential backoff until it answers. */
  start(): Promise<void> {
    this.loading ??= (async () => {
      for (let attempt = 0; !this.stopped; attempt += 1) {
        try {
          const configuration = await this.discover();
          const jwksUri = configuration.serverMetadata().jwks_uri;
          this.keySet = jwksUri
            ? createRemoteJWKSet(new URL(jwksUri), {
                timeoutDuration: this.config.oidc.timeoutMs,
                cooldownDuration: 0,
                cacheMaxAge: 5 * 60_000,
              })
            : undefined;
          this.configuration = configuration;
          this.log.info({ issuer: this.config.oidc.issuer }, 'identity provider metadata loaded');
          return;
        } catch (err) {
          const delay = Math.min(500 * 2 ** attempt, 30_000);
          const detail = err instanceof Error ? err.message : String(err);
          this.log.warn({ issuer: this.config.oidc.issuer, err: detail, retryInMs: delay }, 'identity provider discovery failed');
          await new Promise((resolve) => setTimeout(resolve, delay).unref());
        }
      }
    })();
    return this.loading;
  }

  stop(): void {
    this.stopped = true;
  }

  private privateKey: client.PrivateKey | undefined;
  /** The DPoP key, loaded with the first discovery; undefined when DPoP is off. */
  dpop: DpopKey | undefined;
  /** openid-client options that make a grant DPoP-bound (none when DPoP is off). */
  private dpopOptions(configuration: client.Configuration): { DPoP?: client.DPoPHandle } {
    return this.dpop ? { DPoP: this.dpop.handle(configuration) } : {};
  }

  private clientAuth(metadata?: client.ServerMetadata): client.ClientAuth {
    const { oidc } = this.config;
    if (oidc.clientAuth === 'private_key_jwt') return client.PrivateKeyJwt(this.privateKey as client.PrivateKey);
    if (oidc.clientAuth === 'client_secret_post') return client.ClientSecretPost(oidc.clientSecret);
    if (oidc.clientAuth === 'auto' && metadata) {
      const methods = metadata.token_endpoint_auth_methods_supported;
      if (Array.isArray(methods) && !methods.includes('client_secret_basic') && methods.includes('client_secret_post')) {
        return client.ClientSecretPost(oidc.clientSecret);
      }
    }
    return client.ClientSecretBasic(oidc.clientSecret);
  }

  private async discover(): Promise<client.Configuration> {
    const { oidc } = this.config;
    const insecure = new URL(oidc.issuer).protocol === 'http:';
    const execute = insecure ? [client.allowInsecureRequests] : [];
    // Seconds, as openid-client wants them; fractions are fine (it multiplies by 1000 again).
    const timeout = oidc.timeoutMs / 1000;
    if (oidc.clientAuth === 'private_key_jwt') this.privateKey ??= await privateKeyFrom(oidc.privateKey as string);
    if (oidc.dpopKey) this.dpop ??= await DpopKey.load(oidc.dpopKey);
    const clientMetadata = { id_token_signed_response_alg: ID_TOKEN_ALGORITHMS as unknown as string };
    const discovered = await client.discovery(new URL(oidc.issuer), oidc.clientId, clientMetadata, this.clientAuth(), { execute, timeout });
    const metadata = discovered.serverMetadata();
    const configuration = new client.Configuration(metadata, oidc.clientId, clientMetadata, this.clientAuth(metadata));
    if (insecure) client.allowInsecureRequests(configuration);
    configuration.timeout = timeout;
    // With tracing on, every IdP call is a client span that carries `traceparent` to the IdP.
    if (tracingOn()) configuration[client.customFetch] = tracedFetch as client.CustomFetch;
    return configuration;
  }

  /** The loaded configuration; an `unavailable` IdpError while discovery has not succeeded. */
  private get loaded(): client.Configuration {
    if (!this.configuration) throw new IdpError('unavailable', 'identity provider metadata not loaded yet');
    return this.configuration;
  }

  /**
   * The configuration, waiting for discovery in flight for at most `oidc.timeout`: a login
   * sent in the first milliseconds after start would otherwise fail although the metadata is
   * about to arrive. Without discovery running (never started, or stopped) it fails at once.
   */
  private async configured(): Promise<client.Configuration> {
    if (this.configuration) return this.configuration;
    if (this.loading && !this.stopped) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.config.oidc.timeoutMs);
      });
      await Promise.race([this.loading, timeout]).finally(() => clearTimeout(timer));
    }
    return this.loaded;
  }

  /** Runs one call to the IdP; whatever fails leaves as an IdpError. */
  private async call<T>(operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (err) {
      throw classifyIdpFailure(err);
    }
  }

  get metadata(): client.ServerMetadata {
    return this.loaded.serverMetadata();
  }

  async authorizationUrl(request: AuthorizationRequest): Promise<URL> {
    return this.call(() => this.buildAuthorizationUrl(request));
  }

  private async buildAuthorizationUrl(request: AuthorizationRequest): Promise<URL> {
    const { oidc } = this.config;
    const parameters: Record<string, string> = {
      ...oidc.authParams,
      ...request.loginParams,
      redirect_uri: this.redirectUri,
      scope: oidc.scopes.join(' '),
      response_type: 'code',
      code_challenge: request.codeChallenge,
      code_challenge_method: 'S256',
      state: request.state,
      nonce: request.nonce,
    };
    const configuration = await this.configured();
    if (this.dpop) parameters.dpop_jkt = this.dpop.thumbprint;
    if (oidc.par || configuration.serverMetadata().require_pushed_authorization_requests) {
      return client.buildAuthorizationUrlWithPAR(configuration, parameters, this.dpopOptions(configuration));
    }
    return client.buildAuthorizationUrl(configuration, parameters);
  }

  /** Validates the authorization response (state, RFC 9207 iss) and redeems the code. */
  async exchangeCode(callbackUrl: URL, checks: { state: string; nonce: string; codeVerifier: string }): Promise<TokenResponse> {
    return this.call(async () => {
      const configuration = await this.configured();
      const checkOptions = {
        expectedState: checks.state,
        expectedNonce: checks.nonce,
        pkceCodeVerifier: checks.codeVerifier,
        idTokenExpected: true,
      };
      const response = await client.authorizationCodeGrant(
        configuration,
        callbackUrl,
        checkOptions,
        undefined,
        this.dpopOptions(configuration),
      );
      return this.verifyIdTokenSignature(response);
    });
  }

  /** `parameters` narrow the new access token (RFC 8707 `resource`, `scope`) for a route token. */
  async refresh(refreshToken: string, parameters?: Record<string, string>): Promise<TokenResponse> {
    const response = await this.call(async () => {
      const configuration = await this.configured();
      return client.refreshTokenGrant(configuration, refreshToken, parameters, this.dpopOptions(configuration));
    });
    try {
      return await this.verifyIdTokenSignature(response);
    } catch (err) {
      if (err instanceof InvalidIdTokenSignature) throw classifyIdpFailure(err);
      // The IdP has answered, so it has already rotated the refresh token; only its keys could
      // not be fetched to check the new ID token. Discarding the whole answer would lose the
      // rotated refresh token, and with reuse detection the next refresh would end the grant.
      // Keep the tokens, drop the ID token nobody could verify: the session keeps the identity
      // verified at login.
      this.log.warn(
        { event: 'refresh_id_token_unverified', reason: (err as { code?: string }).code ?? 'keys unavailable' },
        'refreshed ID token dropped: the identity provider keys could not be fetched',
      );
      delete (response as { id_token?: string }).id_token;
      return response;
    }
  }

  /** Whether discovery lists the RFC 8693 token-exchange grant. */
  get supportsTokenExchange(): boolean {
    const types = this.configuration?.serverMetadata().grant_types_supported;
    return Array.isArray(types) && types.includes(TOKEN_EXCHANGE);
  }

  /** RFC 8693: a token for another audience or narrower scopes, in exchange for `subjectToken`. */
  async tokenExchange(subjectToken: string, parameters: Record<string, string>): Promise<TokenResponse> {
    return this.call(async () => {
      const configuration = await this.configured();
      const body = { ...parameters, subject_token: subjectToken, subject_token_type: ACCESS_TOKEN_TYPE };
      return this.verifyIdTokenSignature(
        await client.genericGrantRequest(configuration, TOKEN_EXCHANGE, body, this.dpopOptions(configuration)),
      );
    });
  }

  /** RFC 6749 4.4: a token for the gateway itself (routes with `token: client`). */
  async clientCredentials(parameters: Record<string, string>): Promise<TokenResponse> {
    return this.call(async () => {
      const configuration = await this.configured();
      return this.verifyIdTokenSignature(await client.clientCredentialsGrant(configuration, parameters, this.dpopOptions(configuration)));
    });
  }

  /**
   * OIDC Core 3.1.3.7 item 6: the ID token is signed by the IdP with an allowed asymmetric
   * algorithm. A `kid` missing from the cached key set makes jose refetch it once (no cooldown:
   * the token came from the IdP itself), so a rotated key is accepted at its first use.
   */
  private async verifyIdTokenSignature(response: TokenResponse): Promise<TokenResponse> {
    if (response.id_token === undefined) return response;
    if (!this.keySet) throw new InvalidIdTokenSignature('the identity provider publishes no jwks_uri');
    try {
      await jwtVerify(response.id_token, this.keySet, { algorithms: ID_TOKEN_ALGORITHMS });
    } catch (err) {
      if (!(err instanceof joseErrors.JOSEError) || JWKS_UNAVAILABLE.has(err.code)) throw err;
      throw new InvalidIdTokenSignature(err.code, { cause: err });
    }
    return response;
  }

  async userinfo(accessToken: string, sub: string): Promise<Record<string, unknown>> {
    return this.call(async () => {
      const configuration = await this.configured();
      return (await client.fetchUserInfo(configuration, accessToken, sub, this.dpopOptions(configuration))) as Record<string, unknown>;
    });
  }

  get canRevoke(): boolean {
    return typeof this.configuration?.serverMetadata().revocation_endpoint === 'string';
  }

  revoke(token: string, hint: 'refresh_token' | 'access_token'): Promise<void> {
    return this.call(async () => client.tokenRevocation(await this.configured(), token, { token_type_hint: hint }));
  }

  /** The RP-initiated logout URL, or undefined when the IdP has no end-session endpoint. */
  endSessionUrl(idTokenHint: string | undefined, postLogoutRedirectUri: string): string | undefined {
    const configuration = this.configuration;
    if (!configuration?.serverMetadata().end_session_endpoint) return undefined;
    const parameters: Record<string, string> = { client_id: this.config.oidc.clientId, post_logout_redirect_uri: postLogoutRedirectUri };
    if (idTokenHint) parameters.id_token_hint = idTokenHint;
    return client.buildEndSessionUrl(configuration, parameters).href;
  }
}

/** The private_key_jwt signing key (PEM or JWK; RSA keys sign RS256 unless the JWK says otherwise). */
async function privateKeyFrom(text: string): Promise<client.PrivateKey> {
  const info = parsePrivateKey(text, 'RS256');
  return { key: await importPrivateKey(info), kid: info.kid };
}
