/**
 * Single-flight refresh (docs/http-interface.md#tokens-and-refresh) in one instance: a burst of concurrent requests of one session on an
 * expiring token costs exactly one refresh_token grant, every request is answered, and every
 * request reaches the upstream with the NEW token. The gateway's clock is moved forward so the
 * token is inside the refresh window without sleeping (the IdP and upstream keep real time).
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { login } from '../support/login.ts';
import { apiHeaders, startWorld, type RunningGateway, type World } from '../support/world.ts';
import { bearerOf } from '../support/upstream.ts';

const BURST = 100;
// Tokens live 300 s; 280 s later they expire within the default 30 s refresh window.
const SKEW_MS = 280_000;

let world: World;
let skewed: RunningGateway;

beforeAll(async () => {
  world = await startWorld({ store: 'redis' });
  // The burst is one client: room for all of it at once, or a slow refresh (a loaded machine)
  // would leave more than the default 64 in flight and the rest would get 429 too_many_requests.
  skewed = await world.startGateway({ now: () => Date.now() + SKEW_MS }, { limits: { perClientRequests: BURST } });
});
afterAll(() => world?.close());

async function currentToken(cookieHeader: string, marker: string): Promise<string> {
  const res = await fetch(`${world.url}/api/echo?probe=${marker}`, { headers: apiHeaders(cookieHeader) });
  expect(res.status).toBe(200);
  await res.body?.cancel();
  const seen = world.upstream.requests.find((r) => r.url === `/api/echo?probe=${marker}`);
  return bearerOf(seen?.headers ?? {});
}

test(`${BURST} concurrent requests on an expiring token: one refresh grant, all 200, all with the new token`, async () => {
  const session = await login(world.url);
  const before = await currentToken(session.cookieHeader, 'before');
  expect(before).not.toBe('');
  const grantsBefore = world.idp.counters.refreshGrants;

  const responses = await Promise.all(
    Array.from({ length: BURST }, (_, i) => fetch(`${skewed.url}/api/echo?burst=${i}`, { headers: apiHeaders(session.cookieHeader) })),
  );
  const statuses = await Promise.all(responses.map(async (res) => (await res.body?.cancel(), res.status)));
  expect(statuses).toEqual(Array(BURST).fill(200));
  expect(world.idp.counters.refreshGrants - grantsBefore).toBe(1);

  const seen = world.upstream.requests.filter((r) => r.url.startsWith('/api/echo?burst='));
  expect(seen).toHaveLength(BURST);
  const tokens = new Set(seen.map((r) => bearerOf(r.headers)));
  expect(tokens.size).toBe(1);
  expect(tokens.has(before)).toBe(false);
  expect(seen.every((r) => r.auth?.ok === true)).toBe(true);

  // Metrics: one success, the other callers were coalesced onto it, and the grant was timed.
  const metrics = skewed.gateway.services.metrics;
  const refreshes = await metrics.tokenRefresh.get();
  const count = (result: string) => refreshes.values.find((v) => v.labels.result === result)?.value ?? 0;
  expect(count('success')).toBe(1);
  expect(count('coalesced')).toBeGreaterThanOrEqual(1);
  expect(count('invalid_grant')).toBe(0);
  expect(count('error')).toBe(0);
  const duration = await metrics.refreshDuration.get();
  expect(duration.values.find((v) => v.metricName === 'bff_token_refresh_duration_seconds_count')?.value).toBe(1);

  // The rotated token was stored: the next request needs no refresh and uses it.
  const after = await currentToken(session.cookieHeader, 'after');
  expect(tokens.has(after)).toBe(true);
  expect(world.idp.counters.refreshGrants - grantsBefore).toBe(1);
});

test('the refreshed tokens are stored: later requests reuse them and the next refresh presents the rotated refresh token', async () => {
  const session = await login(world.url);
  const grants = world.idp.tokenRequests.length;
  const first = await fetch(`${skewed.url}/api/echo?rotate=1`, { headers: apiHeaders(session.cookieHeader) });
  expect(first.status).toBe(200);
  await first.body?.cancel();
  const second = await fetch(`${skewed.url}/api/echo?rotate=2`, { headers: apiHeaders(session.cookieHeader) });
  expect(second.status).toBe(200);
  await second.body?.cancel();
  // Two requests, one grant: the second found the stored, rotated result.
  const refreshRequests = world.idp.tokenRequests.slice(grants).filter((r) => r.grantType === 'refresh_token');
  expect(refreshRequests).toHaveLength(1);
  // The IdP rotated the refresh token; pushing the clock on once more must present the NEW one.
  const further = await world.startGateway({ now: () => Date.now() + 2 * SKEW_MS });
  const third = await fetch(`${further.url}/api/echo?rotate=3`, { headers: apiHeaders(session.cookieHeader) });
  expect(third.status).toBe(200);
  await third.body?.cancel();
  const presented = world.idp.tokenRequests
    .slice(grants)
    .filter((r) => r.grantType === 'refresh_token')
    .map((r) => r.params.refresh_token);
  expect(presented).toHaveLength(2);
  expect(new Set(presented).size).toBe(2);
});
