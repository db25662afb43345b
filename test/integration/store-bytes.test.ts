/**
 * What a session costs in Redis (docs/performance.md, bench/store-bytes.ts): every key one real
 * login creates, by Redis' own `MEMORY USAGE`, stays within 1.5× the raw bytes of the tokens the
 * session holds. Not timed: on one Redis build `MEMORY USAGE` is a function of the sizes stored
 * (rounded to the allocator's size classes), so the bound either holds or it does not. And a
 * record in the format of the previous version, written the way it wrote it, still works.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { Sealer } from '../../src/session/seal.ts';
import { login } from '../support/login.ts';
import { apiStatus, SESSION_KEY, startWorld, type World } from '../support/world.ts';

let world: World;
let redis: Redis;
beforeAll(async () => {
  // No in-process session cache: the upgrade test rewrites a record behind the gateway's back.
  world = await startWorld({ store: 'redis', config: { session: { cache: { enabled: false } } } });
  redis = new Redis(world.redis?.url as string, { lazyConnect: true, maxRetriesPerRequest: 0 });
  await redis.connect();
}, 30_000);
afterAll(async () => {
  redis?.disconnect();
  await world?.close();
});

async function memoryUsage(): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'COUNT', 1000);
    cursor = next;
    for (const key of keys) sizes.set(key, Number(await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')));
  } while (cursor !== '0');
  return sizes;
}

test('every key one login creates takes at most 1.5x the raw bytes of the tokens it holds', async () => {
  const before = await memoryUsage();
  const { cookieHeader } = await login(world.url, { user: 'bytes01' });
  const after = await memoryUsage();
  const created = [...after.keys()].filter((key) => !before.has(key));
  for (const [key, size] of before) expect(after.get(key) ?? 0, `${key} grew`).toBeLessThanOrEqual(size);
  expect(created.map((key) => key.replace(/\{(?:(\w+)\.)?[^}]*\}/, '{$1}')).sort()).toEqual([
    'bff:c:{state}',
    'bff:h:{sid}',
    'bff:h:{sub}',
    'bff:s:{}',
  ]);

  const recordKey = created.find((key) => key.startsWith('bff:s:')) as string;
  const loaded = await world.gateway.gateway.services.sessions.loadHandle(recordKey.slice('bff:s:{'.length, -1));
  if (loaded.state !== 'active') throw new Error(`the session did not load: ${loaded.state}`);
  const { accessToken, refreshToken, idToken } = loaded.record.tokens;
  expect(refreshToken && idToken).toBeTruthy();
  const tokenBytes = Buffer.byteLength(accessToken) + Buffer.byteLength(refreshToken ?? '') + Buffer.byteLength(idToken ?? '');
  const storeBytes = created.reduce((sum, key) => sum + (after.get(key) as number), 0);
  expect(storeBytes / tokenBytes).toBeLessThanOrEqual(1.5);
  // And the session works.
  expect(await apiStatus(world.url, '/api/bytes', cookieHeader)).toBe(200);
});

test('a session stored by the previous version (sealed JSON as base64url text) keeps working through an upgrade', async () => {
  const before = await memoryUsage();
  const { cookieHeader } = await login(world.url, { user: 'upgrade1' });
  const key = [...(await memoryUsage()).keys()].find((k) => k.startsWith('bff:s:') && !before.has(k)) as string;
  const handle = key.slice('bff:s:{'.length, -1);
  const loaded = await world.gateway.gateway.services.sessions.loadHandle(handle);
  if (loaded.state !== 'active') throw new Error(`the session did not load: ${loaded.state}`);
  // What the previous version wrote: the record sealed as text, SET as a string.
  const old = new Sealer([Buffer.from(SESSION_KEY, 'base64')]).seal(loaded.record, handle);
  expect(old).toMatch(/^v1\./);
  expect(await redis.set(key, old, 'PX', 3_600_000)).toBe('OK');
  expect(await redis.get(key)).toBe(old);
  expect(await apiStatus(world.url, '/api/upgraded', cookieHeader)).toBe(200);
  expect((await redis.getBuffer(key))?.[0]).toBe('v'.charCodeAt(0));
  // A record that does not open is no session: the 200 above came from the text record.
  // One character in the middle (a base64 string's last characters may carry padding bits only).
  const middle = Math.floor(old.length / 2);
  const tampered = `${old.slice(0, middle)}${old[middle] === 'A' ? 'B' : 'A'}${old.slice(middle + 1)}`;
  expect(await redis.set(key, tampered, 'PX', 3_600_000)).toBe('OK');
  expect(await apiStatus(world.url, '/api/tampered', cookieHeader)).toBe(401);
});
