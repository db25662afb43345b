/**
 * RP-initiated logout (docs/http-interface.md#get-and-post-authlogout): GET /auth/logout?sid=… and POST /auth/logout.
 * A logout destroys the session, revokes its refresh token at the IdP (RFC 7009: afterwards a
 * refresh_token grant with it fails, while another session's still works), clears the cookie
 * and sends the browser to the IdP's end_session_endpoint with id_token_hint, client_id and
 * post_logout_redirect_uri. A GET without the app's `sid` (a cross-site link) ends nothing.
 */
import { afterAll, afterEach, beforeAll, expect, test, vi } from 'vitest';
import { decodeJwt } from 'jose';
import { refreshAtIdp } from '../support/idp-grants.ts';
import { login } from '../support/login.ts';
import { navigate, rawRequest } from '../support/raw-http.ts';
import { logoutsOf, recordOf } from '../support/session-probe.ts';
import { CLIENT_ID, apiHeaders, startWorld, type World } from '../support/world.ts';

let world: World;
beforeAll(async () => {
  // ID tokens live 2s, so a test can hold one past its expiry.
  world = await startWorld({ idp: { idTokenTtl: 2 } });
});
afterAll(() => world?.close());
afterEach(() => {
  world.idp.faults.revocation = 'none';
});

const userOf = (cookie: string) => fetch(`${world.url}/auth/user`, { headers: apiHeaders(cookie) });

async function loggedIn(user = 'alice') {
  const { cookieHeader: cookie } = await login(world.url, { user });
  const res = await userOf(cookie);
  expect(res.status).toBe(200);
  const { logoutUrl } = (await res.json()) as { logoutUrl: string };
  const record = (await recordOf(world.gateway, cookie))!;
  return { cookie, logoutUrl, tokens: record.tokens };
}

function expectClearedCookie(res: Response): void {
  const name = world.gateway.gateway.services.cookie.name;
  const line = res.headers.getSetCookie().find((l) => l.startsWith(`${name}=`));
  expect(line).toBeDefined();
  expect(line).toMatch(new RegExp(`^${name}=;`));
  expect(line).toMatch(/Max-Age=0/);
}

function expectEndSessionRedirect(location: string, idToken: string | undefined): void {
  const target = new URL(location);
  expect(`${target.origin}${target.pathname}`).toBe(world.gateway.gateway.services.idp.metadata.end_session_endpoint);
  expect(target.searchParams.get('id_token_hint')).toBe(idToken);
  expect(target.searchParams.get('client_id')).toBe(CLIENT_ID);
  expect(target.searchParams.get('post_logout_redirect_uri')).toBe(`${world.url}/`);
}

test('GET /auth/logout?sid: session destroyed, refresh token revoked, cookie cleared, 302 to end_session_endpoint', async () => {
  const alice = await loggedIn();
  const other = await loggedIn();
  const rpBefore = await logoutsOf(world.gateway, 'rp');
  const revocationsBefore = world.idp.counters.revocations;
  const logsBefore = world.gateway.logs.length;

  const res = await navigate(alice.logoutUrl, { cookie: alice.cookie });
  expect(res.status).toBe(302);
  expect(res.headers.get('cache-control')).toBe('no-store');
  expectEndSessionRedirect(res.headers.get('location')!, alice.tokens.idToken);
  expectClearedCookie(res);

  expect((await userOf(alice.cookie)).status).toBe(401);
  expect(world.idp.counters.revocations).toBeGreaterThan(revocationsBefore);
  expect(await refreshAtIdp(world.idp.issuer, alice.tokens.refreshToken!)).toEqual({ status: 400, error: 'invalid_grant' });
  // The other session's grant is untouched, so the failure above is the revocation.
  expect((await refreshAtIdp(world.idp.issuer, other.tokens.refreshToken!)).status).toBe(200);
  expect(await logoutsOf(world.gateway, 'rp')).toBe(rpBefore + 1);
  // The IdP's refusal to revoke its JWT access tokens (unsupported_token_type) is no failure.
  expect(world.gateway.logs.slice(logsBefore).some((line) => line.includes('"revocation_failed"'))).toBe(false);

  // The IdP accepts the redirect as built (hint, client, registered post-logout URI).
  const page = await fetch(res.headers.get('location')!, { redirect: 'manual' });
  expect(page.status).toBe(200);
  // An invalid hint or redirect URI would get the IdP's plain-text error page instead.
  expect(await page.text()).toContain('/session/end/confirm');
});

