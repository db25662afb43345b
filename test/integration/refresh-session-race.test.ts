/**
 * The session record race behind single-flight refresh: housekeeping writes (the lazy idle
 * slide, re-sealing) are compare-and-set, so a request that loaded the record BEFORE another
 * instance rotated the tokens can never write the old tokens back. If it could, the next
 * refresh would present a rotated-out refresh token and the IdP's reuse detection would end
 * the grant. Also: the store primitives the refresh protocol rests on (lock with owner and
 * TTL, SET XX update, compare-and-set replace), on both stores.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { MemoryStore } from '../../src/session/memory-store.ts';
import { RedisStore } from '../../src/session/redis-store.ts';
import type { SessionStore } from '../../src/session/store.ts';
import { buildConfig } from '../../src/config/load.ts';
import { login, type LoginResult } from '../support/login.ts';
import { apiHeaders, startWorld, type RunningGateway, type World } from '../support/world.ts';
import { sleep } from '../support/time.ts';

// Tokens live 300 s (refresh window 30 s); the idle slide is due after 60 s.
const SLIDE_DUE_MS = 90_000;
const REFRESH_DUE_MS = 280_000;

let world: World;
let sliding: RunningGateway;
let refreshing: RunningGateway;
let later: RunningGateway;

beforeAll(async () => {
  world = await startWorld({ store: 'redis' });
  sliding = await world.startGateway({ now: () => Date.now() + SLIDE_DUE_MS });
  refreshing = await world.startGateway({ now: () => Date.now() + REFRESH_DUE_MS });
  later = await world.startGateway({ now: () => Date.now() + 2 * REFRESH_DUE_MS });
});
afterAll(() => world?.close());

const idOf = (session: LoginResult) => session.cookie.slice(session.cookie.indexOf('=') + 1).split('.')[0] as string;

async function get(gateway: RunningGateway, session: LoginResult): Promise<number> {
  const res = await fetch(`${gateway.url}/api/echo`, { headers: apiHeaders(session.cookieHeader) });
  await res.body?.cancel();
  return res.status;
}

async function refreshTokenOf(session: LoginResult): Promise<string | undefined> {
  const loaded = await world.gateway.gateway.services.sessions.load(idOf(session));
  return loaded.state === 'active' ? loaded.record.tokens.refreshToken : undefined;
}

test('an idle slide from a record loaded before another instance rotated the tokens does not write them back', async () => {
  const session = await login(world.url);
  const stale = await sliding.gateway.services.sessions.load(idOf(session));
  if (stale.state !== 'active') throw new Error('session not active');
  const original = stale.record.tokens.refreshToken;

  expect(await get(refreshing, session)).toBe(200);
  const rotated = await refreshTokenOf(session);
  expect(rotated).toBeDefined();
  expect(rotated).not.toBe(original);

  // The slide is due on the sliding instance, but its copy of the record is out of date.
  await sliding.gateway.services.sessions.touch(stale);
  expect(await refreshTokenOf(session)).toBe(rotated);

  // The consequence that matters: the next refresh presents the rotated token and succeeds.
  const grants = world.idp.counters.refreshGrants;
  expect(await get(later, session)).toBe(200);
  expect(world.idp.counters.refreshGrants - grants).toBe(1);
  expect(world.idp.tokenRequests.at(-1)?.params.refresh_token).toBe(rotated);
});

test('the slide still happens when nothing raced it', async () => {
  const session = await login(world.url);
  const loaded = await sliding.gateway.services.sessions.load(idOf(session));
  if (loaded.state !== 'active') throw new Error('session not active');
  const before = loaded.record.lastSeenAt;
  await sliding.gateway.services.sessions.touch(loaded);
  const after = await world.gateway.gateway.services.sessions.load(idOf(session));
  expect(after.state === 'active' && after.record.lastSeenAt).toBeGreaterThanOrEqual(before + SLIDE_DUE_MS - 1_000);
});

test('a request that refreshes and then slides keeps the new tokens (one grant for two requests)', async () => {
  const session = await login(world.url);
  const grants = world.idp.counters.refreshGrants;
  // Both the refresh and the slide are due: the handler refreshes, then touches its own
  // pre-refresh copy of the session.
  expect(await get(refreshing, session)).toBe(200);
  expect(await get(refreshing, session)).toBe(200);
  expect(world.idp.counters.refreshGrants - grants).toBe(1);
});

async function storeContract(store: SessionStore, wait: (ms: number) => Promise<void>) {
  const handle = `h-${Math.random().toString(36).slice(2)}`;
  const owner = await store.acquireLock(handle, 150);
  expect(owner).toEqual(expect.any(String));
  expect(await store.acquireLock(handle, 150)).toBeNull();
  expect(await store.isLocked(handle)).toBe(true);
  await store.releaseLock(handle, 'someone-else');
  expect(await store.isLocked(handle)).toBe(true);
  await store.releaseLock(handle, owner as string);
  expect(await store.isLocked(handle)).toBe(false);
  // A holder that never releases (a crash): the lock frees itself after its TTL.
  expect(await store.acquireLock(handle, 150)).not.toBeNull();
  await wait(250);
  const next = await store.acquireLock(handle, 150);
  expect(next).not.toBeNull();
  await store.releaseLock(handle, next as string);

  expect(await store.update(handle, 'v1', 10_000)).toBe(false);
  expect(await store.get(handle)).toBeNull();
  await store.set(handle, 'v1', 10_000);
  expect(await store.update(handle, 'v2', 10_000)).toBe(true);
  expect(await store.replace(handle, 'v1', 'stale-write', 10_000)).toBe(false);
  expect(await store.get(handle)).toBe('v2');
  expect(await store.replace(handle, 'v2', 'v3', 10_000)).toBe(true);
  expect(await store.get(handle)).toBe('v3');
  await store.destroy(handle);
  expect(await store.replace(handle, 'v3', 'v4', 10_000)).toBe(false);
  expect(await store.get(handle)).toBeNull();
}

describe('store primitives of the refresh protocol', () => {
  test('memory store', async () => {
    let offset = 0;
    const store = new MemoryStore(() => Date.now() + offset);
    await storeContract(store, async (ms) => {
      offset += ms;
    });
    await store.close();
  });

  test('redis store', async () => {
    const config = buildConfig(world.rawConfig()).session.redis;
    const store = await RedisStore.connect(config);
    try {
      await storeContract(store, sleep);
    } finally {
      await store.close();
    }
  });
});
