/**
 * Pending logins in the sealed login cookie (docs/http-interface.md#get-authcallback, #cookies): several tabs of one
 * browser may log in at once, each transaction lives 10 minutes, at most 5 are kept (newest).
 *
 * What two tabs really get: every callback deletes the login cookie (docs/http-interface.md#cookies), so
 * once one tab's callback has completed, a later callback from the other tab arrives without
 * the cookie and fails — but the browser is already logged in by then, with the session of the
 * callback that completed first, which is the documented reading. Callbacks that are in flight
 * together (both sent while the cookie still existed) both complete, whatever their order,
 * because starting the second login kept the first transaction.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CookieJar, fetchWithJar, isClearingCookie } from '../support/login.ts';
import { apiHeaders, startWorld, type RunningGateway, type World } from '../support/world.ts';

let world: World;
let skewed: RunningGateway;
let skewMs = 0;

beforeAll(async () => {
  world = await startWorld();
  skewed = await world.startGateway({ now: () => Date.now() + skewMs });
});
afterAll(async () => {
  await world?.close();
});

/** Starts a login in the browser `jar`; resolves with the IdP authorization URL. */
async function startLogin(gatewayUrl: string, jar: CookieJar): Promise<URL> {
  const res = await fetchWithJar(`${gatewayUrl}/auth/login`, jar);
  expect(res.status).toBe(302);
  return new URL(res.headers.get('location') as string);
}

/** Signs in at the IdP and resolves with the callback it redirects to, aimed at `gatewayUrl`. */
async function throughIdp(authorizationUrl: URL, idpJar: CookieJar, gatewayUrl: string): Promise<URL> {
  let url = authorizationUrl;
  for (let hop = 0; hop < 20; hop++) {
    const res = await fetchWithJar(url, idpJar);
    await res.body?.cancel();
    const next = new URL(res.headers.get('location') ?? '', url);
    if (next.pathname === '/auth/callback') return new URL(`${next.pathname}${next.search}`, gatewayUrl);
    if (next.pathname.startsWith('/interaction/') && !next.searchParams.has('login')) {
      next.searchParams.set('login', 'alice');
      next.searchParams.set('password', 'demo');
    }
    url = next;
  }
  throw new Error('the IdP never redirected back to the callback');
}

async function callback(url: URL, cookieHeader: string): Promise<{ status: number; session?: string }> {
  const res = await fetch(url, { redirect: 'manual', headers: { cookie: cookieHeader } });
  await res.body?.cancel();
  const line = res.headers.getSetCookie().find((l) => l.startsWith('bff-session=') && !isClearingCookie(l));
  return line ? { status: res.status, session: line.split(';')[0] as string } : { status: res.status };
}

async function userStatus(gatewayUrl: string, session: string | undefined): Promise<number> {
  const res = await fetch(`${gatewayUrl}/auth/user`, { headers: apiHeaders(session ?? '') });
  await res.body?.cancel();
  return res.status;
}

describe('two tabs logging in at once', () => {
  it('the first-started login still completes after a second one started (both transactions kept)', async () => {
    const browser = new CookieJar();
    const idp = new CookieJar();
    const tabA = await throughIdp(await startLogin(world.url, browser), idp, world.url);
    const tabB = await throughIdp(await startLogin(world.url, browser), idp, world.url);
    const a = await callback(tabA, browser.header(world.url));
    expect(a.status).toBe(302);
    expect(await userStatus(world.url, a.session)).toBe(200);
    expect(tabB.searchParams.get('state')).not.toBe(tabA.searchParams.get('state'));
  });

  it('reverse order: the second tab completes first; the first tab, now without the login cookie, fails; the first session stays valid', async () => {
    const browser = new CookieJar();
    const idp = new CookieJar();
    const tabA = await throughIdp(await startLogin(world.url, browser), idp, world.url);
    const tabB = await throughIdp(await startLogin(world.url, browser), idp, world.url);
    const b = await fetchWithJar(tabB, browser);
    await b.body?.cancel();
    expect(b.status).toBe(302);
    const session = browser.get(world.url, 'bff-session') as string;
    expect(browser.get(world.url, 'bff-login')).toBeUndefined();
    const a = await fetchWithJar(tabA, browser);
    expect(a.status).toBe(400);
    expect(((await a.json()) as { error: string }).error).toBe('login_failed');
    expect(await userStatus(world.url, `bff-session=${session}`)).toBe(200);
  });

  it('callbacks in flight together both complete, in reverse order', async () => {
    const browser = new CookieJar();
    const idp = new CookieJar();
    const tabA = await throughIdp(await startLogin(world.url, browser), idp, world.url);
    const tabB = await throughIdp(await startLogin(world.url, browser), idp, world.url);
    // Both requests left the browser while the login cookie still existed.
    const cookie = browser.header(world.url);
    const b = await callback(tabB, cookie);
    const a = await callback(tabA, cookie);
    expect([a.status, b.status]).toEqual([302, 302]);
    expect(await userStatus(world.url, b.session)).toBe(200);
    expect(await userStatus(world.url, a.session)).toBe(200);
  });
});

describe('limits', () => {
  it('a transaction older than 10 minutes is refused; one of 9 minutes completes', async () => {
    const idp = new CookieJar();
    skewMs = 0;
    const fresh = new CookieJar();
    const freshCallback = await throughIdp(await startLogin(skewed.url, fresh), idp, skewed.url);
    const stale = new CookieJar();
    const staleCallback = await throughIdp(await startLogin(skewed.url, stale), idp, skewed.url);

    skewMs = 9 * 60_000;
    expect((await callback(freshCallback, fresh.header(skewed.url))).status).toBe(302);
    skewMs = 10 * 60_000 + 1_000;
    const res = await fetch(staleCallback, { redirect: 'manual', headers: { cookie: stale.header(skewed.url) } });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe('login_failed');
    skewMs = 0;
  });

  it('more than 5 pending logins keep only the newest 5', async () => {
    const browser = new CookieJar();
    const idp = new CookieJar();
    const authorizations: URL[] = [];
    for (let i = 0; i < 6; i++) authorizations.push(await startLogin(world.url, browser));
    const cookie = browser.header(world.url);
    const oldest = await throughIdp(authorizations[0] as URL, idp, world.url);
    const oldestKept = await throughIdp(authorizations[1] as URL, idp, world.url);
    const newest = await throughIdp(authorizations[5] as URL, idp, world.url);

    expect((await callback(oldest, cookie)).status).toBe(400);
    expect((await callback(oldestKept, cookie)).status).toBe(302);
    expect((await callback(newest, cookie)).status).toBe(302);
  });
});
