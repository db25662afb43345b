/**
 * The hot path (docs/http-interface.md#cookies, #tokens-and-refresh; the lazy idle slide in src/session/sessions.ts): in steady state an
 * authenticated proxied request costs no store call with the in-process session cache warm,
 * and exactly one store read and no store write without it. A second
 * gateway instance shares the world's real Redis through a counting wrapper.
 */
import { Socket } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { RedisStore } from '../../src/session/redis-store.ts';
import type { SessionStore } from '../../src/session/store.ts';
import { login } from '../support/login.ts';
import { apiHeaders, startWorld, type RunningGateway, type World } from '../support/world.ts';

const READS = new Set(['get', 'indexMembers', 'isLocked', 'scanHandles', 'ping']);

function counting(store: SessionStore): { store: SessionStore; calls: string[] } {
  const calls: string[] = [];
  const wrapped = new Proxy(store, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        calls.push(String(name));
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { store: wrapped, calls };
}

let world: World;
let counted: { store: SessionStore; calls: string[] };
let second: RunningGateway;
/** The same, with the in-process session cache off. */
let third: RunningGateway;

beforeAll(async () => {
  world = await startWorld({ store: 'redis' });
  counted = counting(await RedisStore.connect(world.gateway.config.session.redis));
  second = await world.startGateway({ store: counted.store });
  third = await world.startGateway({ store: counted.store }, { session: { cache: { enabled: false } } });
});
afterAll(() => world?.close());

it('with a warm session cache, an authenticated proxied request costs no store call at all', async () => {
  const session = await login(world.url);
  // Warm-up on the counted instance: the first read fills its cache.
  const warm = await fetch(`${second.url}/api/echo`, { headers: apiHeaders(session.cookieHeader) });
  expect(warm.status).toBe(200);
  await warm.body?.cancel();

  counted.calls.length = 0;
  for (let i = 0; i < 20; i++) {
    const res = await fetch(`${second.url}/api/echo?i=${i}`, { headers: apiHeaders(session.cookieHeader) });
    expect(res.status).toBe(200);
    await res.body?.cancel();
  }
  expect(counted.calls).toEqual([]);
});

it('without the session cache, an authenticated proxied request costs one store read and no write', async () => {
  const session = await login(world.url);
  // Warm-up on the counted instance (first use may slide the idle timeout).
  const warm = await fetch(`${third.url}/api/echo`, { headers: apiHeaders(session.cookieHeader) });
  expect(warm.status).toBe(200);
  await warm.body?.cancel();

  counted.calls.length = 0;
  const requests = 5;
  for (let i = 0; i < requests; i++) {
    const res = await fetch(`${third.url}/api/echo?i=${i}`, { headers: apiHeaders(session.cookieHeader) });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { auth: { ok: boolean } }).auth.ok).toBe(true);
  }
  const writes = counted.calls.filter((name) => !READS.has(name));
  expect(writes).toEqual([]);
  expect(counted.calls.filter((name) => name === 'get')).toHaveLength(requests);
  expect(counted.calls).toHaveLength(requests);
});

it('control: the counter does see writes (a logout on the counted instance)', async () => {
  counted.calls.length = 0;
  const res = await fetch(`${second.url}/auth/logout`, { method: 'POST', headers: apiHeaders((await login(world.url)).cookieHeader) });
  expect(res.status).toBe(200);
  expect(counted.calls).toContain('destroy');
});

/**
 * Socket writes per proxied request, counted where Node hands bytes to the kernel
 * (`Socket.prototype._writeGeneric`, under `write` and `writev`): a small authenticated answer
 * goes to the browser as one write, status line, headers and body together (not a chunked
 * body and an end marker in a second write), and the request goes upstream as one write.
 */
it('a small authenticated answer costs one socket write to the browser and one to the upstream', async () => {
  const session = await login(world.url);
  const upstreamPort = Number(new URL(world.upstream.url).port);
  const warm = await fetch(`${second.url}/api/echo`, { headers: apiHeaders(session.cookieHeader) });
  expect(warm.status).toBe(200);
  await warm.body?.cancel();

  const socketPrototype = Socket.prototype as unknown as { _writeGeneric: (...args: unknown[]) => unknown };
  const original = socketPrototype._writeGeneric;
  const writes = { browser: 0, upstream: 0 };
  socketPrototype._writeGeneric = function (this: Socket, ...args: unknown[]) {
    if (this.localPort === second.port) writes.browser += 1;
    else if (this.remotePort === upstreamPort && this.localPort !== upstreamPort) writes.upstream += 1;
    return original.apply(this, args);
  };
  const requests = 10;
  try {
    for (let i = 0; i < requests; i++) {
      const res = await fetch(`${second.url}/api/echo?i=${i}`, { headers: apiHeaders(session.cookieHeader) });
      expect(res.status).toBe(200);
      // The echo carries the Bearer the upstream received: scrubbed, so the body was redacted.
      expect(await res.text()).toContain('[redacted]');
    }
  } finally {
    socketPrototype._writeGeneric = original;
  }
  expect(writes).toEqual({ browser: requests, upstream: requests });
});
