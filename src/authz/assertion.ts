/**
 * Identity assertions (docs/authorization.md#identity-assertion): a short-lived JWT, signed by
 * the gateway's own key, naming the user to one upstream — `iss` (publicUrl unless configured),
 * `sub`, `aud` (the route's `audience`, else its upstream origin), `iat`, `exp`, and the
 * selected claims. The upstream verifies it with any JWT library against the published JWKS.
 *
 * Signing costs far more than the rest of a proxied request, and a user's calls come in
 * bursts: an assertion is reused for the same session and route while more than half of its
 * lifetime is left, so an upstream always gets at least ttl/2 to check it.
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { exportJWK, SignJWT, type JWK } from 'jose';
import { parsePrivateKey } from '../util/private-key.ts';
import { claimValue, type Claims } from './claims.ts';

export interface AssertionSettings {
  keys: readonly string[];
  ttlMs: number;
  issuer: string;
  /** Claims every assertion carries besides `sub`, unless a route names its own. */
  claims: readonly string[];
}

interface SigningKey {
  privateKey: KeyObject;
  alg: string;
  kid: string;
  publicJwk: JWK;
}

/** Cached assertions at most; beyond that the oldest are dropped first. */
const CACHE_LIMIT = 10_000;

/** RFC 7638 thumbprint-style id when the key has none: stable across restarts and instances. */
function keyId(publicJwk: JWK): string {
  const members =
    publicJwk.kty === 'EC'
      ? { crv: publicJwk.crv, kty: publicJwk.kty, x: publicJwk.x, y: publicJwk.y }
      : publicJwk.kty === 'OKP'
        ? { crv: publicJwk.crv, kty: publicJwk.kty, x: publicJwk.x }
        : { e: publicJwk.e, kty: publicJwk.kty, n: publicJwk.n };
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

async function loadKey(text: string): Promise<SigningKey> {
  const { privateKey, alg, kid } = parsePrivateKey(text, 'RS256');
  const exported = await exportJWK(createPublicKey(privateKey));
  const id = kid ?? keyId(exported);
  return { privateKey, alg, kid: id, publicJwk: { ...exported, alg, use: 'sig', kid: id } };
}

export interface AssertionRequest {
  /** What the cache is keyed by: the session (its store handle) and the route. */
  session: string;
  route: string;
  audience: string;
  claims: Claims;
  /** Claims to copy besides `sub`; the settings' list when undefined. */
  select?: readonly string[];
}

export class AssertionSigner {
  private readonly cache = new Map<string, { jwt: string; reuseUntil: number }>();

  private constructor(
    private readonly settings: AssertionSettings,
    private readonly keys: readonly SigningKey[],
    private readonly now: () => number,
  ) {}

  static async create(settings: AssertionSettings, now: () => number = Date.now): Promise<AssertionSigner> {
    const keys = await Promise.all(settings.keys.map(loadKey));
    return new AssertionSigner(settings, keys, now);
  }

  /** The public keys, signing key first: what `/jwks` publishes. */
  jwks(): { keys: JWK[] } {
    return { keys: this.keys.map((key) => key.publicJwk) };
  }

  async assertion(request: AssertionRequest): Promise<string> {
    const now = this.now();
    const cacheKey = `${request.session}\n${request.route}`;
    const cached = this.cache.get(cacheKey);
    if (cached && cached.reuseUntil > now) return cached.jwt;

    const signing = this.keys[0] as SigningKey;
    const payload: Record<string, unknown> = {};
    for (const name of request.select ?? this.settings.claims) {
      const value = claimValue(request.claims, name);
      if (value !== undefined) payload[name] = value;
    }
    const issuedAt = Math.floor(now / 1000);
    const ttl = Math.floor(this.settings.ttlMs / 1000);
    const jwt = await new SignJWT(payload)
      .setProtectedHeader({ alg: signing.alg, kid: signing.kid, typ: 'JWT' })
      .setIssuer(this.settings.issuer)
      .setSubject(String(request.claims.sub))
      .setAudience(request.audience)
      .setIssuedAt(issuedAt)
      .setExpirationTime(issuedAt + ttl)
      .sign(signing.privateKey);

    this.cache.delete(cacheKey);
    if (this.cache.size >= CACHE_LIMIT) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(cacheKey, { jwt, reuseUntil: now + this.settings.ttlMs / 2 });
    return jwt;
  }
}
