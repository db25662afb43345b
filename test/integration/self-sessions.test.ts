/**
 * Self-service sessions across two real gateway processes sharing Redis: a user lists the
 * sessions of every device from either instance, with no value that could be replayed, and
 * ends one or all others (refresh tokens revoked at the IdP); the ended sessions stop working
 * on every instance, the current one keeps working.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startProcessWorld, type ProcessWorld } from '../support/processes.ts';
import { loginFlow } from '../support/login-flow.ts';

const CHROME = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36';
const FIREFOX = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:120.0) Gecko/20100101 Firefox/120.0';

let world: ProcessWorld;
beforeAll(async () => {
  world = await startProcessWorld({ instances: 2 });
}, 60_000);
afterAll(async () => world?.close());

interface Listed {
  ref: string;
  current: boolean;
  device: string;
  createdAt: string;
  lastSeenAt: string;
  expiresAt: string;
}

/** A device: its own browser (cookie jar, IdP session), logged in through the gateway. */
async function device(userAgent: string): Promise<string> {
  const flow = await loginFlow(world.publicUrl, { returnTo: '/' }, { headers: { 'user-agent': userAgent } });
  expect(flow.location).toBe('/');
  return flow.jar.header(world.publicUrl);
}

function call(instance: number, path: string, cookie: string, init: RequestInit = {}): Promise<Response> {
  const base = (world.gateways[instance] as { url: string }).url;
  return fetch(`${base}${path}`, { ...init, headers: { cookie, 'x-csrf': '1', ...(init.headers as Record<string, string>) } });
}

async function list(instance: number, cookie: string): Promise<{ text: string; sessions: Listed[] }> {
  const res = await call(instance, '/auth/sessions', cookie);
  expect(res.status).toBe(200);
  const text = await res.text();
  return { text, sessions: (JSON.parse(text) as { sessions: Listed[] }).sessions };
}

function end(instance: number, cookie: string, body: unknown): Promise<Response> {
  return call(instance, '/auth/sessions/end', cookie, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

test('list on either instance; end one by ref; end all others; refresh tokens revoked', async () => {
  const laptop = await device(CHROME);
  const phone = await device(FIREFOX);
  const tablet = await device(CHROME);

  const fromSecond = await list(1, laptop);
  expect(fromSecond.sessions).toHaveLength(3);
  expect(fromSecond.sessions[0]).toMatchObject({ current: true, device: 'Chrome on Linux' });
  expect(fromSecond.sessions.filter((s) => s.current)).toHaveLength(1);
  expect(fromSecond.sessions.map((s) => s.device).sort()).toEqual(['Chrome on Linux', 'Chrome on Linux', 'Firefox on Windows']);
  for (const entry of fromSecond.sessions) {
    expect(Object.keys(entry).sort()).toEqual(['createdAt', 'current', 'device', 'expiresAt', 'lastSeenAt', 'ref']);
    expect(Date.parse(entry.expiresAt)).toBeGreaterThan(Date.parse(entry.lastSeenAt));
  }
  // Nothing in the list opens a session: no cookie value, no store handle, no logout sid.
  for (const cookie of [laptop, phone, tablet]) {
    const id = cookie.slice(cookie.indexOf('=') + 1).split('.')[0] as string;
    expect(fromSecond.text).not.toContain(id);
    expect(fromSecond.text).not.toContain(createHash('sha256').update(id).digest('base64url'));
    const user = (await (await call(0, '/auth/user', cookie)).json()) as { logoutUrl: string };
    expect(fromSecond.text).not.toContain(new URL(user.logoutUrl).searchParams.get('sid'));
  }
  const fromFirst = await list(0, phone);
  expect(fromFirst.sessions.map((s) => s.ref).sort()).toEqual(fromSecond.sessions.map((s) => s.ref).sort());
  // A ref is not a cookie.
  const asCookie = await call(0, '/auth/user', `bff-session=${fromSecond.sessions[1]?.ref}`);
  expect(asCookie.status).toBe(401);

  // End the tablet from the laptop, by its ref (found from the tablet's own listing).
  const tabletRef = (await list(0, tablet)).sessions.find((s) => s.current)?.ref as string;
  const revocations = world.idp.counters.revocations;
  const ended = await end(0, laptop, { session: tabletRef });
  expect(ended.status).toBe(200);
  expect(await ended.text()).toBe('{"ended":1}');
  expect((await call(1, '/auth/user', tablet)).status).toBe(401);
  expect(world.idp.counters.revocations).toBeGreaterThan(revocations);

  // The current session cannot be ended here, unknown refs are 404, malformed bodies 400.
  const currentRef = (await list(0, laptop)).sessions.find((s) => s.current)?.ref;
  expect((await end(0, laptop, { session: currentRef })).status).toBe(400);
  expect((await end(0, laptop, { session: tabletRef })).status).toBe(404);
  for (const bad of [{}, { others: false }, { session: 'a b' }, { session: 'x', others: true }, []]) {
    const res = await end(1, laptop, bad);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe('invalid_request');
  }

  // "Log out other devices" from the second instance.
  const others = await end(1, laptop, { others: true });
  expect(await others.text()).toBe('{"ended":1}');
  expect((await call(0, '/auth/user', phone)).status).toBe(401);
  expect((await call(0, '/auth/user', laptop)).status).toBe(200);
  expect((await list(1, laptop)).sessions).toHaveLength(1);
  // The laptop's session still reaches the API with its token.
  expect((await call(0, '/api/hello', laptop)).status).toBe(200);
});

test('x-csrf and a session are required', async () => {
  const cookie = await device(CHROME);
  const noCsrf = await fetch(`${world.publicUrl}/auth/sessions`, { headers: { cookie } });
  expect(noCsrf.status).toBe(403);
  const noSession = await fetch(`${world.publicUrl}/auth/sessions`, { headers: { 'x-csrf': '1' } });
  expect(noSession.status).toBe(401);
  const endNoCsrf = await fetch(`${world.publicUrl}/auth/sessions/end`, {
    method: 'POST',
    headers: { cookie, 'content-type': 'application/json' },
    body: '{"others":true}',
  });
  expect(endNoCsrf.status).toBe(403);
});
