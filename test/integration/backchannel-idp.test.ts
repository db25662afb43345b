/**
 * Back-channel logout driven by the real IdP: the user signs out at the IdP's own end-session
 * page, the IdP posts a logout_token to the public URL (instance 1), and the session ends on
 * every instance that shares the store (checked on instance 2). Other users stay logged in.
 */
import { afterAll, beforeAll, expect, test, vi } from 'vitest';
import { login, submitIdpLogout } from '../support/login.ts';
import { logoutsOf, recordOf } from '../support/session-probe.ts';
import { apiHeaders, startWorld, type RunningGateway, type World } from '../support/world.ts';

let world: World;
let second: RunningGateway;
beforeAll(async () => {
  world = await startWorld({ store: 'redis', instances: 2 });
  second = world.gateways[1]!;
});
afterAll(() => world?.close());

const status = async (gateway: RunningGateway, cookie: string) =>
  (await fetch(`${gateway.url}/auth/user`, { headers: apiHeaders(cookie) })).status;

test('signing out at the IdP ends every gateway session of that IdP session, on every instance', async () => {
  const first = await login(world.url);
  // A second gateway session inside the same IdP session (single sign-on, no new password):
  // drop the gateway's cookies so the callback does not replace the first session.
  first.jar.clear(world.url);
  const sso = await login(world.url, { jar: first.jar });
  const bob = await login(world.url, { user: 'bob' });
  const firstRecord = (await recordOf(world.gateway, first.cookieHeader))!;
  expect(firstRecord.idpSid).toBeTruthy();
  expect((await recordOf(world.gateway, sso.cookieHeader))!.idpSid).toBe(firstRecord.idpSid);
  for (const cookie of [first.cookieHeader, sso.cookieHeader, bob.cookieHeader]) expect(await status(second, cookie)).toBe(200);

  const sentBefore = world.idp.logoutTokensSent;
  const backchannelBefore = await logoutsOf(world.gateway, 'backchannel');
  const answer = await submitIdpLogout(`${world.idp.issuer}/session/end`, first.jar);
  expect(answer.status).toBeLessThan(400);
  expect(world.idp.logoutTokensSent).toBe(sentBefore + 1);

  await vi.waitFor(async () => {
    expect(await status(second, first.cookieHeader)).toBe(401);
    expect(await status(second, sso.cookieHeader)).toBe(401);
  });
  expect(await status(world.gateway, first.cookieHeader)).toBe(401);
  expect((await fetch(`${second.url}/api/echo`, { headers: apiHeaders(sso.cookieHeader) })).status).toBe(401);
  expect(await status(second, bob.cookieHeader)).toBe(200);
  // The IdP's post landed on instance 1 and ended both sessions there.
  expect(await logoutsOf(world.gateway, 'backchannel')).toBe(backchannelBefore + 2);
  expect(await logoutsOf(second, 'backchannel')).toBe(0);
});

test('the back-channel request from the IdP was accepted (200), not merely ignored', async () => {
  const alice = await login(world.url);
  await submitIdpLogout(`${world.idp.issuer}/session/end`, alice.jar);
  await vi.waitFor(async () => expect(await status(second, alice.cookieHeader)).toBe(401));
  const lines = world.gateway.logs.filter((line) => line.includes('/auth/backchannel-logout') && line.includes('"status":'));
  expect(lines.length).toBeGreaterThan(0);
  expect(lines.every((line) => line.includes('"status":200'))).toBe(true);
});
