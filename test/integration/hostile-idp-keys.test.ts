/**
 * Signing keys and metadata from a hostile (or merely rotating) IdP:
 * - an ID token under a `kid` nobody published is refused after at most one JWKS refetch;
 * - a genuine key rotation (the new key published in the JWKS, then used) is accepted at the
 *   first login that carries it: the gateway refetches the key set once, not never;
 * - discovery whose `issuer` is not the configured issuer never makes the gateway ready
 *   (OIDC Discovery 4.3): no login can start, /auth/login answers 503 idp_unavailable.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildConfig } from '../../src/config/load.ts';
import { createLogger } from '../../src/log.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { buildGateway, type Gateway } from '../../src/server.ts';
import { startWorldBehindFront, type HostileIdp } from '../support/hostile-idp.ts';
import { isClearingCookie, login, loginUpToCallback } from '../support/login.ts';
import { apiHeaders, deepMerge, logCapture, type World } from '../support/world.ts';

let world: World;
let front: HostileIdp;

beforeAll(async () => {
  ({ world, front } = await startWorldBehindFront());
});
afterEach(() => {
  front.corruption = 'none';
  front.rewriteDiscovery = undefined;
});
afterAll(async () => {
  await world?.close();
});

async function callbackStatus(): Promise<{ status: number; sessionSet: boolean }> {
  const pending = await loginUpToCallback(world.url);
  const res = await fetch(pending.callbackUrl, { redirect: 'manual', headers: { cookie: pending.gatewayCookieHeader } });
  await res.body?.cancel();
  return {
    status: res.status,
    sessionSet: res.headers.getSetCookie().some((line) => line.startsWith('bff-session=') && !isClearingCookie(line)),
  };
}

describe('signing keys', () => {
  // The three steps share the gateway's key-set cache, so they run in this order.
  it('loads the key set once for a normal login', async () => {
    await login(world.url);
    expect(front.jwksFetches).toBe(1);
  });

  it('refuses an unknown kid, refetching the key set at most once', async () => {
    const fetches = front.jwksFetches;
    front.corruption = 'unknown-kid';
    expect(await callbackStatus()).toEqual({ status: 400, sessionSet: false });
    expect(front.jwksFetches - fetches).toBeLessThanOrEqual(1);
  });

  it('accepts a real key rotation after one key-set refetch', async () => {
    const kid = await front.rotateKey();
    const fetches = front.jwksFetches;
    const session = await login(world.url);
    expect(front.jwksFetches).toBe(fetches + 1);
    // The session really carries an ID token signed with the rotated key.
    const idToken = front.tokenResponses.at(-1)?.id_token as string;
    expect(JSON.parse(Buffer.from(idToken.split('.')[0] as string, 'base64url').toString()).kid).toBe(kid);
    const user = await fetch(`${world.url}/auth/user`, { headers: apiHeaders(session.cookieHeader) });
    expect(user.status).toBe(200);
    // And the next login needs no further fetch: the refreshed set is cached.
    await login(world.url);
    expect(front.jwksFetches).toBe(fetches + 1);
  });
});

describe('discovery', () => {
  let gateway: Gateway | undefined;
  afterEach(async () => {
    await gateway?.close();
    gateway = undefined;
  });

  async function startOwnGateway(): Promise<{ url: string; gateway: Gateway; logs: string[] }> {
    // Built by hand: the world's helper waits for discovery to succeed, which must never happen here.
    const capture = logCapture();
    const config = buildConfig(deepMerge(world.rawConfig(), { listen: { host: '127.0.0.1', port: 0 } }));
    gateway = await buildGateway(config, { log: createLogger({ level: 'debug', destination: capture.stream }), metrics: new Metrics() });
    await gateway.app.listen({ host: '127.0.0.1', port: 0 });
    gateway.start();
    const address = gateway.app.server.address();
    return { url: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`, gateway, logs: capture.lines };
  }

  it('control: the same hand-built gateway becomes ready with honest metadata', async () => {
    const own = await startOwnGateway();
    await vi.waitFor(() => expect(own.gateway.services.idp.ready).toBe(true), { timeout: 5_000, interval: 50 });
    const res = await fetch(`${own.url}/auth/login`, { redirect: 'manual' });
    expect(res.status).toBe(302);
  });

  it('never becomes ready when discovery names another issuer: /auth/login is 503 idp_unavailable', async () => {
    front.rewriteDiscovery = (doc) => ({ ...doc, issuer: 'https://evil.example' });
    const discoveries = front.requests.filter((r) => r.path === '/.well-known/openid-configuration').length;
    const own = await startOwnGateway();
    // Two refused attempts prove the refusal is not a one-off network hiccup.
    await vi.waitFor(
      () =>
        expect(front.requests.filter((r) => r.path === '/.well-known/openid-configuration').length).toBeGreaterThanOrEqual(discoveries + 2),
      {
        timeout: 5_000,
        interval: 50,
      },
    );
    expect(own.gateway.services.idp.ready).toBe(false);
    const res = await fetch(`${own.url}/auth/login`, { redirect: 'manual' });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: string }).error).toBe('idp_unavailable');
    expect(own.logs.some((line) => line.includes('discovery failed'))).toBe(true);
  });
});
