/**
 * Turning token-endpoint responses into the session's token set.
 * - Expiry comes from `expires_in` at receipt; failing that, from the access token's JWT `exp`.
 * - Refresh-token rotation: a returned refresh token replaces the old one; none returned keeps
 *   the old one (docs/http-interface.md#tokens-and-refresh).
 * - A refreshed ID token must describe the same user at the same IdP for the same client
 *   (OIDC Core 12.2): otherwise the refresh is rejected.
 */
import { decodeJwt } from 'jose';
import type { SessionTokens } from '../session/sessions.ts';
import type { TokenResponse } from './client.ts';

function jwtExpiry(token: string): number | null {
  try {
    const { exp } = decodeJwt(token);
    return typeof exp === 'number' ? exp * 1000 : null;
  } catch {
    return null;
  }
}

export function tokensFromResponse(response: TokenResponse, now: number, previous?: SessionTokens): SessionTokens {
  const expiresIn = typeof response.expires_in === 'number' && Number.isFinite(response.expires_in) ? response.expires_in : undefined;
  return {
    accessToken: response.access_token,
    tokenType: response.token_type ?? 'bearer',
    expiresAt: expiresIn !== undefined ? now + expiresIn * 1000 : jwtExpiry(response.access_token),
    refreshToken: response.refresh_token ?? previous?.refreshToken,
    idToken: response.id_token ?? previous?.idToken,
    scope: response.scope ?? previous?.scope,
  };
}

/** OIDC Core 12.2: iss, sub and aud of a refreshed ID token must match the original. */
export function sameIdentity(original: string | undefined, refreshed: string | undefined): boolean {
  if (!original || !refreshed) return true;
  try {
    const before = decodeJwt(original);
    const after = decodeJwt(refreshed);
    const audience = (value: unknown) => [value].flat().map(String).sort().join(' ');
    return before.iss === after.iss && before.sub === after.sub && audience(before.aud) === audience(after.aud);
  } catch {
    return false;
  }
}

/** The IdP's refresh-token lifetime when it says (e.g. Keycloak's `refresh_expires_in`), in ms. */
export function refreshLifetimeMs(response: TokenResponse): number | undefined {
  const value = (response as Record<string, unknown>).refresh_expires_in;
  return typeof value === 'number' && value > 0 ? value * 1000 : undefined;
}
