/**
 * The in-process session cache (src/session/session-cache.ts) across three real gateway
 * processes sharing one redis-server: with a warm cache a proxied request reads nothing from
 * Redis; a logout or a token refresh on one instance is seen by the others within 100 ms
 * (polled); and with the change feed cut (the subscriber killed and its channels refused by
 * an ACL) a session ended elsewhere is never served from a cache.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { login } from '../support/login.ts';
import { startProcessWorld, type ProcessWorld } from '../support/processes.ts';
import { redisCommand } from '../support/redis.ts';
import { bearerOf } from '../support/upstream.ts';
import { apiHeaders } from '../support/world.ts';
import { sleep } from '../support/time.ts';

const BOUND_MS = 100;

let world: ProcessWorld;

beforeAll(async () => {
  world = await startProcessWorld({ instances: 3 });
}, 60_000);
afterAll(() => world?.close());

async function status(instance: number, cookieHeader: string, tag: string): Promise<number> {
  const res = await fetch(`${world.gateways[instance]?.url}/api/echo?tag=${tag}`, { headers: apiHeaders(cookieHeader) });
  await res.body?.cancel();
  return res.status;
}

async function redisGets(): Promise<number> {
  const stats = await redisCommand(world.redis.port, 'INFO commandstats');
  return Number(/cmdstat_get:calls=(\d+)/.exec(stats)?.[1] ?? 0);
}

/** Polls `probe` until it is true; the elapsed milliseconds, or Infinity past `limitMs`. */
async function within(limitMs: number, probe: () => Promise<boolean>): Promise<number> {
  const started = performance.now();
  for (;;) {
    if (await probe()) return performance.now() - started;
    if (performance.now() - started > limitMs) return Infinity;
  }
}

test('with a warm cache, proxied requests on every instance read nothing from Redis', async () => {
  const session = await login(world.publicUrl);
  for (const instance of [0, 1, 2]) expect(await status(instance, session.cookieHeader, 'warm')).toBe(200);
  const before = await redisGets();
  for (let i = 0; i < 10; i++)
    for (const instance of [0, 1, 2]) expect(await status(instance, session.cookieHeader, `steady-${i}`)).toBe(200);
  expect(await redisGets()).toBe(before);
});

test('a logout on one instance ends the session on the others within 100 ms', async () => {
  const session = await login(world.publicUrl);
  for (const instance of [0, 1, 2]) expect(await status(instance, session.cookieHeader, 'before-logout')).toBe(200);
  const logout = await fetch(`${world.gateways[0]?.url}/auth/logout`, { method: 'POST', headers: apiHeaders(session.cookieHeader) });
  expect(logout.status).toBe(200);
  await logout.body?.cancel();
  for (const instance of [1, 2]) {
    expect(await within(BOUND_MS, async () => (await status(instance, session.cookieHeader, 'after-logout')) === 401)).toBeLessThanOrEqual(
      BOUND_MS,
    );
  }
});

test('a refresh on one instance: the others carry the new token within 100 ms', async () => {
  const session = await login(world.publicUrl);
  for (const instance of [0, 1, 2]) expect(await status(instance, session.cookieHeader, 'before-refresh')).toBe(200);
  const lastTo = (url: string) => [...world.upstream.requests].reverse().find((r) => r.url === url);
  const tokenSeen = (tag: string) => bearerOf(lastTo(`/api/echo?tag=${tag}`)?.headers ?? {});
  const old = tokenSeen('before-refresh');
  // A 401 invalid_token from the upstream makes instance 0 refresh (and replay) once.
  world.upstream.rejectTokens.add(old);
  const refreshed = await fetch(`${world.gateways[0]?.url}/api/protected?tag=refresh`, { headers: apiHeaders(session.cookieHeader) });
  expect(refreshed.status).toBe(200);
  await refreshed.body?.cancel();
  const fresh = bearerOf(lastTo('/api/protected?tag=refresh')?.headers ?? {});
  if (fresh === old) return expect.fail('the upstream rejection did not cause a refresh');
  for (const instance of [1, 2]) {
    const tag = `after-refresh-${instance}`;
    expect(
      await within(BOUND_MS, async () => (await status(instance, session.cookieHeader, tag)) === 200 && tokenSeen(tag) === fresh),
    ).toBeLessThanOrEqual(BOUND_MS);
  }
});

test('with the change feed cut, a session ended elsewhere is never served from a cache', async () => {
  const session = await login(world.publicUrl);
  for (const instance of [0, 1, 2]) expect(await status(instance, session.cookieHeader, 'before-cut')).toBe(200);
  // No channel rights for anyone from now on, and every subscriber loses its connection.
  await redisCommand(world.redis.port, 'ACL SETUSER default resetchannels');
  try {
    await redisCommand(world.redis.port, 'CLIENT KILL TYPE pubsub');
    await sleep(200);
    // Ended behind every instance's back: the record is deleted and nothing is announced.
    const id = session.cookie.slice(session.cookie.indexOf('=') + 1).split('.')[0] as string;
    const handle = createHash('sha256').update(id).digest('base64url');
    expect(await redisCommand(world.redis.port, `DEL bff:s:{${handle}}`)).toBe(':1');
    for (const instance of [0, 1, 2]) expect(await status(instance, session.cookieHeader, 'after-cut')).toBe(401);
  } finally {
    await redisCommand(world.redis.port, 'ACL SETUSER default allchannels');
  }
});
