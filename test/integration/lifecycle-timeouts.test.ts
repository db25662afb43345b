/**
 * Session lifetime (docs/http-interface.md#cookies): the idle timeout slides with use, the absolute one
 * does not, both end the session (401 and the record removed), and the Redis TTL of the record
 * is the earlier of the two. The gateway under test runs on an injected clock that the tests
 * move forward; Redis keeps real time, so a record that disappears was deleted by the gateway,
 * not expired by Redis.
 */
import { afterAll, beforeAll, beforeEach, expect, test, vi } from 'vitest';
import { logoutsOf, loginAt, recordOf, storedTtl, storedValue } from '../support/session-probe.ts';
import { apiHeaders, startWorld, type RunningGateway, type World } from '../support/world.ts';

const IDLE_MS = 60_000;
const ABSOLUTE_MS = 150_000;
// Lazy sliding rewrites the record only after a tenth of the idle window: steps stay above it.
const STEP_MS = 40_000;
// Real time passes between the write and the PTTL read; this much drift is tolerated.
const TTL_SLACK_MS = 3_000;

let world: World;
let gateway: RunningGateway;
let offset = 0;
const clock = () => Date.now() + offset;

beforeAll(async () => {
  world = await startWorld({ store: 'redis', config: { session: { idleTimeout: '60s', absoluteTimeout: '150s' } } });
  gateway = await world.startGateway({ now: clock });
});
afterAll(() => world?.close());
beforeEach(() => {
  offset = 0;
});

const user = (cookie: string) => fetch(`${gateway.url}/auth/user`, { headers: apiHeaders(cookie) });
const api = (cookie: string) => fetch(`${gateway.url}/api/echo`, { headers: apiHeaders(cookie) });

test('the idle timeout ends the session: 401 unauthenticated and the record is removed from the store', async () => {
  const cookie = await loginAt(world, gateway);
  expect((await user(cookie)).status).toBe(200);
  const timeoutsBefore = await logoutsOf(gateway, 'timeout');

  offset += IDLE_MS + 1_000;
  const res = await user(cookie);
  expect(res.status).toBe(401);
  expect(await res.json()).toMatchObject({ error: 'unauthenticated' });
  // Redis' own TTL (real time) has not run out: only the gateway can have deleted it.
  expect(await storedValue(world.redis!, cookie)).toBe('');
  expect(await storedTtl(world.redis!, cookie)).toBe(-2);
  expect(await logoutsOf(gateway, 'timeout')).toBe(timeoutsBefore + 1);
  expect((await api(cookie)).status).toBe(401);
});

test('the idle timeout slides with use: a session used before its idle deadline outlives it', async () => {
  const cookie = await loginAt(world, gateway);
  const created = (await recordOf(gateway, cookie))!;
  const originalIdleDeadline = created.lastSeenAt + IDLE_MS;

  offset += STEP_MS;
  expect((await api(cookie)).status).toBe(200);
  offset += STEP_MS;
  expect(clock()).toBeGreaterThan(originalIdleDeadline);
  const res = await user(cookie);
  expect(res.status).toBe(200);
  const body = (await res.json()) as { session: { idleExpiresAt: string } };
  expect(Date.parse(body.session.idleExpiresAt)).toBeGreaterThan(originalIdleDeadline);
});

test('the absolute timeout does not slide: constant use does not keep a session past it', async () => {
  const cookie = await loginAt(world, gateway);
  const created = (await recordOf(gateway, cookie))!;
  const absoluteDeadline = created.createdAt + ABSOLUTE_MS;

  for (let step = 1; step * STEP_MS < ABSOLUTE_MS; step++) {
    offset = step * STEP_MS;
    const res = await user(cookie);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { session: { expiresAt: string } };
    expect(Date.parse(body.session.expiresAt)).toBe(absoluteDeadline);
  }
  // Last use was at 120s, so the idle deadline (180s) is still ahead: only the absolute one ends it.
  offset = ABSOLUTE_MS + 1_000;
  expect((await api(cookie)).status).toBe(401);
  expect(await storedValue(world.redis!, cookie)).toBe('');
});

