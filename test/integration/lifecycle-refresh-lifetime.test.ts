/**
 * A session cannot outlive the IdP's refresh-token lifetime: when the token response says
 * `refresh_expires_in` (Keycloak does; oidc-provider does not, so the embedded IdP's token
 * responses are rewritten to carry it), that caps the absolute timeout.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { withRefreshExpiresIn } from '../support/idp-rewrite.ts';
import { loginAt, recordOf, storedTtl } from '../support/session-probe.ts';
import { apiHeaders, startWorld, type RunningGateway, type World } from '../support/world.ts';

const IDLE_MS = 60_000;
const REFRESH_LIFETIME_S = 90;

let world: World;
let gateway: RunningGateway;
let offset = 0;
const clock = () => Date.now() + offset;

beforeAll(async () => {
  world = await startWorld({ store: 'redis', config: { session: { idleTimeout: '60s', absoluteTimeout: '150s' } } });
  withRefreshExpiresIn(world.idp, REFRESH_LIFETIME_S);
  gateway = await world.startGateway({ now: clock });
});
afterAll(() => world?.close());

test('refresh_expires_in caps the session: expiresAt, store TTL and the end follow the refresh token', async () => {
  const cookie = await loginAt(world, gateway);
  const record = (await recordOf(gateway, cookie))!;
  const refreshDeadline = record.createdAt + REFRESH_LIFETIME_S * 1000;
  expect(record.absoluteExpiresAt).toBe(refreshDeadline);

  const user = (await (await fetch(`${gateway.url}/auth/user`, { headers: apiHeaders(cookie) })).json()) as {
    session: { expiresAt: string };
  };
  expect(user.session.expiresAt).toBe(new Date(refreshDeadline).toISOString());

  // Kept busy within the idle window, the session still ends with the refresh token.
  offset = 40_000;
  expect((await fetch(`${gateway.url}/api/echo`, { headers: apiHeaders(cookie) })).status).toBe(200);
  offset = 80_000;
  expect((await fetch(`${gateway.url}/api/echo`, { headers: apiHeaders(cookie) })).status).toBe(200);
  const ttl = await storedTtl(world.redis!, cookie);
  expect(ttl).toBeLessThanOrEqual(REFRESH_LIFETIME_S * 1000 - 80_000);
  expect(ttl).toBeLessThan(IDLE_MS);

  offset = REFRESH_LIFETIME_S * 1000 + 1_000;
  const after = await fetch(`${gateway.url}/auth/user`, { headers: apiHeaders(cookie) });
  expect(after.status).toBe(401);
  expect(await storedTtl(world.redis!, cookie)).toBe(-2);
});