test('the id_token_hint is sent even when the ID token has expired', async () => {
  const alice = await loggedIn();
  const exp = decodeJwt(alice.tokens.idToken!).exp! * 1000;
  await vi.waitFor(() => expect(Date.now()).toBeGreaterThan(exp + 1_000), { timeout: 6_000, interval: 200 });

  const res = await navigate(alice.logoutUrl, { cookie: alice.cookie });
  expect(res.status).toBe(302);
  expectEndSessionRedirect(res.headers.get('location')!, alice.tokens.idToken);
  const page = await fetch(res.headers.get('location')!, { redirect: 'manual' });
  expect(page.status).toBe(200);
  expect(await page.text()).toContain('/session/end/confirm');
  expect((await userOf(alice.cookie)).status).toBe(401);
});

test('GET with a session but a missing or wrong sid: 400 invalid_request and the session lives on', async () => {
  const alice = await loggedIn();
  const revocationsBefore = world.idp.counters.revocations;
  const wrong = new URL(alice.logoutUrl);
  wrong.searchParams.set('sid', `${wrong.searchParams.get('sid')}x`);
  const missing = new URL(alice.logoutUrl);
  missing.search = '';
  const doubled = new URL(alice.logoutUrl);
  doubled.searchParams.append('sid', doubled.searchParams.get('sid')!);

  for (const url of [wrong, missing, doubled]) {
    const res = await navigate(url, { cookie: alice.cookie });
    expect(res.status).toBe(400);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(await res.json()).toMatchObject({ error: 'invalid_request' });
    expect(res.headers.getSetCookie().some((l) => l.startsWith(`${world.gateway.gateway.services.cookie.name}=`))).toBe(false);
  }
  expect((await userOf(alice.cookie)).status).toBe(200);
  expect(world.idp.counters.revocations).toBe(revocationsBefore);
});

test('GET /auth/logout?sid from a script (not a top-level navigation): 400 invalid_request, no hint, the session lives on', async () => {
  const alice = await loggedIn();
  const revocationsBefore = world.idp.counters.revocations;
  const rpBefore = await logoutsOf(world.gateway, 'rp');
  // What page script that read `sid` from /auth/user would send with fetch(), or in a frame.
  for (const headers of [
    { 'sec-fetch-mode': 'cors', 'sec-fetch-dest': 'empty', 'sec-fetch-site': 'same-origin' },
    { 'sec-fetch-mode': 'no-cors', 'sec-fetch-dest': 'empty', 'sec-fetch-site': 'same-origin' },
    { 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'iframe', 'sec-fetch-site': 'same-origin' },
  ]) {
    const res = await rawRequest(alice.logoutUrl, { headers: { ...headers, cookie: alice.cookie } });
    const where = JSON.stringify(headers);
    expect(res.status, where).toBe(400);
    expect(res.headers.location, where).toBeUndefined();
    expect(res.headers['cache-control'], where).toBe('no-store');
    expect(JSON.parse(res.body.toString('utf8')), where).toMatchObject({ error: 'invalid_request' });
    expect(res.body.toString('utf8'), where).not.toContain(alice.tokens.idToken!);
    expect(res.headers['set-cookie'], where).toBeUndefined();
  }
  // Node's own fetch() says `Sec-Fetch-Mode: cors` like a browser's.
  const scripted = await fetch(alice.logoutUrl, { headers: { cookie: alice.cookie }, redirect: 'manual' });
  expect(scripted.status).toBe(400);
  expect(scripted.headers.get('location')).toBeNull();
  await scripted.body?.cancel();

  expect((await userOf(alice.cookie)).status).toBe(200);
  expect(world.idp.counters.revocations).toBe(revocationsBefore);
  expect(await logoutsOf(world.gateway, 'rp')).toBe(rpBefore);

  // The same link, followed by the browser: the logout happens as before.
  const navigation = await navigate(alice.logoutUrl, { cookie: alice.cookie });
  expect(navigation.status).toBe(302);
  expectEndSessionRedirect(navigation.headers.get('location')!, alice.tokens.idToken);
  expect((await userOf(alice.cookie)).status).toBe(401);
});

test('GET /auth/logout?sid from a client that sends no Sec-Fetch headers (an older browser) still logs out', async () => {
  const alice = await loggedIn();
  const res = await rawRequest(alice.logoutUrl, { headers: { cookie: alice.cookie } });
  expect(res.status).toBe(302);
  expectEndSessionRedirect(res.headers.location!, alice.tokens.idToken);
  expect((await userOf(alice.cookie)).status).toBe(401);
});

