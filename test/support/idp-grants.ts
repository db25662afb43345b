/**
 * Grants sent straight to the IdP, as the gateway would send them (client_secret_basic with the
 * test client): how a test finds out whether a refresh token still lives there after a logout,
 * a revocation or a rotation.
 */
import { CLIENT_ID, CLIENT_SECRET } from './world.ts';

export interface GrantAnswer {
  status: number;
  /** The OAuth `error` of a refusal (`invalid_grant`, …). */
  error?: string;
}

/** A `refresh_token` grant at `issuer`'s token endpoint; the answer's status and OAuth error. */
export async function refreshAtIdp(issuer: string, refreshToken: string): Promise<GrantAnswer> {
  const res = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }),
  });
  const text = await res.text();
  let error: string | undefined;
  try {
    error = (JSON.parse(text) as { error?: unknown }).error as string | undefined;
  } catch {
    error = undefined;
  }
  return error === undefined ? { status: res.status } : { status: res.status, error };
}
