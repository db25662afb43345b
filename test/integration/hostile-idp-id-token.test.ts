/**
 * A hostile IdP's ID tokens, modelled on the OpenID Foundation RP conformance tests
 * (rp-id_token-issuer-mismatch, -aud, -sub, -iat, -bad-sig-rs256, -sig-none, -kid-absent...).
 * The gateway talks to the real IdP through a front that lies in the token response; every lie
 * must fail closed: 400 login_failed and no session. The faithful copy logs in (the control),
 * so each refusal is caused by the one thing that was changed.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { JWTPayload } from 'jose';
import { startWorldBehindFront, type HostileIdp, type IdTokenCorruption } from '../support/hostile-idp.ts';
import { isClearingCookie, login, loginUpToCallback } from '../support/login.ts';
import { apiHeaders, CLIENT_ID, CLIENT_SECRET, type World } from '../support/world.ts';

let world: World;
let front: HostileIdp;

beforeAll(async () => {
  ({ world, front } = await startWorldBehindFront({}, { clientSecret: CLIENT_SECRET }));
});
afterEach(() => {
  front.corruption = 'none';
  front.claimOverrides = undefined;
  front.removeClaims = undefined;
});
afterAll(async () => {
  await world?.close();
});

const now = () => Math.floor(Date.now() / 1000);

/** Runs a login up to the callback, then completes it; the token request really happens. */
async function callbackThroughFront(): Promise<Response> {
  const pending = await loginUpToCallback(world.url);
  const grants = world.idp.counters.authorizationCodeGrants;
  const res = await fetch(pending.callbackUrl, { redirect: 'manual', headers: { cookie: pending.gatewayCookieHeader } });
  // The lie was delivered: the code was redeemed and the rewritten response reached the gateway.
  expect(world.idp.counters.authorizationCodeGrants).toBe(grants + 1);
  return res;
}

async function expectRefused(res: Response): Promise<void> {
  expect(res.status).toBe(400);
  expect(((await res.json()) as { error: string }).error).toBe('login_failed');
  const sessionCookies = res.headers.getSetCookie().filter((line) => line.startsWith('bff-session=') && !isClearingCookie(line));
  expect(sessionCookies).toEqual([]);
}

describe('control', () => {
  it('a faithful ID token through the front logs in', async () => {
    const session = await login(world.url);
    const res = await fetch(`${world.url}/auth/user`, { headers: apiHeaders(session.cookieHeader) });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { sub: string }).sub).toBe('alice');
  });

  it('an extra audience is accepted when azp names this client (OIDC Core 3.1.3.7 items 3-5)', async () => {
    front.claimOverrides = { aud: [CLIENT_ID, 'https://other.example'], azp: CLIENT_ID };
    const res = await callbackThroughFront();
    expect(res.status).toBe(302);
    expect(res.headers.getSetCookie().some((line) => line.startsWith('bff-session=') && !isClearingCookie(line))).toBe(true);
  });
});

describe('claims', () => {
  it.each<[string, JWTPayload]>([
    ['a wrong iss', { iss: 'https://evil.example' }],
    ['a wrong aud', { aud: 'someone-else' }],
    ['an untrusted extra aud without azp', { aud: [CLIENT_ID, 'https://untrusted.example'] }],
    ['an extra aud with a wrong azp', { aud: [CLIENT_ID, 'https://untrusted.example'], azp: 'https://untrusted.example' }],
    ['a wrong nonce', { nonce: 'not-the-nonce-we-sent' }],
    ['an expired exp', { exp: now() - 3600, iat: now() - 7200 }],
  ])('refuses a correctly signed ID token with %s', async (_label, overrides) => {
    front.claimOverrides = overrides;
    await expectRefused(await callbackThroughFront());
  });

  it.each(['aud', 'sub', 'iat', 'exp', 'nonce'])('refuses a correctly signed ID token without %s', async (claim) => {
    front.removeClaims = [claim];
    await expectRefused(await callbackThroughFront());
  });
});

describe('signatures', () => {
  it.each<IdTokenCorruption>(['alg-none', 'flipped-signature', 'hs256-client-secret', 'foreign-key', 'unknown-kid'])(
    'refuses an ID token that is %s',
    async (corruption) => {
      front.corruption = corruption;
      await expectRefused(await callbackThroughFront());
    },
  );
});
