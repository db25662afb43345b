/**
 * Logging in again ends the session the browser had, even when the browser withholds the
 * session cookie on the callback: with `SameSite=Strict` and an IdP on another site, the
 * redirect back from the IdP is cross-site, so only the Lax login cookie arrives. The login
 * remembers the session it saw (sealed in that login cookie, so it cannot be forged) and the
 * successful callback ends it. Real IdP, real Redis.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { refreshAtIdp } from '../support/idp-grants.ts';
import { CookieJar, isClearingCookie, login, loginUpToCallback } from '../support/login.ts';
import { recordOf } from '../support/session-probe.ts';
import { apiHeaders, startWorld, type World } from '../support/world.ts';

let world: World;
beforeAll(async () => {
  world = await startWorld({ store: 'redis' });
});
afterAll(() => world?.close());

const userStatus = async (cookie: string) => (await fetch(`${world.url}/auth/user`, { headers: apiHeaders(cookie) })).status;

/** The callback as a cross-site redirect delivers it: the login cookie only, no session cookie. */
async function callbackWithoutSessionCookie(callbackUrl: string, jar: CookieJar): Promise<string> {
  const sessionName = world.gateway.gateway.services.cookie.name;
  const cookies = jar.cookiesFor(callbackUrl).filter((c) => c.name !== sessionName);
  expect(cookies.map((c) => c.name)).toContain(world.gateway.gateway.services.cookie.loginName);
  const res = await fetch(callbackUrl, { headers: { cookie: cookies.map((c) => `${c.name}=${c.value}`).join('; ') }, redirect: 'manual' });
  await res.body?.cancel();
  expect(res.status).toBe(302);
  const line = res.headers.getSetCookie().find((l) => l.startsWith(`${sessionName}=`) && !isClearingCookie(l));
  expect(line).toBeDefined();
  return line!.split(';')[0]!;
}

test('a second login whose callback carries no session cookie ends the previous session', async () => {
  const first = await login(world.url);
  expect(await userStatus(first.cookieHeader)).toBe(200);

  // The same browser logs in again: /auth/login sees the session cookie, the callback does not.
  const pending = await loginUpToCallback(world.url, { jar: first.jar });
  const second = await callbackWithoutSessionCookie(pending.callbackUrl, pending.jar);

  expect(second).not.toBe(first.cookieHeader);
  expect(await userStatus(first.cookieHeader)).toBe(401);
  expect(await recordOf(world.gateway, first.cookieHeader)).toBeUndefined();
  expect(await userStatus(second)).toBe(200);

  // The IdP reuses one grant for both logins of its session: the old refresh token is not
  // revoked, because that would revoke the new session's grant too. The new one still refreshes.
  const record = (await recordOf(world.gateway, second))!;
  expect((await refreshAtIdp(world.idp.issuer, record.tokens.refreshToken!)).status).toBe(200);
});

test("a re-login as another user also revokes the previous session's refresh token", async () => {
  const alice = await login(world.url, { user: 'alice' });
  const aliceTokens = (await recordOf(world.gateway, alice.cookieHeader))!.tokens;

  // Same browser (gateway cookies), but the IdP session is gone: bob logs in at the IdP.
  const jar = new CookieJar();
  jar.store(world.url, [`${alice.cookieHeader}; Path=/`]);
  const pending = await loginUpToCallback(world.url, { jar, user: 'bob' });
  const bob = await callbackWithoutSessionCookie(pending.callbackUrl, pending.jar);

  expect((await recordOf(world.gateway, bob))!.sub).toBe('bob');
  expect(await userStatus(alice.cookieHeader)).toBe(401);
  expect((await refreshAtIdp(world.idp.issuer, aliceTokens.refreshToken!)).status).toBe(400);
  expect(await userStatus(bob)).toBe(200);
});

test('a forged or foreign login cookie cannot name a session to end', async () => {
  const victim = await login(world.url);
  // An attacker's own login (no session cookie at /auth/login) completed in the victim's browser.
  const attacker = await loginUpToCallback(world.url, { user: 'mallory' });
  await callbackWithoutSessionCookie(attacker.callbackUrl, attacker.jar);
  expect(await userStatus(victim.cookieHeader)).toBe(200);
});
