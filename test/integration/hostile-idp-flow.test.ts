/**
 * A hostile IdP around the token request rather than inside the ID token:
 * - RFC 9207: when discovery advertises `authorization_response_iss_parameter_supported`, an
 *   authorization response with another `iss`, or none, is refused before the code is redeemed
 *   (no token request reaches the IdP, so a mixed-up code is never sent to the wrong party);
 * - OIDC Core 12.2: a refreshed ID token naming another `sub` (validly signed by the IdP's real
 *   key) is rejected and the session ends: 401 session_expired, then 401 unauthenticated.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startWorldBehindFront, type HostileIdp } from '../support/hostile-idp.ts';
import { isClearingCookie, login, loginUpToCallback } from '../support/login.ts';
import { apiHeaders, type World } from '../support/world.ts';

let world: World;
let front: HostileIdp;

beforeAll(async () => {
  ({ world, front } = await startWorldBehindFront({
    // Access tokens live 300 s: with this margin every API call refreshes first.
    config: { tokens: { refreshBeforeExpiry: '1h' } },
  }));
});
afterEach(() => {
  front.claimOverrides = undefined;
  front.jwksAvailable = true;
  front.honourReusedCodes = false;
});
afterAll(async () => {
  await world?.close();
});

function tokenRequests(): number {
  return front.requests.filter((r) => r.method === 'POST' && r.path === '/token').length;
}

describe('authorization response iss (RFC 9207)', () => {
  it('the IdP advertises the iss parameter and sends it', async () => {
    const discovery = (await (await fetch(`${front.issuer}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    expect(discovery.authorization_response_iss_parameter_supported).toBe(true);
    const pending = await loginUpToCallback(world.url);
    expect(new URL(pending.callbackUrl).searchParams.get('iss')).toBe(front.issuer);
  });

  it.each([
    ['another IdP', (url: URL) => url.searchParams.set('iss', 'https://evil.example')],
    ['the IdP behind the front (a mix-up with a real issuer)', (url: URL) => url.searchParams.set('iss', world.idp.issuer)],
    ['no iss at all', (url: URL) => url.searchParams.delete('iss')],
  ])('refuses an authorization response naming %s, and never redeems the code', async (_label, tamper) => {
    const pending = await loginUpToCallback(world.url);
    const url = new URL(pending.callbackUrl);
    tamper(url);
    const before = { grants: world.idp.counters.authorizationCodeGrants, relayed: tokenRequests() };
    const res = await fetch(url, { redirect: 'manual', headers: { cookie: pending.gatewayCookieHeader } });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe('login_failed');
    expect(res.headers.getSetCookie().some((line) => line.startsWith('bff-session=') && !isClearingCookie(line))).toBe(false);
    expect({ grants: world.idp.counters.authorizationCodeGrants, relayed: tokenRequests() }).toEqual(before);
  });
});

describe('single use', () => {
  it("a replayed callback fails on the gateway's own state rule even when the IdP honours the code again", async () => {
    front.honourReusedCodes = true;
    const pending = await loginUpToCallback(world.url);
    const first = await fetch(pending.callbackUrl, { redirect: 'manual', headers: { cookie: pending.gatewayCookieHeader } });
    expect(first.status).toBe(302);
    const replay = await fetch(pending.callbackUrl, { redirect: 'manual', headers: { cookie: pending.gatewayCookieHeader } });
    expect(replay.status).toBe(400);
    expect(((await replay.json()) as { error: string }).error).toBe('login_failed');
    expect(replay.headers.getSetCookie().some((line) => line.startsWith('bff-session=') && !isClearingCookie(line))).toBe(false);
  });
});

describe('refreshed ID token', () => {
  it('control: a refresh with the same sub keeps the session', async () => {
    const session = await login(world.url);
    const refreshes = world.idp.counters.refreshGrants;
    const res = await fetch(`${world.url}/api/echo`, { headers: apiHeaders(session.cookieHeader) });
    expect(res.status).toBe(200);
    expect(world.idp.counters.refreshGrants).toBe(refreshes + 1);
    expect(typeof front.tokenResponses.at(-1)?.id_token).toBe('string');
  });

  it('keys unreachable at refresh: the rotated tokens are kept, the unverifiable ID token is not', async () => {
    const session = await login(world.url);
    // A new signing key the gateway has never seen, and no way to fetch it.
    await front.rotateKey();
    front.jwksAvailable = false;
    const first = await fetch(`${world.url}/api/echo`, { headers: apiHeaders(session.cookieHeader) });
    expect(first.status).toBe(200);
    const rotated = front.tokenResponses.at(-1)?.refresh_token;
    expect(typeof rotated).toBe('string');
    // The next refresh must present the refresh token the IdP just issued; with reuse detection,
    // presenting the previous one would revoke the grant and end the session.
    front.jwksAvailable = true;
    const refreshes = world.idp.counters.refreshGrants;
    const second = await fetch(`${world.url}/api/echo`, { headers: apiHeaders(session.cookieHeader) });
    expect(second.status).toBe(200);
    expect(world.idp.counters.refreshGrants).toBe(refreshes + 1);
    expect(world.idp.tokenRequests.at(-1)?.params.refresh_token).toBe(rotated);
    const user = (await (await fetch(`${world.url}/auth/user`, { headers: apiHeaders(session.cookieHeader) })).json()) as { sub: string };
    expect(user.sub).toBe('alice');
  });

  it('a refreshed ID token for another sub ends the session: 401 session_expired, then unauthenticated', async () => {
    const session = await login(world.url);
    const upstreamCalls = world.upstream.requests.length;
    const refreshes = world.idp.counters.refreshGrants;
    // Re-signed with the IdP's real key: only the subject differs.
    front.claimOverrides = { sub: 'mallory' };
    const res = await fetch(`${world.url}/api/echo`, { headers: apiHeaders(session.cookieHeader) });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: string }).error).toBe('session_expired');
    expect(world.idp.counters.refreshGrants).toBe(refreshes + 1);
    expect(world.upstream.requests.length).toBe(upstreamCalls);

    front.claimOverrides = undefined;
    const after = await fetch(`${world.url}/auth/user`, { headers: apiHeaders(session.cookieHeader) });
    expect(after.status).toBe(401);
    expect(((await after.json()) as { error: string }).error).toBe('unauthenticated');
  });
});
