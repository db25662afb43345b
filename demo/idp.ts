import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import type { Configuration, Provider } from 'oidc-provider';
import { createFront } from './idp-front.ts';
import { createInteractionHandler, OIDC_SCOPES, RESOURCE_SCOPES } from './idp-interactions.ts';
import { createIdpStore } from './idp-store.ts';
import { registerTokenExchange, TOKEN_EXCHANGE, type ResourceServerInfo } from './idp-token-exchange.ts';

export interface IdpOptions {
  clientId: string;
  clientSecret: string;
  redirectUris: string[];
  postLogoutRedirectUris?: string[];
  backchannelLogoutUri?: string;
  clientAuthMethod?: 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt';
  /** Public keys of the client, for private_key_jwt. */
  clientJwks?: { keys: JWK[] };
  /** RFC 9449 DPoP: accept proofs and issue sender-constrained (`token_type: DPoP`) tokens. */
  dpop?: boolean;
  /** With `dpop`: demand a server nonce in every proof (RFC 9449 section 8). */
  dpopRequireNonce?: boolean;
  /** Require pushed authorization requests (RFC 9126), advertised in discovery. */
  requirePar?: boolean;
  port?: number;
  host?: '127.0.0.1' | 'localhost';
  /** Audience (and the only accepted resource indicator) of the JWT access tokens. */
  audience?: string;
  /**
   * More resource servers besides `audience` (JWT access tokens for each): every login's grant
   * covers them too, so a refresh with `resource` set to one of them gets a token for it.
   */
  extraResources?: Array<{ audience: string; scope: string }>;
  /** Offer the RFC 8693 token-exchange grant (advertised in discovery, allowed for the client). */
  tokenExchange?: boolean;
  accessTokenTtl?: number;
  idTokenTtl?: number;
  refreshTokenTtl?: number;
  sessionTtl?: number;
  demoUser?: string;
  demoPassword?: string;
}

export type TokenFault = 'none' | 'http503' | 'reset' | 'bare400' | 'invalid_grant' | 'slow';

export interface IdpCounters {
  refreshGrants: number;
  authorizationCodeGrants: number;
  clientCredentialsGrants: number;
  tokenExchanges: number;
  revocations: number;
  discovery: number;
}

export interface IdpFaults {
  token: TokenFault;
  /** Delay before the token endpoint answers; applies whenever > 0, not only for 'slow'. */
  tokenDelayMs: number;
  revocation: 'none' | 'http503' | 'reset';
  discovery: 'none' | 'http503';
}

export interface Idp {
  issuer: string;
  port: number;
  provider: Provider;
  privateJwks: { keys: JWK[] };
  /** Requests are counted when they arrive, before any fault is applied. */
  counters: IdpCounters;
  tokenRequests: Array<{ grantType: string; params: Record<string, string> }>;
  faults: IdpFaults;
  /** Back-channel logout deliveries attempted (successful or not). */
  logoutTokensSent: number;
  close(): Promise<void>;
}

const ROUTES = {
  token: '/token',
  revocation: '/token/revocation',
  introspection: '/token/introspection',
  end_session: '/session/end',
  userinfo: '/me',
  jwks: '/jwks',
};
const DISCOVERY_PATH = '/.well-known/openid-configuration';

// oidc-provider prints an "unsupported runtime" warning at import time on Node < 22; the project
// targets Node 20 and only uses it as a test/demo IdP, so that one line is filtered out.
let providerModule: Promise<typeof import('oidc-provider')> | undefined;
function loadProvider(): Promise<typeof import('oidc-provider')> {
  providerModule ??= (async () => {
    const warn = console.warn;
    console.warn = (...args: unknown[]) => {
      if (typeof args[0] === 'string' && args[0].includes('Unsupported runtime')) return;
      warn(...args);
    };
    try {
      return await import('oidc-provider');
    } finally {
      console.warn = warn;
    }
  })();
  return providerModule;
}

async function signingKey(alg: 'RS256' | 'ES256'): Promise<JWK> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, alg, use: 'sig', kid: `${alg.toLowerCase()}-${randomBytes(6).toString('hex')}` };
}

function titleCase(login: string): string {
  return login.charAt(0).toUpperCase() + login.slice(1);
}

