/**
 * GET /auth/callback against the real IdP (docs/http-interface.md#get-authcallback, #cookies): what completes a login,
 * and every way a callback must fail without creating a session.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchWithJar, isClearingCookie, login, loginUpToCallback, CookieJar } from '../support/login.ts';
import { apiHeaders, startWorld, type World } from '../support/world.ts';

let world: World;
let promptNone: World;

beforeAll(async () => {
  world = await startWorld();
  // prompt=none without an IdP session makes the real IdP answer the callback with an error.
  promptNone = await startWorld({ config: { oidc: { authParams: { prompt: 'none' } } } });
});
afterAll(async () => {
  await world?.close();
  await promptNone?.close();
});

const SESSION = 'bff-session';
const LOGIN = 'bff-login';

function cookieLines(res: Response, name: string): string[] {
  return res.headers.getSetCookie().filter((line) => line.startsWith(`${name}=`));
}

function setsSession(res: Response): boolean {
  return cookieLines(res, SESSION).some((line) => !isClearingCookie(line));
}

async function callback(url: string, cookie: string): Promise<Response> {
  return fetch(url, { redirect: 'manual', headers: cookie ? { cookie } : {} });
}

async function expectLoginFailed(res: Response): Promise<{ error: string; message: string }> {
  expect(res.status).toBe(400);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  expect(res.headers.get('cache-control')).toContain('no-store');
  expect(setsSession(res)).toBe(false);
  const body = (await res.json()) as { error: string; message: string };
  expect(body.error).toBe('login_failed');
  return body;
}

async function userStatus(gatewayUrl: string, cookieHeader: string): Promise<number> {
  const res = await fetch(`${gatewayUrl}/auth/user`, { headers: apiHeaders(cookieHeader) });
  await res.body?.cancel();
  return res.status;
}

describe('successful callback', () => {
  it('sets the session cookie, clears the login cookie, 302s to returnTo, no-store and no-referrer', async () => {
    const pending = await loginUpToCallback(world.url, { returnTo: '/after/login?tab=2' });
    expect(pending.gatewayCookieHeader).toContain(`${LOGIN}=`);
    const res = await callback(pending.callbackUrl, pending.gatewayCookieHeader);
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe(`${world.url}/after/login?tab=2`);
    expect(res.headers.get('cache-control')).toContain('no-store');
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
    expect(setsSession(res)).toBe(true);
    // Exactly one deletion of the login cookie, and one session cookie: no repeated lines.
    const loginLines = cookieLines(res, LOGIN);
    expect(loginLines).toHaveLength(1);
    expect(isClearingCookie(loginLines[0] as string)).toBe(true);
    expect(cookieLines(res, SESSION)).toHaveLength(1);
    const session = (cookieLines(res, SESSION)[0] as string).split(';')[0] as string;
    expect(await userStatus(world.url, session)).toBe(200);
  });

  it('issues a new session id on every login; the previous cookie stops working', async () => {
    const jar = new CookieJar();
    const first = await login(world.url, { jar });
    expect(await userStatus(world.url, first.cookieHeader)).toBe(200);
    // Same browser: the jar still holds the first session cookie (and the IdP session).
    expect(jar.get(world.url, SESSION)).toBe(first.cookie.split('=')[1]);
    const second = await login(world.url, { jar });
    expect(second.cookie).not.toBe(first.cookie);
    expect(await userStatus(world.url, second.cookieHeader)).toBe(200);
    expect(await userStatus(world.url, first.cookieHeader)).toBe(401);
  });
});

describe('refused callbacks', () => {
  it('refuses a state that this browser did not start (forged state)', async () => {
    const pending = await loginUpToCallback(world.url);
    const forged = new URL(pending.callbackUrl);
    forged.searchParams.set('state', 'forged-state-value-0123456789');
    await expectLoginFailed(await callback(forged.href, pending.gatewayCookieHeader));
  });

  it('refuses a callback without the login cookie', async () => {
    const pending = await loginUpToCallback(world.url);
    await expectLoginFailed(await callback(pending.callbackUrl, ''));
    // The genuine browser can still finish: the refusal did not burn its transaction.
    const res = await callback(pending.callbackUrl, pending.gatewayCookieHeader);
    expect(res.status).toBe(302);
  });

  it('refuses a replayed callback (same URL, same cookies)', async () => {
    const pending = await loginUpToCallback(world.url);
    const first = await callback(pending.callbackUrl, pending.gatewayCookieHeader);
    expect(first.status).toBe(302);
    expect(setsSession(first)).toBe(true);
    await expectLoginFailed(await callback(pending.callbackUrl, pending.gatewayCookieHeader));
  });

  it.each(['state', 'code', 'iss'])('refuses a duplicated %s parameter, even with the same value twice', async (name) => {
    const pending = await loginUpToCallback(world.url);
    const url = new URL(pending.callbackUrl);
    url.searchParams.append(name, url.searchParams.get(name) as string);
    await expectLoginFailed(await callback(url.href, pending.gatewayCookieHeader));
  });

  it('refuses a wrong iss parameter (RFC 9207 mix-up defence)', async () => {
    const pending = await loginUpToCallback(world.url);
    const url = new URL(pending.callbackUrl);
    expect(url.searchParams.get('iss')).toBe(world.idp.issuer);
    url.searchParams.set('iss', 'https://evil.example');
    await expectLoginFailed(await callback(url.href, pending.gatewayCookieHeader));
  });

  it('an IdP error=access_denied for a known transaction goes back to returnTo with error=, no session', async () => {
    const jar = new CookieJar();
    const start = await fetchWithJar(`${world.url}/auth/login?returnTo=${encodeURIComponent('/orders?page=2#list')}`, jar);
    const state = new URL(start.headers.get('location') ?? '').searchParams.get('state') as string;
    const url = new URL(`${world.url}/auth/callback`);
    url.search = new URLSearchParams({
      error: 'access_denied',
      error_description: 'The user said no',
      state,
      iss: world.idp.issuer,
    }).toString();
    const res = await callback(url.href, jar.header(world.url));
    expect(res.status).toBe(302);
    // The IdP's free-text description never reaches the app's URL.
    expect(res.headers.get('location')).toBe(`${world.url}/orders?page=2&error=access_denied#list`);
    expect(setsSession(res)).toBe(false);
    expect(cookieLines(res, LOGIN).every((line) => isClearingCookie(line))).toBe(true);
    // The state is used up: the same answer again is a plain 400.
    await expectLoginFailed(await callback(url.href, jar.header(world.url)));
  });

  it('an error code outside the token charset comes back as unknown_error', async () => {
    const jar = new CookieJar();
    const start = await fetchWithJar(`${world.url}/auth/login?returnTo=/x`, jar);
    const state = new URL(start.headers.get('location') ?? '').searchParams.get('state') as string;
    const url = new URL(`${world.url}/auth/callback`);
    url.search = new URLSearchParams({ error: 'x"><script>alert(1)</script>', state }).toString();
    const res = await callback(url.href, jar.header(world.url));
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe(`${world.url}/x?error=unknown_error`);
  });

  it('an IdP error= without a known transaction stays 400 login_failed', async () => {
    const url = `${world.url}/auth/callback?error=access_denied&state=unknown-state-0123456789`;
    await expectLoginFailed(await callback(url, ''));
  });

  it('the real IdP refusing a prompt=none login (login_required) lands on returnTo with error=login_required', async () => {
    const pending = await loginUpToCallback(promptNone.url, { returnTo: '/app' });
    expect(new URL(pending.callbackUrl).searchParams.get('error')).toBe('login_required');
    const res = await callback(pending.callbackUrl, pending.gatewayCookieHeader);
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe(`${promptNone.url}/app?error=login_required`);
    expect(setsSession(res)).toBe(false);
  });

  it('an IdP that cannot be reached at the code exchange is still 400 login_failed, saying so', async () => {
    const pending = await loginUpToCallback(world.url);
    world.idp.faults.token = 'http503';
    try {
      const body = await expectLoginFailed(await callback(pending.callbackUrl, pending.gatewayCookieHeader));
      expect(body.message).toMatch(/could not be reached/);
    } finally {
      world.idp.faults.token = 'none';
    }
  });

  it('clears the login cookie even when the callback fails', async () => {
    const pending = await loginUpToCallback(world.url);
    const forged = new URL(pending.callbackUrl);
    forged.searchParams.set('state', 'another-forged-state-0123456789');
    const res = await callback(forged.href, pending.gatewayCookieHeader);
    expect(res.status).toBe(400);
    // Exactly one deletion of the login cookie, and no session cookie.
    const loginLines = cookieLines(res, LOGIN);
    expect(loginLines).toHaveLength(1);
    expect(isClearingCookie(loginLines[0] as string)).toBe(true);
    expect(cookieLines(res, SESSION)).toEqual([]);
  });
});
