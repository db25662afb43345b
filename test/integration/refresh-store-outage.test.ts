/**
 * A store outage between the IdP's refresh answer and the write of the new tokens (the soak
 * run's lost sessions; src/refresh/pending-writes.ts). The IdP rotates refresh tokens and
 * revokes the grant when a rotated-out one comes back, so dropping the answer logs the user
 * out at the next refresh. Here Redis refuses writes (CLIENT PAUSE WRITE, longer than the
 * store's command timeout) from the moment the IdP has answered until shortly after: the
 * refreshed record must be used at once, stored once Redis takes writes again, and the next
 * refresh must present the new refresh token and succeed.
 */
import { afterAll, beforeAll, expect, test, vi } from 'vitest';
import { startWorldBehindFront } from '../support/hostile-idp.ts';
import type { HostileIdp } from '../support/hostile-idp.ts';
import { login } from '../support/login.ts';
import { redisCommand } from '../support/redis.ts';
import { apiHeaders, type RunningGateway, type World } from '../support/world.ts';

/** Puts the 300 s access token inside the 30 s refresh window. */
const STEP_MS = 280_000;
const PAUSE_MS = 1_500;

let world: World;
let front: HostileIdp;
let gateway: RunningGateway;
let offset = 0;

beforeAll(async () => {
  ({ world, front } = await startWorldBehindFront({ store: 'redis', config: { session: { redis: { commandTimeout: '200ms' } } } }));
  gateway = await world.startGateway({ now: () => Date.now() + offset });
});
afterAll(() => world?.close());

async function call(cookieHeader: string): Promise<{ status: number; bearer: string | undefined }> {
  const before = world.upstream.requests.length;
  const res = await fetch(`${gateway.url}/api/outage`, { headers: apiHeaders(cookieHeader) });
  await res.body?.cancel();
  const seen = world.upstream.requests.slice(before).at(-1);
  return { status: res.status, bearer: seen?.headers.authorization?.replace(/^Bearer /, '') };
}

test('a refresh answered while Redis refuses writes keeps its rotated refresh token: the next refresh succeeds', async () => {
  const session = await login(world.url);
  const port = world.redis?.port as number;
  const grantsBefore = world.idp.counters.refreshGrants;

  let paused = false;
  front.rewriteTokenResponse = async (body) => {
    if (body.refresh_token && !paused) {
      paused = true;
      // Redis stops taking writes before the gateway sees the answer.
      expect(await redisCommand(port, `CLIENT PAUSE ${PAUSE_MS} WRITE`)).toMatch(/^\+OK/);
    }
    return body;
  };
  offset += STEP_MS;
  const during = await call(session.cookieHeader);
  front.rewriteTokenResponse = undefined;
  expect(paused).toBe(true);
  expect(world.idp.counters.refreshGrants - grantsBefore).toBe(1);
  const refreshed = front.tokenResponses.at(-1)?.access_token;
  // The request that refreshed goes on with the new token although it could not be stored.
  expect(during).toEqual({ status: 200, bearer: refreshed });

  // The deferred write lands once Redis takes writes again.
  await vi.waitFor(() => expect(gateway.logs.some((line) => line.includes('"refresh_stored_late"'))).toBe(true), {
    timeout: 10_000,
    interval: 50,
  });

  offset += STEP_MS;
  const after = await call(session.cookieHeader);
  expect(world.idp.counters.refreshGrants - grantsBefore).toBe(2);
  expect(after).toEqual({ status: 200, bearer: front.tokenResponses.at(-1)?.access_token });
  expect(after.bearer).not.toBe(refreshed);
  expect(gateway.logs.some((line) => line.includes('"refresh_rejected"'))).toBe(false);
  // The failed writes are counted for the store-error alert.
  const errors = await gateway.gateway.services.metrics.storeErrors.get();
  expect(errors.values.find((v) => v.labels.op === 'write')?.value).toBeGreaterThan(0);
}, 30_000);