test('a cross-site style GET (an <img> on another site, no sid) does not log out', async () => {
  const alice = await loggedIn();
  const res = await fetch(`${world.url}/auth/logout`, {
    headers: {
      cookie: alice.cookie,
      'sec-fetch-site': 'cross-site',
      'sec-fetch-dest': 'image',
      'sec-fetch-mode': 'no-cors',
      referer: 'https://evil.example/',
    },
    redirect: 'manual',
  });
  expect(res.status).toBe(400);
  expect((await userOf(alice.cookie)).status).toBe(200);
});

test('GET without a session: 302 to postLogoutRedirect', async () => {
  const res = await navigate(`${world.url}/auth/logout?sid=anything`);
  expect(res.status).toBe(302);
  expect(res.headers.get('location')).toBe(`${world.url}/`);

  const alice = await loggedIn();
  await (await navigate(alice.logoutUrl, { cookie: alice.cookie })).body?.cancel();
  // The ended session's cookie is as good as none.
  const again = await navigate(alice.logoutUrl, { cookie: alice.cookie });
  expect(again.status).toBe(302);
  expect(again.headers.get('location')).toBe(`${world.url}/`);
});

test('POST /auth/logout with x-csrf: 200 {logoutUrl} and the same effects', async () => {
  const alice = await loggedIn();
  const rpBefore = await logoutsOf(world.gateway, 'rp');
  const res = await fetch(`${world.url}/auth/logout`, { method: 'POST', headers: apiHeaders(alice.cookie) });
  expect(res.status).toBe(200);
  expect(res.headers.get('cache-control')).toBe('no-store');
  const body = (await res.json()) as { logoutUrl: string };
  expect(Object.keys(body)).toEqual(['logoutUrl']);
  // Page script reads this answer: the URL is the gateway's one-time hand-off, no ID token in it
  // (logout-post-url.test.ts follows it to the IdP).
  expect(body.logoutUrl.startsWith(`${world.url}/auth/logout/continue?handoff=`)).toBe(true);
  expect(body.logoutUrl).not.toContain(alice.tokens.idToken!);
  expectClearedCookie(res);
  expect((await userOf(alice.cookie)).status).toBe(401);
  expect(await refreshAtIdp(world.idp.issuer, alice.tokens.refreshToken!)).toEqual({ status: 400, error: 'invalid_grant' });
  expect(await logoutsOf(world.gateway, 'rp')).toBe(rpBefore + 1);
});

test('POST /auth/logout without x-csrf (or from another origin): 403 csrf_required, session kept', async () => {
  const alice = await loggedIn();
  const bare = await fetch(`${world.url}/auth/logout`, { method: 'POST', headers: { cookie: alice.cookie } });
  expect(bare.status).toBe(403);
  expect(await bare.json()).toMatchObject({ error: 'csrf_required' });
  const foreign = await fetch(`${world.url}/auth/logout`, {
    method: 'POST',
    headers: apiHeaders(alice.cookie, { origin: 'https://evil.example' }),
  });
  expect(foreign.status).toBe(403);
  expect((await userOf(alice.cookie)).status).toBe(200);
});

test('POST /auth/logout without a session: 200 with postLogoutRedirect as logoutUrl', async () => {
  const res = await fetch(`${world.url}/auth/logout`, { method: 'POST', headers: { 'x-csrf': '1' } });
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual({ logoutUrl: `${world.url}/` });
});

test.each(['http503', 'reset'] as const)('revocation endpoint failing (%s): the local logout still completes', async (fault) => {
  const alice = await loggedIn();
  world.idp.faults.revocation = fault;
  const revocationsBefore = world.idp.counters.revocations;
  const logsBefore = world.gateway.logs.length;
  const res = await navigate(alice.logoutUrl, { cookie: alice.cookie });
  expect(res.status).toBe(302);
  expectEndSessionRedirect(res.headers.get('location')!, alice.tokens.idToken);
  expectClearedCookie(res);
  expect((await userOf(alice.cookie)).status).toBe(401);
  expect(world.idp.counters.revocations).toBeGreaterThan(revocationsBefore);
  expect(world.gateway.logs.slice(logsBefore).some((line) => line.includes('"revocation_failed"'))).toBe(true);
});
