/**
 * Session administration on the admin listener: present only with `admin.token`, every call
 * needs that bearer token; list by sub, revoke by sub/sid/handle/all with the same effects as a
 * logout (the session ends on every instance, its refresh token is revoked at the IdP).
 */
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { login } from '../support/login.ts';
import { apiHeaders, startWorld, type RunningGateway, type World } from '../support/world.ts';

const TOKEN = 'admin-token-0123456789-abcdefghijklmnopqrstuvwxyz';

let world: World;
let second: RunningGateway;
let adminUrl: string;

beforeAll(async () => {
  world = await startWorld({ store: 'redis', instances: 2, config: { admin: { host: '127.0.0.1', port: 0, token: TOKEN } } });
  second = world.gateways[1] as RunningGateway;
  const admin = world.gateway.gateway.admin!;
  await admin.listen({ host: '127.0.0.1', port: 0 });
  adminUrl = `http://127.0.0.1:${(admin.server.address() as AddressInfo).port}`;
});
afterAll(() => world?.close());

const auth = { authorization: `Bearer ${TOKEN}` };
const status = async (cookie: string) => (await fetch(`${second.url}/auth/user`, { headers: apiHeaders(cookie) })).status;
const revoke = (body: unknown, headers: Record<string, string> = auth) =>
  fetch(`${adminUrl}/sessions/revoke`, {
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });

describe('admin session API', () => {
  test('refuses calls without the admin token, or with a wrong one', async () => {
    const attempts: Record<string, string>[] = [{}, { authorization: 'Bearer wrong' }, { authorization: TOKEN }];
    for (const headers of attempts) {
      const res = await fetch(`${adminUrl}/sessions`, { headers });
      expect(res.status).toBe(401);
      expect(await res.json()).toMatchObject({ error: 'unauthenticated' });
    }
    expect((await revoke({ all: true }, {})).status).toBe(401);
    // Probes stay open: orchestrators call them without credentials.
    expect((await fetch(`${adminUrl}/healthz`)).status).toBe(200);
  });

  test('lists sessions by subject without exposing ids or tokens', async () => {
    const alice = await login(world.url, { user: 'alice' });
    await login(world.url, { user: 'bob' });
    const res = await fetch(`${adminUrl}/sessions?sub=alice`, { headers: auth });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { count: number; sessions: Array<{ sub: string; handle: string }> };
    expect(body.count).toBeGreaterThanOrEqual(1);
    expect(body.sessions.every((s) => s.sub === 'alice')).toBe(true);
    const text = JSON.stringify(body);
    expect(text).not.toContain(alice.cookie.split('=')[1]!.split('.')[0]!);
    expect(text).not.toMatch(/eyJ[\w-]+\.[\w-]+\./);
  });

  test('revoking by sub ends those sessions on every instance and revokes their tokens', async () => {
    const carol = await login(world.url, { user: 'carol' });
    const dave = await login(world.url, { user: 'dave' });
    expect(await status(carol.cookieHeader)).toBe(200);
    const revocationsBefore = world.idp.counters.revocations;
    const res = await revoke({ sub: 'carol' });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ revoked: 1, sessions: [expect.objectContaining({ sub: 'carol' })] });
    expect(await status(carol.cookieHeader)).toBe(401);
    expect(await status(dave.cookieHeader)).toBe(200);
    expect(world.idp.counters.revocations).toBeGreaterThan(revocationsBefore);
  });

  test('revoking by handle ends exactly that session', async () => {
    const first = await login(world.url, { user: 'erin' });
    const other = await login(world.url, { user: 'erin' });
    const list = (await (await fetch(`${adminUrl}/sessions?sub=erin`, { headers: auth })).json()) as {
      sessions: Array<{ handle: string }>;
    };
    expect(list.sessions).toHaveLength(2);
    const res = await revoke({ handle: list.sessions[0]!.handle });
    expect(await res.json()).toMatchObject({ revoked: 1 });
    const statuses = [await status(first.cookieHeader), await status(other.cookieHeader)].sort();
    expect(statuses).toEqual([200, 401]);
  });

  test('a revoke without a selector is a 400, and nothing ends', async () => {
    const frank = await login(world.url, { user: 'frank' });
    const res = await revoke({});
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: 'invalid_request' });
    expect(await status(frank.cookieHeader)).toBe(200);
  });
});
