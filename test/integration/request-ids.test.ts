/**
 * X-Request-Id (docs/observability.md): taken from a trusted front when safe, otherwise made
 * here; on every log line of the request, sent upstream, answered to the browser on every
 * response, errors included. A browser's own `traceparent` never reaches the upstream.
 * Also the access line's client address and instance id, and the login refused at once while
 * the session store is down.
 */
import { afterAll, beforeAll, expect, test, vi } from 'vitest';
import { login } from '../support/login.ts';
import { apiHeaders, startWorld, type RunningGateway, type World } from '../support/world.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const CLIENT_TRACE = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

let world: World;
let trusted: RunningGateway;

beforeAll(async () => {
  world = await startWorld({ store: 'redis' });
  trusted = await world.startGateway({}, { trustProxy: true });
});
afterAll(() => world?.close());

function linesWith(gateway: RunningGateway, id: string): Array<Record<string, unknown>> {
  return gateway.logs.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.reqId === id);
}

test('untrusted: the browser’s X-Request-Id and traceparent are replaced or dropped; the new id is answered, forwarded and logged', async () => {
  const session = await login(world.url);
  const before = world.upstream.requests.length;
  const res = await fetch(`${world.url}/api/ids`, {
    headers: apiHeaders(session.cookieHeader, { 'x-request-id': 'chosen-by-browser', traceparent: CLIENT_TRACE }),
  });
  await res.body?.cancel();
  expect(res.status).toBe(200);
  const id = res.headers.get('x-request-id') ?? '';
  expect(id).toMatch(UUID);
  const seen = world.upstream.requests.slice(before).at(-1);
  expect(seen?.headers['x-request-id']).toBe(id);
  expect(seen?.headers.traceparent).toBeUndefined();
  await vi.waitFor(() => expect(linesWith(world.gateway, id).some((line) => line.msg === 'request')).toBe(true), { timeout: 5_000 });
  const access = linesWith(world.gateway, id).find((line) => line.msg === 'request');
  expect(access?.client).toBe('127.0.0.1');
  expect(typeof access?.instance).toBe('string');
});

test('trusted front: a safe X-Request-Id and traceparent pass; an unsafe id is replaced', async () => {
  const session = await login(world.url);
  const before = world.upstream.requests.length;
  const headers = apiHeaders(session.cookieHeader, {
    'x-request-id': 'lb-4f2a:9',
    traceparent: CLIENT_TRACE,
    'x-forwarded-for': '203.0.113.7',
  });
  const res = await fetch(`${trusted.url}/api/ids`, { headers });
  await res.body?.cancel();
  expect(res.headers.get('x-request-id')).toBe('lb-4f2a:9');
  const seen = world.upstream.requests.slice(before).at(-1);
  expect(seen?.headers['x-request-id']).toBe('lb-4f2a:9');
  expect(seen?.headers.traceparent).toBe(CLIENT_TRACE);
  await vi.waitFor(() => expect(linesWith(trusted, 'lb-4f2a:9').find((line) => line.msg === 'request')?.client).toBe('203.0.113.7'), {
    timeout: 5_000,
  });

  const unsafe = await fetch(`${trusted.url}/api/ids`, { headers: { ...headers, 'x-request-id': 'a b"c' } });
  await unsafe.body?.cancel();
  expect(unsafe.headers.get('x-request-id')).toMatch(UUID);
  const long = await fetch(`${trusted.url}/api/ids`, { headers: { ...headers, 'x-request-id': 'x'.repeat(129) } });
  await long.body?.cancel();
  expect(long.headers.get('x-request-id')).toMatch(UUID);
});

test('every answer carries the id: a proxied error and /auth errors', async () => {
  const answers = await Promise.all([
    fetch(`${world.url}/api/ids`, { headers: { 'x-csrf': '1' } }),
    fetch(`${world.url}/auth/user`, { headers: { 'x-csrf': '1' } }),
    fetch(`${world.url}/auth/login?returnTo=https://evil.example/`, { redirect: 'manual' }),
  ]);
  for (const res of answers) {
    await res.body?.cancel();
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.headers.get('x-request-id')).toMatch(UUID);
  }
  const [proxied] = answers;
  const id = proxied?.headers.get('x-request-id') ?? '';
  await vi.waitFor(() => expect(linesWith(world.gateway, id).length).toBeGreaterThan(0), { timeout: 5_000 });
});

test('the store is down: /auth/login answers 503 session_store_unavailable at once, without a trip to the IdP', async () => {
  const gateway = await world.startGateway();
  await world.redis?.stop();
  await vi.waitFor(() => expect(gateway.gateway.services.store.reachable).toBe(false), { timeout: 10_000, interval: 20 });
  const res = await fetch(`${gateway.url}/auth/login?returnTo=/`, { redirect: 'manual' });
  expect(res.status).toBe(503);
  expect(((await res.json()) as { error: string }).error).toBe('session_store_unavailable');
  expect(res.headers.get('set-cookie')).toBeNull();
});
