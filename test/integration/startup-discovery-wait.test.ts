/**
 * Start-up: a request that needs the IdP's metadata while discovery is still in flight waits
 * for it (at most `oidc.timeout`) instead of failing at once; readiness is unchanged (not ready
 * until the metadata is loaded). The IdP's discovery answer is held back by the front until
 * the test has seen the login request arrive, so the race is decided by the test, not by luck.
 */
import { afterAll, beforeAll, expect, test, vi } from 'vitest';
import { buildConfig } from '../../src/config/load.ts';
import { createLogger } from '../../src/log.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { buildGateway, type Gateway } from '../../src/server.ts';
import { startWorldBehindFront, type HostileIdp } from '../support/hostile-idp.ts';
import { logCapture, type World } from '../support/world.ts';

let world: World;
let front: HostileIdp;
const started: Gateway[] = [];

beforeAll(async () => {
  ({ world, front } = await startWorldBehindFront());
});
afterAll(async () => {
  await Promise.all(started.map((gateway) => gateway.close()));
  await world?.close();
});

/** A gateway whose discovery has just begun, held at the front until `release()`. */
async function startHeld(overrides: Record<string, unknown> = {}) {
  let release = () => {};
  front.holdDiscovery = new Promise<void>((resolve) => {
    release = resolve;
  });
  const discoveries = front.requests.filter((r) => r.path === '/.well-known/openid-configuration').length;
  const capture = logCapture();
  const raw = { ...world.rawConfig(), ...overrides };
  const gateway = await buildGateway(buildConfig(raw), {
    log: createLogger({ level: 'info', destination: capture.stream }),
    metrics: new Metrics(),
  });
  started.push(gateway);
  await gateway.app.listen({ host: '127.0.0.1', port: 0 });
  const address = gateway.app.server.address();
  const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  gateway.start();
  const discoveryArrived = () => front.requests.filter((r) => r.path === '/.well-known/openid-configuration').length > discoveries;
  await vi.waitFor(() => expect(discoveryArrived()).toBe(true), { timeout: 5_000, interval: 5 });
  return { gateway, url, release, logs: capture.lines };
}

test('a login sent while discovery is in flight waits for the metadata and redirects to the IdP', async () => {
  const { gateway, url, release, logs } = await startHeld();
  const arrived = new Promise<void>((resolve) => gateway.app.server.once('request', () => resolve()));
  let answered = false;
  const login = fetch(`${url}/auth/login?returnTo=/`, { redirect: 'manual' }).then((res) => {
    answered = true;
    return res;
  });
  await arrived;
  expect(gateway.services.idp.ready).toBe(false);
  const readyz = await gateway.admin?.inject({ method: 'GET', url: '/readyz' });
  if (readyz) expect(readyz.statusCode).toBe(503);
  expect(answered).toBe(false);

  front.holdDiscovery = undefined;
  release();
  const res = await login;
  expect(res.status).toBe(302);
  const location = new URL(res.headers.get('location') ?? '');
  expect(location.origin).toBe(new URL(front.issuer).origin);
  expect(location.searchParams.get('state')).toBeTruthy();
  expect(gateway.services.idp.ready).toBe(true);
  expect(logs.some((line) => line.includes('"status":503'))).toBe(false);
});

test('discovery that does not finish within oidc.timeout: the login answers 503 idp_unavailable', async () => {
  const { url, release } = await startHeld({ oidc: { ...(world.rawConfig().oidc as object), timeout: '300ms' } });
  try {
    const res = await fetch(`${url}/auth/login?returnTo=/`, { redirect: 'manual' });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: string }).error).toBe('idp_unavailable');
  } finally {
    front.holdDiscovery = undefined;
    release();
  }
});
