/**
 * OIDC Back-Channel Logout 1.0, section 2.6: validating a `logout_token`.
 *   - signature by one of the IdP's keys (JWKS cached by jose; an unknown `kid` triggers at most
 *     one refetch per cooldown), asymmetric algorithm allowlist — never `none`, never HS*;
 *   - `iss` = the issuer, `aud` contains clientId, `iat` within MAX_AGE, `exp` when present;
 *   - `typ` header, when present, `logout+jwt` (or `JWT`, which some IdPs still send);
 *   - `events` has the back-channel-logout member, an object;
 *   - `sid` and/or `sub` present; no `nonce` (so an ID token can never pass as a logout token);
 *   - `jti` present and not seen before (the replay claim lives in the shared store, so every
 *     instance refuses a replay).
 */
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose';
import type { GatewayConfig } from '../config/load.ts';
import { hashed, type OneTimeClaims } from '../session/one-time.ts';
import { ID_TOKEN_ALGORITHMS, type IdpClient } from './client.ts';

const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout';
const MAX_AGE_SECONDS = 300;
const CLOCK_TOLERANCE_SECONDS = 30;
const ACCEPTED_TYP = new Set(['logout+jwt', 'application/logout+jwt', 'jwt']);

export class LogoutTokenError extends Error {}

export interface LogoutTarget {
  sid?: string;
  sub?: string;
}

export class LogoutTokenVerifier {
  private jwks: ReturnType<typeof createRemoteJWKSet> | undefined;

  constructor(
    private readonly config: GatewayConfig,
    private readonly idp: IdpClient,
    private readonly claims: OneTimeClaims,
  ) {}

  private keySet(): ReturnType<typeof createRemoteJWKSet> {
    const uri = this.idp.metadata.jwks_uri;
    if (!uri) throw new LogoutTokenError('the identity provider publishes no jwks_uri');
    this.jwks ??= createRemoteJWKSet(new URL(uri), { timeoutDuration: this.config.oidc.timeoutMs, cooldownDuration: 30_000 });
    return this.jwks;
  }

  async verify(token: string): Promise<LogoutTarget> {
    let payload: JWTPayload;
    let typ: string | undefined;
    try {
      const result = await jwtVerify(token, this.keySet(), {
        issuer: this.idp.metadata.issuer,
        audience: this.config.oidc.clientId,
        algorithms: ID_TOKEN_ALGORITHMS,
        maxTokenAge: MAX_AGE_SECONDS,
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        requiredClaims: ['iat', 'jti'],
      });
      payload = result.payload;
      typ = result.protectedHeader.typ;
    } catch (err) {
      throw new LogoutTokenError(`logout token rejected: ${(err as { code?: string }).code ?? (err as Error).message}`);
    }
    if (typ !== undefined && !ACCEPTED_TYP.has(typ.toLowerCase())) throw new LogoutTokenError('unexpected typ');
    const events = payload.events as Record<string, unknown> | undefined;
    const event = events && typeof events === 'object' ? events[BACKCHANNEL_EVENT] : undefined;
    if (!event || typeof event !== 'object' || Array.isArray(event)) throw new LogoutTokenError('missing back-channel logout event');
    if ('nonce' in payload) throw new LogoutTokenError('logout token must not carry a nonce');
    const sid = typeof payload.sid === 'string' && payload.sid ? payload.sid : undefined;
    const sub = typeof payload.sub === 'string' && payload.sub ? payload.sub : undefined;
    if (!sid && !sub) throw new LogoutTokenError('logout token names neither sid nor sub');
    if (typeof payload.jti !== 'string' || !payload.jti) throw new LogoutTokenError('missing jti');
    const replayTtlMs = (MAX_AGE_SECONDS + CLOCK_TOLERANCE_SECONDS) * 2000;
    if (!(await this.claims.claim('logout-jti', hashed(`${payload.iss}\n${payload.jti}`), replayTtlMs)))
      throw new LogoutTokenError('logout token replayed');
    return { sid, sub };
  }
}
