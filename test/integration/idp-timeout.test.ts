/**
 * `oidc.timeout` bounds every IdP call, sub-second values included (docs/configuration.md): with
 * a 500 ms timeout and an IdP that answers the token endpoint after 800 ms, the refresh gives up
 * — the request goes upstream with the still-valid current token and the session is kept.
 * (Rounded up to whole seconds, the refresh would have waited and succeeded.)
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { login } from '../support/login.ts';
import { apiHeaders, startWorld, type World } from '../support/world.ts';

let world: World;
beforeAll(async () => {
  // Every call is inside the refresh window (the token lives 300 s), so every call refreshes.
  world = await startWorld({ config: { oidc: { timeout: '500ms' }, tokens: { refreshBeforeExpiry: '400s' } } });
});
afterAll(() => world?.close());

test('a refresh slower than a sub-second oidc.timeout is abandoned; the current token is used', async () => {
  const session = await login(world.url);
  const first = await fetch(`${world.url}/api/echo?n=1`, { headers: apiHeaders(session.cookieHeader) });
  expect(first.status).toBe(200);
  const current = world.upstream.requests.at(-1)?.headers.authorization;

  world.idp.faults.token = 'slow';
  world.idp.faults.tokenDelayMs = 800;
  try {
    const refreshes = world.idp.counters.refreshGrants;
    const slow = await fetch(`${world.url}/api/echo?n=2`, { headers: apiHeaders(session.cookieHeader) });
    expect(slow.status).toBe(200);
    expect(world.idp.counters.refreshGrants).toBe(refreshes + 1);
    expect(world.upstream.requests.at(-1)?.headers.authorization).toBe(current);
  } finally {
    world.idp.faults.token = 'none';
    world.idp.faults.tokenDelayMs = 0;
  }
  const user = await fetch(`${world.url}/auth/user`, { headers: apiHeaders(session.cookieHeader) });
  expect(user.status).toBe(200);
});
