/**
 * ID-token verification at the callback (contract section 3): the gateway talks to the real IdP
 * through a hostile front that rewrites the token response. A faithful copy must log in (the
 * control); a token signed with a foreign key, unsigned (`alg: none`), HMAC-signed with the
 * client secret, or with wrong claims must end in 400 login_failed and no session.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startHostileIdp, type HostileIdp, type IdTokenCorruption } from '../support/hostile-idp.ts';
import { isClearingCookie, login, loginUpToCallback } from '../support/login.ts';
import { apiHeaders, CLIENT_SECRET, startWorld, type World } from '../support/world.ts';

let world: World;
let front: HostileIdp;

beforeAll(async () => {
  world = await startWorld({
    issuerFor: async (idp) => {
      front = await startHostileIdp({ idp, clientSecret: CLIENT_SECRET });
      return front.issuer;
    },
  });
});
afterEach(() => {
  front.corruption = 'none';
  front.claimOverrides = undefined;
});
afterAll(async () => {
  await world?.close();
  await front?.close();
});

async function callbackThroughFront(): Promise<Response> {
  const pending = await loginUpToCallback(world.url);
  return fetch(pending.callbackUrl, { redirect: 'manual', headers: { cookie: pending.gatewayCookieHeader } });
}

async function expectRefused(res: Response): Promise<void> {
  expect(res.status).toBe(400);
  expect(((await res.json()) as { error: string }).error).toBe('login_failed');
  expect(res.headers.getSetCookie().filter((line) => line.startsWith('bff-session=') && !isClearingCookie(line))).toEqual([]);
}

describe('ID token verification', () => {
  it('control: a faithful token response through the front logs in', async () => {
    const session = await login(world.url);
    const res = await fetch(`${world.url}/auth/user`, { headers: apiHeaders(session.cookieHeader) });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { claims: { iss: string } }).claims.iss).toBe(front.issuer);
  });

  it.each<IdTokenCorruption>(['foreign-key', 'alg-none', 'hs256-client-secret'])('refuses an ID token that is %s', async (corruption) => {
    front.corruption = corruption;
    const before = front.tokenResponses.length;
    await expectRefused(await callbackThroughFront());
    // The corrupted token really reached the gateway.
    expect(front.tokenResponses.length).toBe(before + 1);
  });

  it.each([
    ['another audience', { aud: 'someone-else' }],
    ['a different nonce', { nonce: 'not-the-nonce-we-sent' }],
    ['another issuer', { iss: 'https://evil.example' }],
    ['an expiry in the past', { exp: Math.floor(Date.now() / 1000) - 3600, iat: Math.floor(Date.now() / 1000) - 7200 }],
  ])('refuses a correctly signed ID token with %s', async (_label, overrides) => {
    front.claimOverrides = overrides;
    await expectRefused(await callbackThroughFront());
  });
});
