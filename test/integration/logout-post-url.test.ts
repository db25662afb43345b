/**
 * POST /auth/logout answers JSON that page script reads, so it must carry no token: its
 * `logoutUrl` is a gateway URL with a random one-time handle. Only a top-level navigation to
 * that URL is redirected on to the IdP's end-session endpoint with the ID token hint; the
 * handle works once, and an unknown or used handle still lands the browser on
 * postLogoutRedirect (no dead end). The record behind the handle is sealed in the shared
 * store (Redis here), so a dump of it shows no ID token either.
 */
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { login } from '../support/login.ts';
import { recordOf } from '../support/session-probe.ts';
import { Redis } from 'ioredis';
import { CLIENT_ID, apiHeaders, startWorld, type World } from '../support/world.ts';

let world: World;
beforeAll(async () => {
  world = await startWorld({ store: 'redis' });
});
afterAll(() => world?.close());

const JWT = /eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/;
const NAVIGATION = { 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document', 'sec-fetch-site': 'same-origin' };

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/**
 * A GET with exactly these headers. fetch() cannot stand in for a browser navigation here: it
 * sets its own Sec-Fetch-Mode.
 */
function get(url: string, headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function loggedIn() {
  const { cookieHeader: cookie } = await login(world.url);
  const record = (await recordOf(world.gateway, cookie))!;
  expect(record.tokens.idToken).toMatch(JWT);
  return { cookie, tokens: record.tokens };
}

async function postLogout(cookie: string) {
  const res = await fetch(`${world.url}/auth/logout`, { method: 'POST', headers: apiHeaders(cookie) });
  const text = await res.text();
  return { res, text };
}

function tokensIn(text: string, tokens: { accessToken: string; refreshToken?: string; idToken?: string }): string[] {
  return [tokens.accessToken, tokens.refreshToken, tokens.idToken].filter((t): t is string => !!t && text.includes(t));
}

test('the POST answer (body and every header) carries no token; logoutUrl is a one-time gateway URL', async () => {
  const alice = await loggedIn();
  const { res, text } = await postLogout(alice.cookie);
  expect(res.status).toBe(200);
  expect(res.headers.get('cache-control')).toBe('no-store');

  expect(text).not.toMatch(JWT);
  expect(tokensIn(text, alice.tokens)).toEqual([]);
  for (const [name, value] of res.headers) {
    expect(value, name).not.toMatch(JWT);
    expect(tokensIn(value, alice.tokens), name).toEqual([]);
  }

  const body = JSON.parse(text) as { logoutUrl: string };
  expect(Object.keys(body)).toEqual(['logoutUrl']);
  const url = new URL(body.logoutUrl);
  expect(`${url.origin}${url.pathname}`).toBe(`${world.url}/auth/logout/continue`);
  expect([...url.searchParams.keys()]).toEqual(['handoff']);
  expect(url.searchParams.get('handoff')).toMatch(/^[A-Za-z0-9_-]{43}$/);

  // Same effects as before: session ended, cookie cleared.
  expect((await fetch(`${world.url}/auth/user`, { headers: apiHeaders(alice.cookie) })).status).toBe(401);
  expect(res.headers.getSetCookie().some((line) => line.startsWith(`${world.gateway.gateway.services.cookie.name}=;`))).toBe(true);
});

test('the continue URL redirects a top-level navigation to the IdP with the hint, once', async () => {
  const alice = await loggedIn();
  const { logoutUrl } = JSON.parse((await postLogout(alice.cookie)).text) as { logoutUrl: string };

  const first = await get(logoutUrl, NAVIGATION);
  expect(first.status).toBe(302);
  expect(first.headers['cache-control']).toBe('no-store');
  expect(first.headers['referrer-policy']).toBe('no-referrer');
  const target = new URL(first.headers.location as string);
  expect(`${target.origin}${target.pathname}`).toBe(world.gateway.gateway.services.idp.metadata.end_session_endpoint);
  expect(target.searchParams.get('id_token_hint')).toBe(alice.tokens.idToken);
  expect(target.searchParams.get('client_id')).toBe(CLIENT_ID);
  expect(target.searchParams.get('post_logout_redirect_uri')).toBe(`${world.url}/`);
  // The IdP accepts the redirect as built.
  const page = await fetch(target, { redirect: 'manual' });
  expect(page.status).toBe(200);
  expect(await page.text()).toContain('/session/end/confirm');

  // The handle is as good as the hint for its two minutes: the access log masks it.
  const handle = new URL(logoutUrl).searchParams.get('handoff')!;
  expect(world.gateway.logs.some((line) => line.includes('/auth/logout/continue?handoff=[redacted]'))).toBe(true);
  expect(world.gateway.logs.some((line) => line.includes(handle))).toBe(false);

  const second = await get(logoutUrl, NAVIGATION);
  expect(second.status).toBe(302);
  expect(second.headers.location).toBe(`${world.url}/`);
  expect(second.text).not.toMatch(JWT);
});

test('a request that is not a top-level navigation is refused and does not use up the handle', async () => {
  const alice = await loggedIn();
  const { logoutUrl } = JSON.parse((await postLogout(alice.cookie)).text) as { logoutUrl: string };

  // What a script would do to read where the redirect goes.
  for (const headers of [
    { 'sec-fetch-mode': 'cors', 'sec-fetch-dest': 'empty', 'sec-fetch-site': 'same-origin' },
    { 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'iframe', 'sec-fetch-site': 'same-origin' },
  ]) {
    const res = await get(logoutUrl, headers);
    expect(res.status).toBe(400);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers.location).toBeUndefined();
    expect(res.text).not.toMatch(JWT);
    expect(JSON.parse(res.text)).toMatchObject({ error: 'invalid_request' });
  }

  const navigation = await get(logoutUrl, NAVIGATION);
  expect(navigation.status).toBe(302);
  expect(new URL(navigation.headers.location as string).searchParams.get('id_token_hint')).toBe(alice.tokens.idToken);
});

test('unknown, malformed, missing or duplicated handles go to postLogoutRedirect', async () => {
  const base = `${world.url}/auth/logout/continue`;
  for (const url of [`${base}?handoff=${'A'.repeat(43)}`, `${base}?handoff=short`, base, `${base}?handoff=a&handoff=b`]) {
    const res = await get(url, NAVIGATION);
    expect(res.status, url).toBe(302);
    expect(res.headers.location, url).toBe(`${world.url}/`);
  }
});

test('POST without a session: logoutUrl is postLogoutRedirect, nothing is stored', async () => {
  const res = await fetch(`${world.url}/auth/logout`, { method: 'POST', headers: { 'x-csrf': '1' } });
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual({ logoutUrl: `${world.url}/` });
});

test('the stored hand-off record shows no ID token in a Redis dump', async () => {
  const alice = await loggedIn();
  const { logoutUrl } = JSON.parse((await postLogout(alice.cookie)).text) as { logoutUrl: string };
  const redis = new Redis(world.redis!.url);
  const keys = await redis.keys('*');
  let values = '';
  for (const key of keys) if ((await redis.type(key)) === 'string') values += (await redis.get(key)) ?? '';
  redis.disconnect();
  expect(values.length).toBeGreaterThan(0);
  expect(values).not.toMatch(JWT);
  expect(values).not.toContain(alice.tokens.idToken!.split('.')[2]!);
  // And the handle itself is not the store key.
  expect(keys.join('\n')).not.toContain(new URL(logoutUrl).searchParams.get('handoff')!);
});
