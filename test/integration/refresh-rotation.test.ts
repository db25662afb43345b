/**
 * Refresh-token rotation under continuous load (docs/http-interface.md#tokens-and-refresh; why, in src/refresh/token-refresher.ts): the
 * embedded IdP rotates the refresh token on every use and revokes the whole grant when a
 * rotated-out token comes back. Twenty expiry cycles while a steady stream of concurrent
 * requests runs through two instances sharing Redis must cost exactly twenty grants, never
 * present a refresh token twice, and never answer 401.
 *
 * Both instances share one movable clock: each cycle moves it 280 s forward, which puts the
 * 300 s token inside the 30 s refresh window (IdP, upstream and Redis keep real time).
 */
import { afterAll, beforeAll, expect, test, vi } from 'vitest';
import { login } from '../support/login.ts';
import { apiHeaders, startWorld, type RunningGateway, type World } from '../support/world.ts';

const CYCLES = 20;
const WORKERS = 6;
const STEP_MS = 280_000;
const MAX_REQUESTS = 20_000;

let world: World;
let offset = 0;
let instances: RunningGateway[];

beforeAll(async () => {
  world = await startWorld({ store: 'redis' });
  const now = () => Date.now() + offset;
  instances = [await world.startGateway({ now }), await world.startGateway({ now })];
});
afterAll(() => world?.close());

async function refreshCount(gateway: RunningGateway, result: string): Promise<number> {
  const metric = await gateway.gateway.services.metrics.tokenRefresh.get();
  return metric.values.find((v) => v.labels.result === result)?.value ?? 0;
}

test(`${CYCLES} rotation cycles under continuous load over 2 instances: one grant per cycle, no reuse, no 401`, async () => {
  const session = await login(world.url);
  const base = world.idp.counters.refreshGrants;
  const firstTokenRequest = world.idp.tokenRequests.length;
  const statuses = new Map<number, number>();
  let sent = 0;
  let stop = false;

  const worker = async (index: number) => {
    for (let i = 0; !stop && sent < MAX_REQUESTS; i++) {
      sent += 1;
      const gateway = instances[(index + i) % instances.length]!;
      const res = await fetch(`${gateway.url}/api/protected?w=${index}`, { headers: apiHeaders(session.cookieHeader) });
      await res.body?.cancel();
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    }
  };
  const load = Promise.all(Array.from({ length: WORKERS }, (_, i) => worker(i)));

  try {
    for (let cycle = 1; cycle <= CYCLES; cycle++) {
      offset += STEP_MS;
      await vi.waitFor(() => expect(world.idp.counters.refreshGrants - base).toBe(cycle), { timeout: 10_000, interval: 5 });
      // Keep the load going past the refresh, so requests holding the old record race the new one.
      const mark = sent;
      await vi.waitFor(() => expect(sent - mark).toBeGreaterThanOrEqual(WORKERS * 3), { timeout: 10_000, interval: 5 });
    }
  } finally {
    stop = true;
    await load;
  }

  expect(world.idp.counters.refreshGrants - base).toBe(CYCLES);
  expect([...statuses.keys()]).toEqual([200]);
  expect(statuses.get(200)).toBeGreaterThan(CYCLES * WORKERS * 3);
  const presented = world.idp.tokenRequests
    .slice(firstTokenRequest)
    .filter((r) => r.grantType === 'refresh_token')
    .map((r) => r.params.refresh_token);
  expect(presented).toHaveLength(CYCLES);
  expect(new Set(presented).size).toBe(CYCLES);
  for (const gateway of instances) {
    expect(await refreshCount(gateway, 'invalid_grant')).toBe(0);
    expect(await refreshCount(gateway, 'error')).toBe(0);
  }
  expect((await refreshCount(instances[0]!, 'success')) + (await refreshCount(instances[1]!, 'success'))).toBe(CYCLES);
}, 50_000);
