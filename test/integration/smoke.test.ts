import { afterAll, beforeAll, expect, test } from 'vitest';
import { login } from '../support/login.ts';
import { apiHeaders, startWorld, type World } from '../support/world.ts';

let world: World;
beforeAll(async () => {
  world = await startWorld();
});
afterAll(() => world?.close());

test('smoke: login and API call', async () => {
  const session = await login(world.url, { returnTo: '/app' });
  console.log(session.setCookie, session.location);
  const user = await fetch(`${world.url}/auth/user`, { headers: apiHeaders(session.cookieHeader) });
  console.log(user.status, await user.text());
  const api = await fetch(`${world.url}/api/echo?x=1`, { headers: apiHeaders(session.cookieHeader) });
  const body = await api.json();
  console.log(api.status, JSON.stringify(body).slice(0, 600));
  expect(api.status).toBe(200);
  console.log(world.gateway.logs.slice(-5).join('\n'));
});
