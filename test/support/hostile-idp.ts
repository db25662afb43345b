/**
 * A hostile (or merely nosy) front for the real test IdP. The gateway is configured with the
 * front's URL as its issuer; every request is relayed to the real oidc-provider, so logins,
 * codes, PKCE and refresh are genuine. The front can then lie in the token response the way a
 * compromised network path or a malicious IdP would, which is the only way to prove that the
 * gateway really verifies ID tokens rather than trusting whatever the token endpoint returns.
 *
 * What it rewrites, always: the discovery document and absolute redirects (so the browser and
 * the gateway keep talking to the front), the RFC 9207 `iss` parameter of the authorization
 * response, and the `iss` claim of ID tokens, re-signed with the IdP's real key — so with
 * `corruption: 'none'` a login through the front succeeds, which is the control for the
 * corrupted modes. Every token response as sent to the gateway is recorded (`tokenResponses`),
 * which gives tests the real access, refresh and ID tokens of a session.
 *
 * Extension points: add a mode to `IdTokenCorruption` and a case in `signIdToken`, use
 * `claimOverrides`/`removeClaims` for claim-level lies (aud, nonce, exp, a missing sub...),
 * `rewriteTokenResponse` for anything else in the token response, and `rewriteDiscovery` to lie
 * in the metadata. `rotateKey()` performs a genuine signing-key rotation as seen by the gateway:
 * the new public key is published in the JWKS the front serves and from then on every ID token
 * is signed with it. `requests` records every request the front relayed (method and path), so a
 * test can prove that something (e.g. a token request) never happened.
 */
import { generateKeyPairSync, createHmac, randomBytes, type KeyObject } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, decodeJwt, exportJWK, importJWK, type JWK, type JWTPayload } from 'jose';
import type { Idp } from '../../fixtures/idp/idp.ts';
import { startWorld, type World, type WorldOptions } from './world.ts';

/**
 * - `none`: a faithful copy, re-signed with the IdP's own key (the control);
 * - `foreign-key`: signed with a key that is not in the JWKS, under the real key's `kid`;
 * - `alg-none`: an unsecured JWT (`alg: none`, empty signature);
 * - `hs256-client-secret`: HMAC-signed with the client secret (the classic key-confusion attack);
 * - `flipped-signature`: the faithful copy with one byte of its RS256 signature flipped;
 * - `unknown-kid`: signed with a key that is not in the JWKS, under a `kid` nobody published.
 */
export type IdTokenCorruption = 'none' | 'foreign-key' | 'alg-none' | 'hs256-client-secret' | 'flipped-signature' | 'unknown-kid';

export type TokenResponseBody = Record<string, unknown>;

export interface HostileIdpOptions {
  idp: Idp;
  /** Needed for `hs256-client-secret`. */
  clientSecret?: string;
  /** In force from the start, so the gateway's very first discovery already sees it. */
  rewriteDiscovery?: (doc: Record<string, unknown>) => Record<string, unknown>;
}

export interface HostileIdp {
  /** The issuer the gateway must be configured with. */
  issuer: string;
  corruption: IdTokenCorruption;
  /** Merged into the ID token's claims before signing (applies in every mode). */
  claimOverrides: JWTPayload | undefined;
  /** Claims deleted from the ID token before signing (applies in every mode). */
  removeClaims: string[] | undefined;
  /** Last transformation of the discovery document (already pointing at the front). */
  rewriteDiscovery: ((doc: Record<string, unknown>) => Record<string, unknown>) | undefined;
  /** Every request relayed, in arrival order. */
  requests: Array<{ method: string; path: string }>;
  /** JWKS documents served (each one is a key-set fetch by someone: the gateway or the upstream). */
  jwksFetches: number;
  /** When false, the JWKS endpoint answers 503 (the IdP's keys cannot be fetched). */
  jwksAvailable: boolean;
  /** While set, discovery requests wait for it before they are relayed (an IdP slow to answer). */
  holdDiscovery: Promise<void> | undefined;
  /**
   * A broken IdP that honours an authorization code twice: a code seen before gets the first
   * answer again (200) instead of invalid_grant. Proves the gateway's own single-use rules.
   */
  honourReusedCodes: boolean;
  /**
   * Rotates the signing key: a new RSA key is generated, published in the JWKS the front serves
   * (next to the IdP's real keys), and signs every later ID token. Resolves with its `kid`.
   */
  rotateKey(): Promise<string>;
  /** Last transformation of each token response body before it is sent. */
  rewriteTokenResponse: ((body: TokenResponseBody) => TokenResponseBody | Promise<TokenResponseBody>) | undefined;
  /** Token endpoint responses exactly as the gateway received them (parsed JSON). */
  tokenResponses: TokenResponseBody[];
  close(): Promise<void>;
}

