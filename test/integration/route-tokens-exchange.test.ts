/**
 * Per-route tokens through RFC 8693 token exchange (docs/http-interface.md#route-tokens): when discovery lists
 * the token-exchange grant, a route with `audience`/`scopes` gets its token by exchanging the
 * session's access token — made fresh first — and the refresh token is left alone.
 */
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, beforeEach, expect, test } from 'vitest';
import { TOKEN_EXCHANGE } from '../../fixtures/idp/idp-token-exchange.ts';
import { login } from '../support/login.ts';
import { bearerSeen } from '../support/upstream.ts';
import { apiStatus, startWorld, type World } from '../support/world.ts';

const ORDERS = 'https://orders.internal';
// Tokens live 300 s; 280 s later they are inside the default 30 s refresh window.
const SKEW_MS = 280_000;

let world: World;

beforeAll(async () => {
  world = await startWorld({
    store: 'redis',
    idp: { tokenExchange: true, extraResources: [{ audience: ORDERS, scope: 'orders.read' }] },
    routes: (upstream) => [
      { path: '/orders', upstream: upstream.url, token: 'user', audience: ORDERS, scopes: ['orders.read'] },
      { path: '/api', upstream: upstream.url, token: 'user' },
      { path: '/', upstream: upstream.url, token: 'none' },
    ],
  });
});
afterAll(() => world?.close());

beforeEach(() => {
  world.upstream.rejectTokens.clear();
});

function requestsSince(from: number, grantType: string): Array<Record<string, string>> {
  return world.idp.tokenRequests
    .slice(from)
    .filter((r) => r.grantType === grantType)
    .map((r) => r.params);
}

test('50 concurrent /orders requests: one exchange of the session token for an orders token, no refresh grant', async () => {
  const session = await login(world.url);
  expect(await apiStatus(world.url, '/api/echo?m=main1', session.cookieHeader)).toBe(200);
  const mainToken = bearerSeen(world.upstream, '?m=main1');
  const from = world.idp.tokenRequests.length;

  const statuses = await Promise.all(
    Array.from({ length: 50 }, (_, i) => apiStatus(world.url, `/orders/echo?x=${i}`, session.cookieHeader)),
  );
  expect(statuses).toEqual(Array(50).fill(200));
  const exchanges = requestsSince(from, TOKEN_EXCHANGE);
  expect(exchanges).toHaveLength(1);
  expect(exchanges[0]).toMatchObject({
    subject_token: mainToken,
    subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    audience: ORDERS,
    resource: ORDERS,
    scope: 'orders.read',
  });
  expect(requestsSince(from, 'refresh_token')).toHaveLength(0);

  const carried = new Set(world.upstream.requests.filter((r) => r.url.includes('/echo?x=')).map((r) => String(r.headers.authorization)));
  expect(carried.size).toBe(1);
  const claims = decodeJwt(bearerSeen(world.upstream, '/echo?x=0'));
  expect(claims.aud).toBe(ORDERS);
  expect(claims.scope).toBe('orders.read');
  expect(claims.sub).toBe(decodeJwt(mainToken).sub);

  // Cached in the session: the next call exchanges nothing.
  expect(await apiStatus(world.url, '/orders/echo?m=again', session.cookieHeader)).toBe(200);
  expect(requestsSince(from, TOKEN_EXCHANGE)).toHaveLength(1);
});

test('an expiring session token is refreshed before it is exchanged', async () => {
  const session = await login(world.url);
  expect(await apiStatus(world.url, '/api/echo?m=old', session.cookieHeader)).toBe(200);
  const oldMain = bearerSeen(world.upstream, '?m=old');
  const skewed = await world.startGateway({ now: () => Date.now() + SKEW_MS });
  const from = world.idp.tokenRequests.length;

  expect(await apiStatus(skewed.url, '/orders/echo?m=skewed', session.cookieHeader)).toBe(200);
  const sent = world.idp.tokenRequests.slice(from).map((r) => r.grantType);
  expect(sent).toEqual(['refresh_token', TOKEN_EXCHANGE]);
  const subject = requestsSince(from, TOKEN_EXCHANGE)[0]?.subject_token;
  expect(subject).not.toBe(oldMain);
  // The refreshed main token was stored: /api now carries the token that was exchanged.
  expect(await apiStatus(skewed.url, '/api/echo?m=new', session.cookieHeader)).toBe(200);
  expect(bearerSeen(world.upstream, '?m=new')).toBe(subject);
  expect(decodeJwt(bearerSeen(world.upstream, '?m=skewed')).aud).toBe(ORDERS);
});

test('an upstream 401 invalid_token on /orders exchanges once more and replays', async () => {
  const session = await login(world.url);
  expect(await apiStatus(world.url, '/orders/echo?m=r1', session.cookieHeader)).toBe(200);
  const rejected = bearerSeen(world.upstream, '?m=r1');
  world.upstream.rejectTokens.add(rejected);
  const from = world.idp.tokenRequests.length;

  expect(await apiStatus(world.url, '/orders/protected?m=r2', session.cookieHeader)).toBe(200);
  expect(requestsSince(from, TOKEN_EXCHANGE)).toHaveLength(1);
  const replayed = world.upstream.requests
    .filter((r) => r.url.endsWith('?m=r2'))
    .map((r) => String(r.headers.authorization).replace(/^Bearer /, ''));
  expect(replayed).toEqual([rejected, expect.any(String)]);
  expect(replayed[1]).not.toBe(rejected);
  expect(decodeJwt(replayed[1] as string).aud).toBe(ORDERS);
});
