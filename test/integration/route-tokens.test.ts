/**
 * Per-route tokens on session routes (docs/http-interface.md#route-tokens): a `token: user` route with
 * `audience`/`scopes` carries a token minted for it from the session's grant (here a
 * `refresh_token` grant with RFC 8707 `resource`, since the embedded IdP has no token exchange),
 * cached in the session, minted once per session across concurrent requests, refreshed after an
 * upstream rejection, and never echoed back. Minting rotates the refresh token, so the next
 * main refresh must present the rotated one.
 */
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, beforeEach, expect, test } from 'vitest';
import { login } from '../support/login.ts';
import { bearerSeen } from '../support/upstream.ts';
import { apiHeaders, apiStatus, startWorld, type World } from '../support/world.ts';

const ORDERS = 'https://orders.internal';
const MAIN_AUDIENCE = 'http://api.local';

let world: World;

beforeAll(async () => {
  world = await startWorld({
    store: 'redis',
    idp: { extraResources: [{ audience: ORDERS, scope: 'orders.read' }] },
    // The session's grant must cover the route's scope: it is requested at login.
    config: { oidc: { scopes: ['openid', 'profile', 'email', 'api', 'orders.read'] } },
    routes: (upstream) => [
      { path: '/orders', upstream: upstream.url, token: 'user', audience: ORDERS, scopes: ['orders.read'] },
      { path: '/api', upstream: upstream.url, token: 'user' },
      { path: '/', upstream: upstream.url, token: 'none' },
    ],
  });
});
afterAll(() => world?.close());

beforeEach(() => {
  world.idp.faults.token = 'none';
  world.upstream.rejectTokens.clear();
});

function routeGrants(from: number): Array<Record<string, string>> {
  return world.idp.tokenRequests
    .slice(from)
    .filter((r) => r.grantType === 'refresh_token' && r.params.resource === ORDERS)
    .map((r) => r.params);
}

test('/orders carries a token for the orders audience and scope, /api the session token; the route token is cached', async () => {
  const session = await login(world.url);
  const from = world.idp.tokenRequests.length;

  expect(await apiStatus(world.url, '/orders/echo?m=o1', session.cookieHeader)).toBe(200);
  const orders = decodeJwt(bearerSeen(world.upstream, '?m=o1'));
  expect(orders.aud).toBe(ORDERS);
  expect(String(orders.scope).split(' ')).toEqual(['orders.read']);
  expect(routeGrants(from)).toHaveLength(1);
  expect(routeGrants(from)[0]?.scope).toBe('orders.read');

  expect(await apiStatus(world.url, '/api/echo?m=a1', session.cookieHeader)).toBe(200);
  const api = decodeJwt(bearerSeen(world.upstream, '?m=a1'));
  expect(api.aud).toBe(MAIN_AUDIENCE);
  expect(bearerSeen(world.upstream, '?m=a1')).not.toBe(bearerSeen(world.upstream, '?m=o1'));

  const requests = world.idp.tokenRequests.length;
  expect(await apiStatus(world.url, '/orders/echo?m=o2', session.cookieHeader)).toBe(200);
  expect(bearerSeen(world.upstream, '?m=o2')).toBe(bearerSeen(world.upstream, '?m=o1'));
  expect(world.idp.tokenRequests.length).toBe(requests);
});

test('50 concurrent /orders requests on a fresh session: one grant; a later main refresh presents the rotated refresh token', async () => {
  const session = await login(world.url);
  const from = world.idp.tokenRequests.length;
  const statuses = await Promise.all(
    Array.from({ length: 50 }, (_, i) => apiStatus(world.url, `/orders/echo?burst=${i}`, session.cookieHeader)),
  );
  expect(statuses).toEqual(Array(50).fill(200));
  const minted = routeGrants(from);
  expect(minted).toHaveLength(1);
  const tokens = new Set(world.upstream.requests.filter((r) => r.url.includes('/echo?burst=')).map((r) => String(r.headers.authorization)));
  expect(tokens.size).toBe(1);

  // A second gateway whose refresh window covers the whole token lifetime refreshes the main token.
  const eager = await world.startGateway({}, { tokens: { refreshBeforeExpiry: '1h' } });
  const before = world.idp.tokenRequests.length;
  expect(await apiStatus(eager.url, '/api/echo?m=main', session.cookieHeader)).toBe(200);
  const main = world.idp.tokenRequests.slice(before).filter((r) => r.grantType === 'refresh_token');
  expect(main).toHaveLength(1);
  expect(main[0]?.params.resource).toBeUndefined();
  // The route mint consumed the login's refresh token; the main refresh used the rotated one.
  expect(main[0]?.params.refresh_token).not.toBe(minted[0]?.refresh_token);
  const metric = await eager.gateway.services.metrics.tokenRefresh.get();
  expect(metric.values.find((v) => v.labels.result === 'invalid_grant')?.value ?? 0).toBe(0);
  expect(decodeJwt(bearerSeen(world.upstream, '?m=main')).aud).toBe(MAIN_AUDIENCE);
  // The session is alive on both gateways.
  expect(await apiStatus(world.url, '/api/echo?m=alive', session.cookieHeader)).toBe(200);
  expect(await apiStatus(world.url, '/orders/echo?m=alive', session.cookieHeader)).toBe(200);
});