const b64url = (value: string | Buffer) => Buffer.from(value).toString('base64url');

function readAll(stream: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

export async function startHostileIdp(options: HostileIdpOptions): Promise<HostileIdp> {
  const { idp } = options;
  const real = new URL(idp.issuer);
  const rsaJwk = idp.privateJwks.keys.find((key) => key.kty === 'RSA') as JWK;
  const realKey = await importJWK(rsaJwk, 'RS256');
  const foreign = generateKeyPairSync('rsa', { modulusLength: 2048 });
  let signing: { key: CryptoKey | Uint8Array | KeyObject; kid: string } = { key: realKey, kid: rsaJwk.kid as string };
  const published: JWK[] = [];

  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const front: HostileIdp = {
    issuer,
    corruption: 'none',
    claimOverrides: undefined,
    rewriteTokenResponse: undefined,
    removeClaims: undefined,
    rewriteDiscovery: options.rewriteDiscovery,
    requests: [],
    jwksFetches: 0,
    jwksAvailable: true,
    holdDiscovery: undefined,
    honourReusedCodes: false,
    rotateKey: async () => {
      const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const kid = `rotated-${randomBytes(6).toString('hex')}`;
      published.push({ ...(await exportJWK(pair.publicKey)), kid, alg: 'RS256', use: 'sig' });
      signing = { key: pair.privateKey, kid };
      return kid;
    },
    tokenResponses: [],
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };

  const toFront = (text: string) => text.split(idp.issuer).join(issuer);

  async function signIdToken(original: string): Promise<string> {
    const claims: JWTPayload = { ...decodeJwt(original), iss: issuer, ...front.claimOverrides };
    for (const name of front.removeClaims ?? []) delete claims[name];
    switch (front.corruption) {
      case 'none':
        return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: signing.kid, typ: 'JWT' }).sign(signing.key);
      case 'flipped-signature': {
        const jwt = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: signing.kid, typ: 'JWT' }).sign(signing.key);
        const [header, payload, signature] = jwt.split('.') as [string, string, string];
        const bytes = Buffer.from(signature, 'base64url');
        bytes[bytes.length >> 1] = (bytes[bytes.length >> 1] as number) ^ 0x01;
        return `${header}.${payload}.${bytes.toString('base64url')}`;
      }
      case 'unknown-kid':
        return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'never-published', typ: 'JWT' }).sign(foreign.privateKey);
      case 'foreign-key':
        return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: rsaJwk.kid as string, typ: 'JWT' }).sign(foreign.privateKey);
      case 'alg-none':
        return `${b64url(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}.`;
      case 'hs256-client-secret': {
        const input = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}`;
        const mac = createHmac('sha256', options.clientSecret ?? '')
          .update(input)
          .digest('base64url');
        return `${input}.${mac}`;
      }
    }
  }

  async function rewriteTokenBody(raw: Buffer): Promise<Buffer> {
    let body: TokenResponseBody;
    try {
      body = JSON.parse(raw.toString('utf8')) as TokenResponseBody;
    } catch {
      return raw;
    }
    if (typeof body.id_token === 'string') body = { ...body, id_token: await signIdToken(body.id_token) };
    if (front.rewriteTokenResponse) body = await front.rewriteTokenResponse(body);
    front.tokenResponses.push(body);
    return Buffer.from(JSON.stringify(body));
  }

  function rewriteDiscoveryBody(raw: Buffer): Buffer {
    const text = toFront(raw.toString('utf8'));
    if (!front.rewriteDiscovery) return Buffer.from(text);
    return Buffer.from(JSON.stringify(front.rewriteDiscovery(JSON.parse(text) as Record<string, unknown>)));
  }

  function publishKeys(raw: Buffer): Buffer {
    front.jwksFetches += 1;
    if (published.length === 0) return raw;
    const jwks = JSON.parse(raw.toString('utf8')) as { keys: JWK[] };
    return Buffer.from(JSON.stringify({ keys: [...jwks.keys, ...published] }));
  }

  function rewriteLocation(location: string): string {
    let url: URL;
    try {
      url = new URL(location, idp.issuer);
    } catch {
      return location;
    }
    if (url.searchParams.get('iss') === idp.issuer) url.searchParams.set('iss', issuer);
    if (url.origin === real.origin) return toFront(url.href);
    return url.href;
  }

  const answeredCodes = new Map<string, Buffer>();

  async function relay(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', issuer).pathname;
    front.requests.push({ method: req.method ?? 'GET', path });
    if (path === '/.well-known/openid-configuration' && front.holdDiscovery) await front.holdDiscovery;
    if (path === '/jwks' && !front.jwksAvailable) {
      res.writeHead(503, { 'content-type': 'text/plain' }).end('unavailable');
      return;
    }
    const body = await readAll(req);
    const code = path === '/token' ? new URLSearchParams(body.toString('utf8')).get('code') : null;
    const answered = code ? answeredCodes.get(code) : undefined;
    if (answered && front.honourReusedCodes) {
      res
        .writeHead(200, { 'content-type': 'application/json', 'content-length': answered.length, 'cache-control': 'no-store' })
        .end(answered);
      return;
    }
    const headers = { ...req.headers, host: real.host, 'accept-encoding': 'identity' };
    delete headers['content-length'];
    if (body.length > 0) headers['content-length'] = String(body.length);
    const upstream = await new Promise<IncomingMessage>((resolve, reject) => {
      const out = httpRequest({ host: real.hostname, port: real.port, method: req.method, path: req.url, headers }, resolve);
      out.once('error', reject);
      out.end(body);
    });
    const responseHeaders = { ...upstream.headers };
    if (typeof responseHeaders.location === 'string') responseHeaders.location = rewriteLocation(responseHeaders.location);

    const isDiscovery = path === '/.well-known/openid-configuration';
    const isToken = path === '/token' && req.method === 'POST';
    const isJwks = path === '/jwks';
    if (!isDiscovery && !isToken && !isJwks) {
      res.writeHead(upstream.statusCode ?? 502, responseHeaders);
      upstream.pipe(res);
      return;
    }
    const raw = await readAll(upstream);
    const rewritten = isDiscovery ? rewriteDiscoveryBody(raw) : isJwks ? publishKeys(raw) : await rewriteTokenBody(raw);
    if (code && upstream.statusCode === 200) answeredCodes.set(code, rewritten);
    delete responseHeaders['transfer-encoding'];
    delete responseHeaders.etag;
    responseHeaders['content-length'] = String(rewritten.length);
    res.writeHead(upstream.statusCode ?? 502, responseHeaders);
    res.end(rewritten);
  }

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    relay(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' }).end(`hostile idp relay failed: ${String(err)}\n`);
      else res.destroy();
    });
  });

  return front;
}

/**
 * A world whose gateways reach the IdP only through a hostile front. Closing the world closes
 * the front too. `frontOptions` are passed to `startHostileIdp` (e.g. `clientSecret`).
 */
export async function startWorldBehindFront(
  options: WorldOptions = {},
  frontOptions: Omit<HostileIdpOptions, 'idp'> = {},
): Promise<{ world: World; front: HostileIdp }> {
  let front: HostileIdp | undefined;
  const world = await startWorld({
    ...options,
    issuerFor: async (idp) => {
      front = await startHostileIdp({ idp, ...frontOptions });
      return front.issuer;
    },
  });
  const closeWorld = world.close;
  world.close = async () => {
    await closeWorld();
    await front?.close();
  };
  return { world, front: front as HostileIdp };
}
