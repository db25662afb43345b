/**
 * A refresh that loses the race to a logout: the IdP has already minted (and rotated to) new
 * tokens when the user logs out, so the logout revokes the old refresh token and the finishing
 * refresh finds its session gone. The new tokens are never stored — and must not stay live at
 * the IdP either: the gateway revokes them. Real IdP behind a front that holds the token
 * response; the logout's own revocation is made to fail, so only the gateway's revocation of
 * the new tokens can kill the new refresh token.
 */
import { afterAll, afterEach, beforeAll, expect, test, vi } from 'vitest';
import { startWorldBehindFront, type HostileIdp, type TokenResponseBody } from '../support/hostile-idp.ts';
import { refreshAtIdp } from '../support/idp-grants.ts';
import { login } from '../support/login.ts';
import { apiHeaders, type World } from '../support/world.ts';

let world: World;
let front: HostileIdp;
beforeAll(async () => {
  ({ world, front } = await startWorldBehindFront({
    // Access tokens live 300 s: with this margin every API call refreshes first.
    config: { tokens: { refreshBeforeExpiry: '1h' } },
    // A route whose own token is minted from the refresh token (no token exchange at this IdP).
    routes: (upstream) => [
      { path: '/api', upstream: upstream.url, token: 'user' },
      { path: '/scoped', upstream: upstream.url, token: 'user', scopes: ['openid', 'api'] },
    ],
  }));
});
afterEach(() => {
  front.rewriteTokenResponse = undefined;
  world.idp.faults.revocation = 'none';
});
afterAll(() => world?.close());

/** Holds the next token response at the front until `release()`; `held` is what the IdP minted. */
function holdNextTokenResponse() {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const state: { held?: TokenResponseBody; release: () => void } = { release };
  front.rewriteTokenResponse = async (body) => {
    state.held = body;
    await released;
    return body;
  };
  return state;
}

test.each([
  ['a refresh of the main token', '/api/echo', undefined],
  ['a route-token mint that rotates the refresh token', '/scoped/echo', 'openid api'],
])('%s that finishes after the logout: its new refresh token is revoked at the IdP', async (_label, path, scope) => {
  const { cookieHeader: cookie } = await login(world.url);
  const hold = holdNextTokenResponse();
  const call = fetch(`${world.url}${path}`, { headers: apiHeaders(cookie) });
  await vi.waitFor(() => expect(hold.held).toBeDefined(), { timeout: 5_000, interval: 20 });
  const minted = hold.held!.refresh_token as string;
  expect(typeof minted).toBe('string');
  const held = world.idp.tokenRequests.at(-1)!;
  expect(held.grantType).toBe('refresh_token');
  expect(held.params.scope).toBe(scope);

  // The user logs out meanwhile; the IdP's revocation endpoint is down for that moment.
  world.idp.faults.revocation = 'http503';
  const logout = await fetch(`${world.url}/auth/logout`, { method: 'POST', headers: apiHeaders(cookie) });
  expect(logout.status).toBe(200);
  world.idp.faults.revocation = 'none';
  const revocationsBefore = world.idp.counters.revocations;
  const logsBefore = world.gateway.logs.length;

  hold.release();
  const res = await call;
  expect(res.status).toBe(401);
  expect(await res.json()).toMatchObject({ error: 'session_expired' });

  await vi.waitFor(
    () => expect(world.gateway.logs.slice(logsBefore).some((line) => line.includes('"lost_race_tokens_revoked"'))).toBe(true),
    { timeout: 5_000, interval: 20 },
  );
  expect(world.idp.counters.revocations).toBeGreaterThan(revocationsBefore);
  expect(world.gateway.logs.slice(logsBefore).some((line) => line.includes(minted))).toBe(false);
  // The minted refresh token is dead at the IdP.
  expect((await refreshAtIdp(world.idp.issuer, minted)).status).toBe(400);
});

test('control: a refresh token minted the same way, not revoked, still works at the IdP', async () => {
  const { cookieHeader: cookie } = await login(world.url);
  const hold = holdNextTokenResponse();
  const call = fetch(`${world.url}/api/echo`, { headers: apiHeaders(cookie) });
  await vi.waitFor(() => expect(hold.held).toBeDefined(), { timeout: 5_000, interval: 20 });
  const minted = hold.held!.refresh_token as string;
  hold.release();
  expect((await call).status).toBe(200);
  expect((await refreshAtIdp(world.idp.issuer, minted)).status).toBe(200);
});
