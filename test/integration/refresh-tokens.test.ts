/**
 * What a refresh response does to the session's token set (docs/http-interface.md#tokens-and-refresh, OIDC Core
 * 12.2). Pure functions: the embedded IdP always rotates and always re-issues an ID token, so
 * the "IdP returned no refresh token" branch can only be shown here.
 */
import { SignJWT } from 'jose';
import { expect, test } from 'vitest';
import type { TokenResponse } from '../../src/oidc/client.ts';
import { sameIdentity, tokensFromResponse } from '../../src/oidc/tokens.ts';
import type { SessionTokens } from '../../src/session/sessions.ts';

const NOW = 1_700_000_000_000;
const previous: SessionTokens = {
  accessToken: 'at-old',
  tokenType: 'bearer',
  expiresAt: NOW,
  refreshToken: 'rt-old',
  idToken: 'id-old',
  scope: 'openid api',
};
const response = (fields: Record<string, unknown>) => fields as unknown as TokenResponse;

test('a rotated refresh token replaces the old one; expiry comes from expires_in at receipt', () => {
  const tokens = tokensFromResponse(
    response({ access_token: 'at-new', token_type: 'Bearer', expires_in: 300, refresh_token: 'rt-new' }),
    NOW,
    previous,
  );
  expect(tokens).toMatchObject({
    accessToken: 'at-new',
    refreshToken: 'rt-new',
    expiresAt: NOW + 300_000,
    idToken: 'id-old',
    scope: 'openid api',
  });
});

test('no refresh token in the response: the old one stays', () => {
  const tokens = tokensFromResponse(response({ access_token: 'at-new', token_type: 'Bearer', expires_in: 60 }), NOW, previous);
  expect(tokens.refreshToken).toBe('rt-old');
  expect(tokens.accessToken).toBe('at-new');
});

test('without expires_in the expiry is the JWT exp of the access token, else unknown', async () => {
  const exp = Math.floor(NOW / 1000) + 120;
  const jwt = await new SignJWT({ exp }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode('k'.repeat(32)));
  expect(tokensFromResponse(response({ access_token: jwt, token_type: 'Bearer' }), NOW, previous).expiresAt).toBe(exp * 1000);
  expect(tokensFromResponse(response({ access_token: 'opaque', token_type: 'Bearer' }), NOW, previous).expiresAt).toBeNull();
});

test('a refreshed ID token must name the same subject, issuer and audience', async () => {
  const key = new TextEncoder().encode('k'.repeat(32));
  const idToken = (claims: Record<string, unknown>) => new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).sign(key);
  const original = await idToken({ iss: 'https://idp', sub: 'alice', aud: 'spa-bff' });
  expect(sameIdentity(original, await idToken({ iss: 'https://idp', sub: 'alice', aud: ['spa-bff'] }))).toBe(true);
  expect(sameIdentity(original, await idToken({ iss: 'https://idp', sub: 'mallory', aud: 'spa-bff' }))).toBe(false);
  expect(sameIdentity(original, await idToken({ iss: 'https://other', sub: 'alice', aud: 'spa-bff' }))).toBe(false);
  expect(sameIdentity(original, await idToken({ iss: 'https://idp', sub: 'alice', aud: 'another-client' }))).toBe(false);
  expect(sameIdentity(original, undefined)).toBe(true);
  expect(sameIdentity(original, 'not-a-jwt')).toBe(false);
});
