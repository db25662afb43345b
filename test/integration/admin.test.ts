/**
 * The admin listener (docs/http-interface.md#admin-listener): /healthz, /readyz (store answers and IdP metadata
 * loaded, else 503 naming what is missing), /metrics in Prometheus text format.
 */
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildConfig } from '../../src/config/load.ts';
import { createLogger } from '../../src/log.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { buildGateway, type Gateway } from '../../src/server.ts';
import { login } from '../support/login.ts';
import { freePort } from '../support/redis.ts';
import { apiHeaders, deepMerge, logCapture, startWorld, type World } from '../support/world.ts';

let world: World;
let adminUrl: string;
let orphan: Gateway | undefined;

async function listenAdmin(gateway: Gateway): Promise<string> {
  const admin = gateway.admin;
  if (!admin) throw new Error('gateway built without an admin listener');
  await admin.listen({ host: '127.0.0.1', port: 0 });
  return `http://127.0.0.1:${(admin.server.address() as AddressInfo).port}`;
}

beforeAll(async () => {
  world = await startWorld({ store: 'redis', config: { admin: { host: '127.0.0.1', port: 0 } } });
  adminUrl = await listenAdmin(world.gateway.gateway);
});
afterAll(async () => {
  await orphan?.close();
  await world?.close();
});

async function readyz(url: string): Promise<{ status: number; body: { status: string; missing?: string[] } }> {
  const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(10_000) });
  return { status: res.status, body: (await res.json()) as { status: string; missing?: string[] } };
}

describe('admin listener', () => {
  it('/healthz answers 200', async () => {
    const res = await fetch(`${adminUrl}/healthz`);
    expect(res.status).toBe(200);
    await res.body?.cancel();
  });

  it('the public listener does not expose the metrics', async () => {
    const res = await fetch(`${world.url}/metrics`);
    expect(await res.text()).not.toContain('bff_requests_total');
  });

  it('/readyz answers 200 when the store answers and the IdP metadata is loaded', async () => {
    expect(await readyz(adminUrl)).toEqual({ status: 200, body: expect.objectContaining({ status: 'ready' }) });
  });

  it('/metrics exposes the documented metrics in Prometheus text format', async () => {
    const session = await login(world.url);
    const api = await fetch(`${world.url}/api/echo`, { headers: apiHeaders(session.cookieHeader) });
    expect(api.status).toBe(200);
    await api.body?.cancel();
    const logout = await fetch(`${world.url}/auth/logout`, { method: 'POST', headers: apiHeaders(session.cookieHeader) });
    expect(logout.status).toBe(200);
    await logout.body?.cancel();

    const res = await fetch(`${adminUrl}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    for (const name of [
      'bff_requests_total',
      'bff_upstream_duration_seconds',
      'bff_token_refresh_total',
      'bff_logins_total',
      'bff_logouts_total',
    ]) {
      expect(text).toMatch(new RegExp(`^# TYPE ${name} (counter|histogram)$`, 'm'));
    }
    expect(text).toMatch(/^bff_requests_total\{[^}]*\} [1-9]\d*$/m);
    expect(text).toMatch(/^bff_upstream_duration_seconds_count\{[^}]*route="\/api"[^}]*\} [1-9]\d*$/m);
    expect(text).toMatch(/^bff_token_refresh_total\{result="[a-z_]+"\} \d+$/m);
    expect(text).toMatch(/^bff_logins_total\{result="success"\} [1-9]\d*$/m);
    expect(text).toMatch(/^bff_logouts_total\{kind="rp"\} [1-9]\d*$/m);
  });
});

/** `bff_errors_total` samples of an exposition, keyed `code route`. */
function errorCounts(text: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const [, code, route, value] of text.matchAll(/^bff_errors_total\{code="([^"]*)",route="([^"]*)"\} (\d+)$/gm)) {
    counts.set(`${code} ${route}`, Number(value));
  }
  return counts;
}

describe('bff_errors_total', () => {
  it("counts the gateway's error answers by code and route, once each, and nothing for a 200", async () => {
    const session = await login(world.url);
    const metrics = async () => (await fetch(`${adminUrl}/metrics`)).text();
    const before = errorCounts(await metrics());
    const answers: Array<[string, RequestInit, number]> = [
      // The raw proxy door: no session (401), no anti-forgery header (403), a good call (200).
      ['/api/echo', { headers: { 'x-csrf': '1' } }, 401],
      ['/api/echo', { headers: { cookie: session.cookieHeader } }, 403],
      ['/api/echo', { headers: apiHeaders(session.cookieHeader) }, 200],
      // The proxy behind fastify's door (an encoded path goes through fastify's router).
      ['/api/%65cho', { headers: { 'x-csrf': '1' } }, 401],
      // The gateway's own endpoints (fastify): /auth/user without the anti-forgery header.
      ['/auth/user', { headers: { cookie: session.cookieHeader } }, 403],
      ['/auth/user', { headers: apiHeaders(session.cookieHeader) }, 200],
    ];
    for (const [path, init, status] of answers) {
      const res = await fetch(`${world.url}${path}`, init);
      await res.body?.cancel();
      expect(res.status, path).toBe(status);
    }
    const text = await metrics();
    expect(text).toMatch(/^# TYPE bff_errors_total counter$/m);
    const after = errorCounts(text);
    const added = Object.fromEntries(
      [...after].map(([key, value]) => [key, value - (before.get(key) ?? 0)]).filter(([, delta]) => delta !== 0),
    );
    expect(added).toEqual({ 'unauthenticated /api': 2, 'csrf_required /api': 1, 'csrf_required /auth/user': 1 });
  });
});

describe('readiness failures', () => {
  it('/readyz is 503 naming the identity provider when its metadata cannot be loaded', async () => {
    const closed = await freePort();
    const raw = deepMerge(world.rawConfig(), {
      oidc: { issuer: `http://127.0.0.1:${closed}`, timeout: '500ms' },
      admin: { host: '127.0.0.1', port: 0 },
    });
    orphan = await buildGateway(buildConfig(raw), { log: createLogger({ destination: logCapture().stream }), metrics: new Metrics() });
    orphan.start();
    const url = await listenAdmin(orphan);
    const { status, body } = await readyz(url);
    expect(status).toBe(503);
    expect(body.missing?.join(' ')).toMatch(/identity provider/i);
    expect(body.missing?.join(' ')).not.toMatch(/session store/i);
    const health = await fetch(`${url}/healthz`);
    expect(health.status).toBe(200);
  });

  it('/readyz is 503 naming the session store when Redis is down; /healthz stays 200', async () => {
    await world.redis?.stop();
    const { status, body } = await readyz(adminUrl);
    expect(status).toBe(503);
    expect(body.missing?.join(' ')).toMatch(/session store/i);
    expect(body.missing?.join(' ')).not.toMatch(/identity provider/i);
    const health = await fetch(`${adminUrl}/healthz`);
    expect(health.status).toBe(200);
  });
});
