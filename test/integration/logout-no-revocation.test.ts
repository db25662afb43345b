/**
 * RP logout at an IdP that offers no revocation endpoint (docs/http-interface.md#ending-sessions: "revokes the
 * refresh token at the IdP (RFC 7009) when it offers revocation"): the session still ends, the
 * cookie is cleared, the redirect goes to the end-session endpoint, and no revocation is
 * attempted (so no failure is logged on every logout).
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startWorldBehindFront } from '../support/hostile-idp.ts';
import { login } from '../support/login.ts';
import { navigate } from '../support/raw-http.ts';
import { apiHeaders, type World } from '../support/world.ts';

let world: World;
beforeAll(async () => {
  ({ world } = await startWorldBehindFront({}, { rewriteDiscovery: ({ revocation_endpoint: _dropped, ...doc }) => doc }));
});
afterAll(() => world?.close());

test('logout ends the session and attempts no revocation', async () => {
  const session = await login(world.url);
  const user = (await (await fetch(`${world.url}/auth/user`, { headers: apiHeaders(session.cookieHeader) })).json()) as {
    logoutUrl: string;
  };
  const logout = await navigate(user.logoutUrl, { cookie: session.cookieHeader });
  expect(logout.status).toBe(302);
  expect(logout.headers.get('location')).toContain('/session/end');
  expect(logout.headers.getSetCookie().some((line) => /Max-Age=0/.test(line))).toBe(true);
  expect((await fetch(`${world.url}/auth/user`, { headers: apiHeaders(session.cookieHeader) })).status).toBe(401);
  // Revocation was not attempted (an attempt would fail and be logged as revocation_failed).
  expect(world.gateway.logs.some((line) => line.includes('revocation_failed'))).toBe(false);
  expect(world.gateway.logs.some((line) => line.includes('"url":"/auth/logout'))).toBe(true);
});
