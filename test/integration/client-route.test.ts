/**
 * `token: client` routes (docs/http-interface.md#route-tokens): the gateway's own client-credentials token,
 * no session needed, CSRF rules still apply, one fetch at a time and cached until shortly
 * before expiry, a fresh token after an upstream 401 invalid_token.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { CLIENT_ID, startWorld, type World } from '../support/world.ts';

let world: World;

beforeAll(async () => {
  world = await startWorld({
    routes: (upstream) => [
      { path: '/svc', upstream: upstream.url, token: 'client' },
      { path: '/', upstream: upstream.url, token: 'none' },
    ],
  });
});

afterAll(() => world?.close());

beforeEach(() => {
  world.idp.faults.token = 'none';
  world.upstream.rejectTokens.clear();
});

const csrf = { 'x-csrf': '1' };

function lastBearer(): string | undefined {
  const auth = world.upstream.requests.at(-1)?.headers.authorization;
  return auth?.replace(/^Bearer /, '');
}

describe('token: client routes', () => {
  test('carry a client-credentials token without any session, fetched once and cached', async () => {
    const before = world.idp.counters.clientCredentialsGrants;
    const responses = await Promise.all(Array.from({ length: 20 }, () => fetch(`${world.url}/svc/protected`, { headers: csrf })));
    expect(responses.map((r) => r.status)).toEqual(Array(20).fill(200));
    expect(world.upstream.requests.at(-1)?.auth?.ok).toBe(true);
    // A token for the gateway itself: its subject is the client, not a user.
    expect(world.upstream.requests.at(-1)?.auth?.claims?.sub).toBe(CLIENT_ID);
    expect(world.idp.counters.clientCredentialsGrants - before).toBe(1);
    const again = await fetch(`${world.url}/svc/protected`, { headers: csrf });
    expect(again.status).toBe(200);
    expect(world.idp.counters.clientCredentialsGrants - before).toBe(1);
  });

  test('still require the CSRF header and a same-origin Origin', async () => {
    const count = world.upstream.requests.length;
    expect((await fetch(`${world.url}/svc/protected`)).status).toBe(403);
    expect((await fetch(`${world.url}/svc/protected`, { headers: { ...csrf, origin: 'https://evil.example' } })).status).toBe(403);
    expect(world.upstream.requests.length).toBe(count);
  });

  test('replace the browser Authorization header', async () => {
    await fetch(`${world.url}/svc/echo`, { headers: { ...csrf, authorization: 'Bearer from-the-browser' } });
    expect(lastBearer()).not.toBe('from-the-browser');
    expect(world.upstream.requests.at(-1)?.auth?.ok).toBe(true);
  });

  test('fetch a new token once after an upstream 401 invalid_token and replay', async () => {
    await fetch(`${world.url}/svc/protected`, { headers: csrf });
    const rejected = lastBearer() as string;
    world.upstream.rejectTokens.add(rejected);
    const before = world.idp.counters.clientCredentialsGrants;
    const response = await fetch(`${world.url}/svc/protected`, { headers: csrf });
    expect(response.status).toBe(200);
    expect(lastBearer()).not.toBe(rejected);
    expect(world.idp.counters.clientCredentialsGrants - before).toBe(1);
  });

  test('never echo the client token back to the browser', async () => {
    const response = await fetch(`${world.url}/svc/leak`, { headers: csrf });
    const body = await response.text();
    const token = lastBearer() as string;
    expect(token.length).toBeGreaterThan(20);
    expect(body).not.toContain(token);
    expect(body).toContain('[redacted]');
    expect(response.headers.get('x-access-token')).toBeNull();
  });

  test("ask for the route's own scopes", async () => {
    const narrow = await world.startGateway(
      {},
      { routes: [{ path: '/orders', upstream: world.upstream.url, token: 'client', scopes: ['orders.read'] }] },
    );
    const response = await fetch(`${narrow.url}/orders/protected`, { headers: csrf });
    expect(response.status).toBe(200);
    expect(world.idp.tokenRequests.at(-1)).toMatchObject({ grantType: 'client_credentials', params: { scope: 'orders.read' } });
    expect(String(world.upstream.requests.at(-1)?.auth?.claims?.scope).split(' ')).toEqual(['orders.read']);
  });

  test('answer 503 idp_unavailable when the IdP cannot issue a token', async () => {
    // A fresh gateway has no cached token; the IdP refuses service.
    const second = await world.startGateway();
    world.idp.faults.token = 'http503';
    const response = await fetch(`${second.url}/svc/protected`, { headers: csrf });
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({ error: 'idp_unavailable' });
  });
});
