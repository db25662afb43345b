/**
 * Logs never carry secrets (contract section 1): every line the gateway writes (debug level)
 * during a full login, /auth/user, API calls with token refreshes, and logout is searched for
 * the real values — tokens from the IdP's token responses, the authorization code, the client
 * secret, the session cookie and the session id.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startWorldBehindFront, type HostileIdp } from '../support/hostile-idp.ts';
import { completeCallback, loginUpToCallback } from '../support/login.ts';
import { apiHeaders, CLIENT_SECRET, SESSION_KEY, SESSION_SECRET, type World } from '../support/world.ts';

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
  const logout = await fetch(logoutUrl, { headers: { cookie: session.cookieHeader }, redirect: 'manual' });
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