test('the store TTL is the earlier of the idle and the absolute deadline', async () => {
  const cookie = await loginAt(world, gateway);
  const afterLogin = await storedTtl(world.redis!, cookie);
  expect(afterLogin).toBeLessThanOrEqual(IDLE_MS);
  expect(afterLogin).toBeGreaterThan(IDLE_MS - TTL_SLACK_MS);

  // At 120s the slid idle deadline would be 180s, past the absolute 150s: the TTL follows the latter.
  for (const at of [STEP_MS, 2 * STEP_MS, 3 * STEP_MS]) {
    offset = at;
    expect((await user(cookie)).status).toBe(200);
  }
  const nearEnd = await storedTtl(world.redis!, cookie);
  expect(nearEnd).toBeLessThanOrEqual(ABSOLUTE_MS - 3 * STEP_MS);
  expect(nearEnd).toBeGreaterThan(ABSOLUTE_MS - 3 * STEP_MS - TTL_SLACK_MS);
});

test('/auth/user reports expiresAt and idleExpiresAt from the configured timeouts', async () => {
  const before = clock();
  const cookie = await loginAt(world, gateway);
  const after = clock();
  const res = await user(cookie);
  const body = (await res.json()) as { session: { expiresAt: string; idleExpiresAt: string } };
  const record = (await recordOf(gateway, cookie))!;
  expect(record.createdAt).toBeGreaterThanOrEqual(before);
  expect(record.createdAt).toBeLessThanOrEqual(after);
  expect(body.session.expiresAt).toBe(new Date(record.createdAt + ABSOLUTE_MS).toISOString());
  expect(body.session.idleExpiresAt).toBe(new Date(record.lastSeenAt + IDLE_MS).toISOString());

  offset = STEP_MS;
  const requested = clock();
  const later = (await (await user(cookie)).json()) as { session: { expiresAt: string; idleExpiresAt: string } };
  const answered = clock();
  expect(later.session.expiresAt).toBe(body.session.expiresAt);
  expect(Date.parse(later.session.idleExpiresAt)).toBeGreaterThanOrEqual(requested + IDLE_MS);
  expect(Date.parse(later.session.idleExpiresAt)).toBeLessThanOrEqual(answered + IDLE_MS);
});

test('on the real clock, a session that idles out is a 401, gone from the store, and counted as a timeout logout', async () => {
  // Redis expires the record at the idle deadline by itself: the gateway must still count it.
  const realTime = await world.startGateway({}, { session: { idleTimeout: '1s', absoluteTimeout: '2s' } });
  const cookie = await loginAt(world, realTime);
  expect((await fetch(`${realTime.url}/auth/user`, { headers: apiHeaders(cookie) })).status).toBe(200);
  const timeoutsBefore = await logoutsOf(realTime, 'timeout');
  const deadline = Date.now() + 1_000;
  await vi.waitFor(() => expect(Date.now()).toBeGreaterThan(deadline + 200), { timeout: 3_000, interval: 100 });

  const res = await fetch(`${realTime.url}/auth/user`, { headers: apiHeaders(cookie) });
  expect(res.status).toBe(401);
  expect(await res.json()).toMatchObject({ error: 'unauthenticated' });
  expect(await storedTtl(world.redis!, cookie)).toBe(-2);
  expect(await logoutsOf(realTime, 'timeout')).toBe(timeoutsBefore + 1);
});

test('a timed-out session is counted once however often its cookie returns; a logged-out one never', async () => {
  const realTime = await world.startGateway({}, { session: { idleTimeout: '1s', absoluteTimeout: '2s' } });
  const idle = await loginAt(world, realTime);
  const loggedOut = await loginAt(world, realTime);
  const logout = await fetch(`${realTime.url}/auth/logout`, { method: 'POST', headers: apiHeaders(loggedOut) });
  expect(logout.status).toBe(200);
  const timeoutsBefore = await logoutsOf(realTime, 'timeout');
  const deadline = Date.now() + 1_000;
  await vi.waitFor(() => expect(Date.now()).toBeGreaterThan(deadline + 200), { timeout: 3_000, interval: 100 });

  const statuses = await Promise.all(
    [idle, idle, idle, loggedOut, loggedOut].map(
      async (cookie) => (await fetch(`${realTime.url}/auth/user`, { headers: apiHeaders(cookie) })).status,
    ),
  );
  expect(statuses).toEqual([401, 401, 401, 401, 401]);
  expect(await logoutsOf(realTime, 'timeout')).toBe(timeoutsBefore + 1);
});