export async function startIdp(opts: IdpOptions): Promise<Idp> {
  const { default: ProviderClass, errors } = await loadProvider();
  const audience = opts.audience ?? 'http://api.local';
  const accessTokenTtl = opts.accessTokenTtl ?? 300;
  const extraResources = opts.extraResources ?? [];
  const resourceServer = (indicator: string): ResourceServerInfo | undefined => {
    const extra = extraResources.find((r) => r.audience === indicator);
    if (extra) return { scope: extra.scope, accessTokenFormat: 'jwt', audience: extra.audience, accessTokenTTL: accessTokenTtl };
    if (indicator !== audience) return undefined;
    return { scope: RESOURCE_SCOPES.join(' '), accessTokenFormat: 'jwt', audience, accessTokenTTL: accessTokenTtl };
  };
  const privateJwks = { keys: [await signingKey('RS256'), await signingKey('ES256')] };
  const store = createIdpStore();

  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const issuer = `http://${opts.host === 'localhost' ? 'localhost' : '127.0.0.1'}:${port}`;

  const idp: Idp = {
    issuer,
    port,
    privateJwks,
    counters: { refreshGrants: 0, authorizationCodeGrants: 0, clientCredentialsGrants: 0, tokenExchanges: 0, revocations: 0, discovery: 0 },
    tokenRequests: [],
    faults: { token: 'none', tokenDelayMs: 0, revocation: 'none', discovery: 'none' },
    logoutTokensSent: 0,
    // Both are assigned below, once the provider exists and the server is wired.
    provider: undefined as unknown as Provider,
    close: async () => undefined,
  };

  const client: Record<string, unknown> = {
    client_id: opts.clientId,
    client_secret: opts.clientSecret,
    redirect_uris: opts.redirectUris,
    post_logout_redirect_uris: opts.postLogoutRedirectUris ?? [],
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials', ...(opts.tokenExchange ? [TOKEN_EXCHANGE] : [])],
    response_types: ['code'],
    token_endpoint_auth_method: opts.clientAuthMethod ?? 'client_secret_basic',
  };
  if (opts.clientJwks) client.jwks = opts.clientJwks;
  if (opts.backchannelLogoutUri) {
    client.backchannel_logout_uri = opts.backchannelLogoutUri;
    client.backchannel_logout_session_required = true;
  }

  const configuration: Configuration = {
    adapter: store.adapterFactory,
    clients: [client],
    jwks: privateJwks,
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    routes: ROUTES,
    scopes: [...OIDC_SCOPES],
    claims: {
      openid: ['sub'],
      profile: ['name'],
      email: ['email', 'email_verified'],
      sid: null,
      acr: null,
      auth_time: null,
      iss: null,
    },
    // Profile and email claims go into the ID token too: a BFF typically builds its user view
    // from the ID token, and the JWT access tokens here are not accepted at userinfo.
    conformIdTokenClaims: false,
    findAccount: async (_ctx: unknown, sub: string) => ({
      accountId: sub,
      claims: async () => ({ sub, name: titleCase(sub), email: `${sub}@example.com`, email_verified: true }),
    }),
    pkce: { required: () => true },
    clientBasedCORS: () => true,
    interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    issueRefreshToken: async (_ctx: unknown, c: { grantTypeAllowed(type: string): boolean }) =>
      c.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: true,
    renderError: async (ctx: { type: string; body: string }, out: Record<string, string>) => {
      ctx.type = 'text';
      ctx.body = Object.entries(out).map(([k, v]) => `${k}: ${v}`).join('\n') + '\n';
    },
    ttl: {
      AccessToken: accessTokenTtl,
      ClientCredentials: accessTokenTtl,
      AuthorizationCode: 60,
      IdToken: opts.idTokenTtl ?? 3600,
      RefreshToken: opts.refreshTokenTtl ?? 24 * 3600,
      Session: opts.sessionTtl ?? 24 * 3600,
      Grant: Math.max(opts.refreshTokenTtl ?? 24 * 3600, opts.sessionTtl ?? 24 * 3600),
      Interaction: 3600,
    },
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: true, allowedPolicy: async (_c: unknown, cl: { clientId: string }, t: { clientId: string }) => t.clientId === cl.clientId },
      introspection: { enabled: true, allowedPolicy: async () => true },
      userinfo: { enabled: true },
      clientCredentials: { enabled: true },
      dPoP: { enabled: opts.dpop === true, ...(opts.dpopRequireNonce ? { nonceSecret: randomBytes(32), requireNonce: () => true } : {}) },
      pushedAuthorizationRequests: { enabled: true, requirePushedAuthorizationRequests: opts.requirePar ?? false },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        // The confirmation prompt is skipped: the hidden `logout` field signs out of the whole
        // IdP session, which is what triggers back-channel logout to every client in it.
        logoutSource: async (ctx: { type: string; body: string }, form: string) => {
          ctx.type = 'html';
          ctx.body = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Signing out</title></head><body>
${form}<input type="hidden" name="logout" value="yes" form="op.logoutForm">
<noscript><button type="submit" form="op.logoutForm">Sign out</button></noscript>
<script>document.getElementById('op.logoutForm').submit()</script></body></html>`;
        },
        postLogoutSuccessSource: async (ctx: { type: string; body: string }) => {
          ctx.type = 'html';
          ctx.body = '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Signed out</title></head><body><h1 id="signed-out">Signed out</h1></body></html>';
        },
      },
      resourceIndicators: {
        enabled: true,
        // An authorization request names every resource server, so the code and the refresh
        // token carry all of them; a token request without `resource` gets the main audience.
        defaultResource: async (ctx: { oidc: { route: string } }, _client: unknown, oneOf?: string[]) => {
          if (oneOf) return oneOf.includes(audience) ? audience : oneOf[0];
          return extraResources.length && ctx.oidc.route !== 'token' ? [audience, ...extraResources.map((r) => r.audience)] : audience;
        },
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx: unknown, resourceIndicator: string) => {
          const info = resourceServer(resourceIndicator);
          if (!info) throw new errors.InvalidTarget();
          return info;
        },
      },
    },
    // Back-channel logout targets loopback URLs in tests and the demo; oidc-provider's default
    // fetch refuses special-use addresses (SSRF protection) through the dispatcher it injects.
    fetch: (url: string | URL, init: RequestInit & { dispatcher?: unknown; body?: unknown }) => {
      if (init.body instanceof URLSearchParams && init.body.has('logout_token')) idp.logoutTokensSent += 1;
      const { dispatcher: _ignored, ...rest } = init;
      return fetch(url, rest);
    },
  };

  const provider = new ProviderClass(issuer, configuration);
  provider.proxy = false;
  if (opts.tokenExchange) registerTokenExchange(provider, errors, { issuer, privateJwks, resourceServer });
  idp.provider = provider;
  const providerCallback = provider.callback();
  const interaction = createInteractionHandler(provider, {
    demoUser: opts.demoUser ?? 'alice',
    demoPassword: opts.demoPassword ?? 'demo',
    audience,
    extraResources,
  });

  const front = createFront({ idp, issuer, routes: ROUTES, discoveryPath: DISCOVERY_PATH, providerCallback, interaction });
  server.on('request', front.handle);

  idp.close = async () => {
    front.dispose();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
    store.clear();
  };

  return idp;
}
