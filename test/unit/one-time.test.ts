/**
 * One-time claims and values (src/session/one-time.ts) and the logout hand-off built on them
 * (src/auth/logout-handoff.ts), on the memory store: named namespaces that never collide, the
 * key spellings instances of other versions share, and hand-off records that live apart from
 * sessions — not listed, not announced as session ends, good for one redeem.
 */
import { randomBytes } from 'node:crypto';
import { expect, test } from 'vitest';
import { HANDOFF_TTL_MS, LogoutHandoffs } from '../../src/auth/logout-handoff.ts';
import { MemoryStore } from '../../src/session/memory-store.ts';
import { hashed, OneTimeClaims, OneTimeValues } from '../../src/session/one-time.ts';
import { Sealer } from '../../src/session/seal.ts';
import { ManualClock } from '../support/time.ts';

test('each claim namespace is its own: the same name is claimed once per namespace', async () => {
  const claims = new OneTimeClaims(new MemoryStore());
  expect(await claims.claim('login-state', 'x', 60_000)).toBe(true);
  expect(await claims.claim('login-state', 'x', 60_000)).toBe(false);
  expect(await claims.claim('logout-jti', 'x', 60_000)).toBe(true);
  expect(await claims.claim('session-ended', 'x', 60_000)).toBe(true);
});

test('claims keep the store keys earlier versions wrote (state., jti., ended.)', async () => {
  const store = new MemoryStore();
  const claims = new OneTimeClaims(store);
  await claims.claim('login-state', 'a', 60_000);
  await claims.claim('logout-jti', 'b', 60_000);
  await claims.claim('session-ended', 'c', 60_000);
  for (const key of ['state.a', 'jti.b', 'ended.c']) expect(await store.claimOnce(key, 60_000)).toBe(false);
});

test('a logout hand-off redeems once, is not a session record and announces no session end', async () => {
  const clock = new ManualClock();
  const store = new MemoryStore(clock.now);
  const handoffs = new LogoutHandoffs(new OneTimeValues(store), new Sealer([randomBytes(32)]));
  const ended: string[] = [];
  store.onEnded((handle) => ended.push(handle));

  const handle = await handoffs.create('the-id-token');
  const listed: string[] = [];
  for await (const h of store.scanHandles()) listed.push(h);
  expect(listed).toEqual([]);
  expect(await store.get(hashed(handle))).toBeNull();

  expect(await handoffs.redeem(handle)).toEqual({ idToken: 'the-id-token' });
  expect(await handoffs.redeem(handle)).toBeUndefined();
  expect(ended).toEqual([]);
});

test('a hand-off expires, and malformed or unknown handles redeem nothing', async () => {
  const clock = new ManualClock();
  const store = new MemoryStore(clock.now);
  const handoffs = new LogoutHandoffs(new OneTimeValues(store), new Sealer([randomBytes(32)]));
  const handle = await handoffs.create(undefined);
  clock.advance(HANDOFF_TTL_MS);
  expect(await handoffs.redeem(handle)).toBeUndefined();
  for (const bad of [undefined, null, '', 'short', `${'A'.repeat(42)}!`, randomBytes(32).toString('base64url')]) {
    expect(await handoffs.redeem(bad)).toBeUndefined();
  }
  const fresh = await handoffs.create(undefined);
  expect(await handoffs.redeem(fresh)).toEqual({});
});
