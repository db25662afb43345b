/**
 * Back-channel logout tokens for tests (OIDC Back-Channel Logout 1.0, section 2.4), signed with
 * the embedded IdP's own private keys, plus the forgeries a gateway must refuse. Every builder
 * starts from a valid token and changes exactly one thing, so a test that expects a refusal
 * proves that one rule.
 */
import { randomBytes } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, importJWK, type JWK, type JWTPayload, type JWTHeaderParameters } from 'jose';
import type { Idp } from '../../fixtures/idp/idp.ts';

export const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

export interface LogoutClaims extends JWTPayload {
  sid?: string;
  sub?: string;
  events?: Record<string, unknown>;
  nonce?: string;
}

export interface SignOptions {
  /** Claims merged over the valid defaults; a value of `undefined` removes the claim. */
  claims?: Partial<LogoutClaims>;
  /** Protected header merged over `{ alg, kid, typ: 'logout+jwt' }`; `typ: undefined` removes it. */
  header?: Partial<JWTHeaderParameters>;
  /** Sign with this private JWK instead of the IdP's RS256 key. */
  key?: JWK;
}

function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/** The claims of a valid logout token for `clientId` at `idp`. */
export function validClaims(idp: Idp, clientId: string, target: { sid?: string; sub?: string }): LogoutClaims {
  return {
    iss: idp.issuer,
    aud: clientId,
    iat: Math.floor(Date.now() / 1000),
    exp: Math.floor(Date.now() / 1000) + 120,
    jti: randomBytes(16).toString('base64url'),
    events: { [BACKCHANNEL_EVENT]: {} },
    ...target,
  };
}

function idpRsaKey(idp: Idp): JWK {
  const key = idp.privateJwks.keys.find((k) => k.kty === 'RSA');
  if (!key) throw new Error('the IdP has no RSA signing key');
  return key;
}

export async function signLogoutToken(
  idp: Idp,
  clientId: string,
  target: { sid?: string; sub?: string },
  options: SignOptions = {},
): Promise<string> {
  const jwk = options.key ?? idpRsaKey(idp);
  const alg = jwk.alg ?? (jwk.kty === 'EC' ? 'ES256' : 'RS256');
  const claims = withoutUndefined({ ...validClaims(idp, clientId, target), ...options.claims });
  const header = withoutUndefined({ alg, kid: jwk.kid, typ: 'logout+jwt', ...options.header }) as JWTHeaderParameters;
  return new SignJWT(claims).setProtectedHeader(header).sign(await importJWK(jwk, alg));
}

/** A fresh RS256 key that is not the IdP's, presented under the IdP key's own `kid`. */
export async function impostorKey(idp: Idp): Promise<JWK> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  return { ...(await exportJWK(privateKey)), alg: 'RS256', kid: idpRsaKey(idp).kid };
}

function b64(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

/** An unsigned token (`alg: none`) with otherwise valid claims. */
export function unsignedLogoutToken(idp: Idp, clientId: string, target: { sid?: string; sub?: string }): string {
  return `${b64({ alg: 'none', typ: 'logout+jwt' })}.${b64(validClaims(idp, clientId, target))}.`;
}

/** HS256 with the client secret as the MAC key: what a confused verifier might accept. */
export function hmacLogoutToken(idp: Idp, clientId: string, secret: string, target: { sid?: string; sub?: string }): Promise<string> {
  return new SignJWT(validClaims(idp, clientId, target))
    .setProtectedHeader({ alg: 'HS256', typ: 'logout+jwt' })
    .sign(new TextEncoder().encode(secret));
}

/** Posts a logout token the way an IdP does: one form-encoded field. */
export function postLogoutToken(
  gatewayUrl: string,
  token: string,
  init: { body?: BodyInit; contentType?: string } = {},
): Promise<Response> {
  return fetch(`${gatewayUrl}/auth/backchannel-logout`, {
    method: 'POST',
    headers: { 'content-type': init.contentType ?? 'application/x-www-form-urlencoded' },
    body: init.body ?? new URLSearchParams({ logout_token: token }),
  });
}