test('an upstream 401 invalid_token on /orders mints a new route token once and replays', async () => {
  const session = await login(world.url);
  expect(await apiStatus(world.url, '/orders/echo?m=r1', session.cookieHeader)).toBe(200);
  const rejected = bearerSeen(world.upstream, '?m=r1');
  const mainBefore = decodeJwt(rejected).aud === ORDERS;
  expect(mainBefore).toBe(true);
  world.upstream.rejectTokens.add(rejected);
  const from = world.idp.tokenRequests.length;

  expect(await apiStatus(world.url, '/orders/protected?m=r2', session.cookieHeader)).toBe(200);
  expect(routeGrants(from)).toHaveLength(1);
  const replayed = world.upstream.requests
    .filter((r) => r.url.endsWith('?m=r2'))
    .map((r) => String(r.headers.authorization).replace(/^Bearer /, ''));
  expect(replayed).toHaveLength(2);
  expect(replayed[0]).toBe(rejected);
  expect(replayed[1]).not.toBe(rejected);
  expect(decodeJwt(replayed[1] as string).aud).toBe(ORDERS);
  // The main token was not touched by the route refresh.
  expect(
    world.idp.tokenRequests.slice(from).filter((r) => r.grantType === 'refresh_token' && r.params.resource === undefined),
  ).toHaveLength(0);
});

test('the route token never reaches the browser', async () => {
  const session = await login(world.url);
  const res = await fetch(`${world.url}/orders/leak?m=l1`, { headers: apiHeaders(session.cookieHeader) });
  const body = await res.text();
  const token = bearerSeen(world.upstream, '?m=l1');
  expect(decodeJwt(token).aud).toBe(ORDERS);
  expect(body).not.toContain(token);
  expect(body).toContain('[redacted]');
  expect(res.headers.get('x-access-token')).toBeNull();
});

test('a refused route mint ends the session (401 session_expired); an unavailable IdP without a route token is a 503', async () => {
  const unavailable = await login(world.url);
  world.idp.faults.token = 'http503';
  const down = await fetch(`${world.url}/orders/echo`, { headers: apiHeaders(unavailable.cookieHeader) });
  expect(down.status).toBe(503);
  expect(((await down.json()) as { error: string }).error).toBe('idp_unavailable');
  world.idp.faults.token = 'none';
  expect(await apiStatus(world.url, '/api/echo', unavailable.cookieHeader)).toBe(200);

  const refused = await login(world.url);
  world.idp.faults.token = 'invalid_grant';
  const gone = await fetch(`${world.url}/orders/echo`, { headers: apiHeaders(refused.cookieHeader) });
  expect(gone.status).toBe(401);
  expect(((await gone.json()) as { error: string }).error).toBe('session_expired');
  world.idp.faults.token = 'none';
  expect(await apiStatus(world.url, '/api/echo', refused.cookieHeader)).toBe(401);
});

test.each(['invalid_target', 'invalid_scope'] as const)(
  'a route mint refused with %s is a configuration problem: 502 bad_gateway, session kept',
  async (fault) => {
    const session = await login(world.url);
    world.idp.faults.token = fault;
    const res = await fetch(`${world.url}/orders/echo?m=${fault}`, { headers: apiHeaders(session.cookieHeader) });
    expect(res.status).toBe(502);
    expect(((await res.json()) as { error: string }).error).toBe('bad_gateway');
    expect(res.headers.getSetCookie()).toEqual([]);
    world.idp.faults.token = 'none';
    // The grant is fine: the session still works, on its main token and, once fixed, on the route.
    expect(await apiStatus(world.url, '/api/echo', session.cookieHeader)).toBe(200);
    expect(await apiStatus(world.url, '/orders/echo', session.cookieHeader)).toBe(200);
  },
);
