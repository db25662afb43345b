/**
 * An IdP without RP-initiated logout (no end_session_endpoint in its discovery document): the
 * logout still ends the session and revokes its tokens, and the browser goes to
 * postLogoutRedirect on publicUrl instead.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { withoutEndSession } from '../support/idp-rewrite.ts';
import { navigate } from '../support/raw-http.ts';
import { loginAt, recordOf } from '../support/session-probe.ts';
import { apiHeaders, startWorld, type RunningGateway, type World } from '../support/world.ts';

let world: World;
let gateway: RunningGateway;
beforeAll(async () => {
  world = await startWorld({ store: 'redis' });
  withoutEndSession(world.idp);
  // Discovers after the rewrite; shares the store with the world's first gateway.
  gateway = await world.startGateway({}, { oidc: { postLogoutRedirect: '/bye' } });
});
afterAll(() => world?.close());

async function loggedIn() {
  const cookie = await loginAt(world, gateway);
  const res = await fetch(`${gateway.url}/auth/user`, { headers: apiHeaders(cookie) });
  const { logoutUrl } = (await res.json()) as { logoutUrl: string };
  // logoutUrl names the public origin; this gateway listens on its own port.
  const path = new URL(logoutUrl);
  return { cookie, logoutUrl: `${gateway.url}${path.pathname}${path.search}` };
}

test('the rewritten IdP really advertises no end_session_endpoint', () => {
  expect(gateway.gateway.services.idp.metadata.end_session_endpoint).toBeUndefined();
  expect(world.gateway.gateway.services.idp.metadata.end_session_endpoint).toBeDefined();
});

test('GET /auth/logout?sid: session ended and tokens revoked, 302 to postLogoutRedirect', async () => {
  const { cookie, logoutUrl } = await loggedIn();
  const revocationsBefore = world.idp.counters.revocations;
  expect(await recordOf(gateway, cookie)).toBeDefined();
  const res = await navigate(logoutUrl, { cookie });
  expect(res.status).toBe(302);
  expect(res.headers.get('location')).toBe(`${world.url}/bye`);
  expect(res.headers.getSetCookie().some((l) => /Max-Age=0/.test(l))).toBe(true);
  expect((await fetch(`${gateway.url}/auth/user`, { headers: apiHeaders(cookie) })).status).toBe(401);
  expect(await recordOf(gateway, cookie)).toBeUndefined();
  expect(world.idp.counters.revocations).toBeGreaterThan(revocationsBefore);
});

test('POST /auth/logout: logoutUrl is postLogoutRedirect', async () => {
  const { cookie } = await loggedIn();
  const res = await fetch(`${gateway.url}/auth/logout`, { method: 'POST', headers: apiHeaders(cookie) });
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual({ logoutUrl: `${world.url}/bye` });
  expect((await fetch(`${gateway.url}/auth/user`, { headers: apiHeaders(cookie) })).status).toBe(401);
});
