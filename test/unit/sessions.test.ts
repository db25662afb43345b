/**
 * Sessions and the session behind a request (src/session/sessions.ts, request-session.ts) on the
 * memory store with a manual clock: lifetimes, the lazy idle slide, timeouts reported once, and
 * the sid/sub lookups back-channel logout relies on. No process, no waiting.
 */
import { expect, test } from 'vitest';
import { Sessions } from '../../src/session/sessions.ts';
import { tokenWorld } from '../support/token-world.ts';

const IDLE_MS = 2 * 3_600_000;

test('a new session is stored sealed under the hash of its id, never in clear', async () => {
  const w = tokenWorld();
  const s = await w.session();
  expect(s.handle).toBe(Sessions.handleOf(s.id));
  const sealed = (await w.store.get(s.handle)) as string;
  for (const secret of ['at-0', 'rt-0', 'id-0', 'alice', s.id]) expect(sealed).not.toContain(secret);
  const found = await w.main.requestSessions.fromHeaders({ cookie: s.cookieHeader });
  expect(found).toMatchObject({ id: s.id, handle: s.handle, renewCookie: false });
  expect(found?.record.tokens.accessToken).toBe('at-0');
});

test('no cookie, a forged cookie or an unknown id: no session, and nothing counted', async () => {
  const w = tokenWorld();
  const s = await w.session();
  expect(await w.main.requestSessions.fromHeaders({})).toBeUndefined();
  expect(
    await w.main.requestSessions.fromHeaders({ cookie: s.cookieHeader.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')) }),
  ).toBeUndefined();
  expect(w.main.timeouts).toBe(0);
});

test('the idle timeout ends a session; the timeout is reported once however many requests carry the cookie', async () => {
  const w = tokenWorld();
  const s = await w.session();
  w.clock.advance(IDLE_MS);
  expect(await w.main.requestSessions.fromHeaders({ cookie: s.cookieHeader })).toBeUndefined();
  expect(await w.main.requestSessions.fromHeaders({ cookie: s.cookieHeader })).toBeUndefined();
  expect(w.main.timeouts).toBe(1);
  // Another instance seeing the same cookie later does not count it again.
  const other = w.instance();
  expect(await other.requestSessions.fromHeaders({ cookie: s.cookieHeader })).toBeUndefined();
  expect(other.timeouts).toBe(0);
});

test('a session that was logged out is no timeout', async () => {
  const w = tokenWorld();
  const s = await w.session();
  await w.main.sessions.destroy(s.handle, s.record);
  expect(await w.main.requestSessions.fromHeaders({ cookie: s.cookieHeader })).toBeUndefined();
  expect(w.main.timeouts).toBe(0);
});

test('use slides the idle timeout lazily; the absolute timeout never moves', async () => {
  const w = tokenWorld();
  const s = await w.session();
  const absolute = s.record.absoluteExpiresAt;
  const written = s.sealed;
  w.clock.advance(1_000);
  await w.main.sessions.touch(s);
  expect(await w.store.get(s.handle)).toBe(written);
  // A tenth of the idle window (capped at a minute) later, the touch writes.
  w.clock.advance(60_000);
  await w.main.sessions.touch(s);
  expect(await w.store.get(s.handle)).not.toBe(written);
  expect(s.record.lastSeenAt).toBe(w.clock.now());
  expect(s.record.absoluteExpiresAt).toBe(absolute);
  // Kept alive by use (an hour apart, inside the idle timeout), it lives until the absolute
  // timeout (12 h by default) and ends there.
  for (let hour = 1; hour <= 11; hour += 1) {
    w.clock.advance(3_600_000);
    expect(w.clock.now()).toBeLessThan(absolute);
    const found = await w.main.requestSessions.fromHeaders({ cookie: s.cookieHeader });
    expect(found, `alive after ${hour} h of use`).toBeDefined();
    await w.main.sessions.touch(found!);
    expect(found!.record.lastSeenAt).toBe(w.clock.now());
  }
  w.clock.advance(3_600_000);
  expect(w.clock.now()).toBeGreaterThanOrEqual(absolute);
  expect(await w.main.requestSessions.fromHeaders({ cookie: s.cookieHeader })).toBeUndefined();
});

test('cookieMaxAge runs until the absolute timeout', async () => {
  const w = tokenWorld();
  const s = await w.session();
  w.clock.advance(3_600_000);
  expect(w.main.requestSessions.cookieMaxAge(s)).toBe(11 * 3600);
});

test('findBy finds live sessions by IdP sid and by sub, and skips ended ones', async () => {
  const w = tokenWorld();
  const a = await w.session();
  const b = await w.session();
  expect((await w.main.sessions.findBy('sub', 'alice')).map((s) => s.handle).sort()).toEqual([a.handle, b.handle].sort());
  await w.main.sessions.destroy(a.handle, a.record);
  expect((await w.main.sessions.findBy('sid', 'idp-sid-1')).map((s) => s.handle)).toEqual([b.handle]);
  expect(await w.main.sessions.findBy('sub', 'bob')).toEqual([]);
});
