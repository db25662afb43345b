/**
 * Logs never carry secrets (docs/http-interface.md#running-it): every line the gateway writes (debug level)
 * during a full login, /auth/user, API calls with token refreshes, and logout is searched for
 * the real values — tokens from the IdP's token responses, the authorization code, the client
 * secret, the session cookie and the session id.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startWorldBehindFront, type HostileIdp } from '../support/hostile-idp.ts';
import { completeCallback, login, loginUpToCallback } from '../support/login.ts';
import { hmacLogoutToken } from '../support/logout-tokens.ts';
import { navigate } from '../support/raw-http.ts';
import { apiHeaders, CLIENT_ID, CLIENT_SECRET, SESSION_KEY, SESSION_SECRET, type World } from '../support/world.ts';

let world: World;
let front: HostileIdp;

beforeAll(async () => {
  ({ world, front } = await startWorldBehindFront({
    // Every API call refreshes: rotated tokens must stay out of the logs too.
    config: { tokens: { refreshBeforeExpiry: '10m' } },
  }));
});
afterAll(async () => {
  await world?.close();
});

it('no log line contains a token, the code, the client secret, the cookie or the session id', async () => {
  const pending = await loginUpToCallback(world.url, { returnTo: '/app' });
  const callback = new URL(pending.callbackUrl);
  const code = callback.searchParams.get('code') as string;
  const state = callback.searchParams.get('state') as string;
  const session = await completeCallback(pending.callbackUrl, pending.jar);
  const cookieValue = session.cookie.slice(session.cookie.indexOf('=') + 1);
  const sessionId = cookieValue.split('.')[0] as string;

  const user = await fetch(`${world.url}/auth/user`, { headers: apiHeaders(session.cookieHeader) });
  expect(user.status).toBe(200);
  const { logoutUrl } = (await user.json()) as { logoutUrl: string };
  for (let i = 0; i < 2; i++) {
    const api = await fetch(`${world.url}/api/echo?call=${i}`, { headers: apiHeaders(session.cookieHeader) });
    expect(api.status).toBe(200);
    await api.text();
  }
  expect(world.idp.counters.refreshGrants).toBeGreaterThanOrEqual(2);
  const logout = await navigate(logoutUrl, { cookie: session.cookieHeader });
  expect(logout.status).toBe(302);
  await logout.body?.cancel();
  // The IdP's end-session redirect carries the ID token: a request log of it would leak.
  expect(logout.headers.get('location')).toContain('id_token_hint=');

  const secrets = new Map<string, string>([
    ['authorization code', code],
    ['state', state],
    ['client secret', CLIENT_SECRET],
    ['cookie secret', SESSION_SECRET],
    ['encryption key', SESSION_KEY],
    ['session cookie', cookieValue],
    ['session id', sessionId],
    ['logout sid', new URL(logoutUrl).searchParams.get('sid') as string],
  ]);
  front.tokenResponses.forEach((response, index) => {
    for (const name of ['access_token', 'refresh_token', 'id_token']) {
      const value = response[name];
      if (typeof value === 'string') {
        secrets.set(`${name} #${index}`, value);
        // A JWT's signature alone is enough to identify (and with the rest, replay) a token.
        if (value.split('.').length === 3) secrets.set(`${name} #${index} signature`, value.split('.')[2] as string);
      }
    }
  });
  expect(front.tokenResponses.length).toBeGreaterThanOrEqual(3);
  expect([...secrets.keys()].filter((name) => name.startsWith('refresh_token')).length).toBeGreaterThanOrEqual(3);

  const logs = world.gateway.logs;
  // The capture works: the flow's requests are all in it.
  for (const path of ['/auth/login', '/auth/callback', '/auth/user', '/api/echo', '/auth/logout']) {
    expect(logs.some((line) => line.includes(`"url":"${path}`))).toBe(true);
  }
  const leaks = [...secrets].flatMap(([name, value]) => logs.filter((line) => line.includes(value)).map((line) => `${name}: ${line}`));
  expect(leaks).toEqual([]);
});

it('failure paths log no secret either: refused callbacks, refused and failing refreshes, forged logout tokens, tampered cookies', async () => {
  const secrets = new Map<string, string>([['client secret', CLIENT_SECRET]]);
  const before = world.gateway.logs.length;

  // A forged state, then a genuine state with a code the IdP refuses.
  const forged = await loginUpToCallback(world.url);
  const forgedUrl = new URL(forged.callbackUrl);
  secrets.set('code (forged state)', forgedUrl.searchParams.get('code') as string);
  forgedUrl.searchParams.set('state', 'forged-state-0123456789abcdefghij');
  expect((await fetch(forgedUrl, { redirect: 'manual', headers: { cookie: forged.gatewayCookieHeader } })).status).toBe(400);
  const refused = await loginUpToCallback(world.url);
  const refusedUrl = new URL(refused.callbackUrl);
  secrets.set('state (refused code)', refusedUrl.searchParams.get('state') as string);
  refusedUrl.searchParams.set('code', `${refusedUrl.searchParams.get('code')}-tampered`);
  secrets.set('tampered code', refusedUrl.searchParams.get('code') as string);
  expect((await fetch(refusedUrl, { redirect: 'manual', headers: { cookie: refused.gatewayCookieHeader } })).status).toBe(400);

  // A refresh the IdP refuses (session ended), and one it cannot answer (session kept).
  const responsesBefore = front.tokenResponses.length;
  const ended = await login(world.url);
  const kept = await login(world.url);
  for (const session of [ended, kept])
    secrets.set(`cookie ${session.cookie.slice(0, 12)}`, session.cookie.slice(session.cookie.indexOf('=') + 1));
  world.idp.faults.token = 'invalid_grant';
  expect((await fetch(`${world.url}/api/echo`, { headers: apiHeaders(ended.cookieHeader) })).status).toBe(401);
  world.idp.faults.token = 'http503';
  expect((await fetch(`${world.url}/api/echo`, { headers: apiHeaders(kept.cookieHeader) })).status).toBe(200);
  world.idp.faults.token = 'none';
  front.tokenResponses.slice(responsesBefore).forEach((response, index) => {
    for (const name of ['access_token', 'refresh_token', 'id_token']) {
      if (typeof response[name] === 'string') secrets.set(`${name} #${index}`, response[name] as string);
    }
  });

  // A forged logout token (HMAC with the client secret) and a tampered session cookie.
  const forgedToken = await hmacLogoutToken(world.idp, CLIENT_ID, CLIENT_SECRET, { sub: 'alice' });
  secrets.set('forged logout token', forgedToken);
  const bcl = await fetch(`${world.url}/auth/backchannel-logout`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: `logout_token=${forgedToken}`,
  });
  expect(bcl.status).toBe(400);
  const tampered = `${kept.cookie.slice(kept.cookie.indexOf('=') + 1)}x`;
  expect((await fetch(`${world.url}/api/echo`, { headers: apiHeaders(`bff-session=${tampered}`) })).status).toBe(401);
  secrets.set('tampered cookie', tampered);

  const logs = world.gateway.logs.slice(before);
  // The failures were logged (so the search below searched something).
  expect(logs.some((line) => line.includes('refresh_rejected'))).toBe(true);
  expect(logs.some((line) => line.includes('refresh_unavailable'))).toBe(true);
  expect(logs.some((line) => line.includes('"code":"login_failed"'))).toBe(true);
  expect(logs.some((line) => line.includes('"code":"invalid_request"'))).toBe(true);
  const leaks = [...secrets].flatMap(([name, value]) => logs.filter((line) => line.includes(value)).map((line) => `${name}: ${line}`));
  expect(leaks).toEqual([]);
});
