/**
 * Forward-auth handing out the access token (docs/authorization.md, *Forward-auth*, "The access
 * token (`forwardAuthToken`)"; src/auth/check.ts). The check endpoint is called as Envoy's
 * `path_prefix` calls it (`/auth/check/<original path>`, no `trustProxy`), with the ingress's
 * `X-Forward-Auth-Secret`:
 *
 * - on a `user` route with `forwardAuthToken: true` the 200 carries `Authorization: Bearer
 *   <the session's access token>` — the very token the proxy sends upstream for that session;
 *   on a `client` route with it, the gateway's client-credentials token;
 * - no token on a route without `forwardAuthToken`, on a `none` route, on a path no route
 *   matches, without the secret (403), or without a session (401);
 * - a token inside the refresh window is refreshed before it is handed out: concurrent checks
 *   cost one refresh grant at the IdP and all hand out the new token, which the upstream accepts
 *   and the proxy then uses without another grant. The refreshing gateway's clock is moved
 *   forward (a second instance on the same Redis), so no test sleeps.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { login, type LoginResult } from '../support/login.ts';
import { bearerOf } from '../support/upstream.ts';
import { apiHeaders, startWorld, type RunningGateway, type World } from '../support/world.ts';

const SECRET = 'forward-auth-secret-0123456789abcdefghij';
// Tokens live 300 s; 280 s later they are inside the default 30 s refresh window.
const SKEW_MS = 280_000;

let world: World;
let skewed: RunningGateway;

beforeAll(async () => {
  world = await startWorld({
    store: 'redis',
    config: { forwardAuth: { secret: SECRET } },
    routes: (upstream) => [
      { path: '/tok', upstream: upstream.url, token: 'user', forwardAuthToken: true },
      { path: '/svc', upstream: upstream.url, token: 'client', forwardAuthToken: true },
      { path: '/plain', upstream: upstream.url, token: 'user' },
      { path: '/open', upstream: upstream.url, token: 'none' },
    ],
  });
  skewed = await world.startGateway({ now: () => Date.now() + SKEW_MS });
});
afterAll(() => world?.close());

interface CheckAnswer {
  status: number;
  authorization: string | null;
  body: unknown;
}

async function check(base: string, path: string, headers: Record<string, string>): Promise<CheckAnswer> {
  const res = await fetch(`${base}/auth/check${path}`, { headers });
  return { status: res.status, authorization: res.headers.get('authorization'), body: await res.json() };
}

const asIngress = (session: LoginResult): Record<string, string> => ({ cookie: session.cookieHeader, 'x-forward-auth-secret': SECRET });

/** The bearer token the upstream received for a proxied request through `base` (which must be accepted). */
async function proxiedToken(base: string, session: LoginResult, path: string): Promise<string> {
  const res = await fetch(`${base}${path}`, { headers: apiHeaders(session.cookieHeader) });
  expect(res.status).toBe(200);
  await res.body?.cancel();
  const seen = world.upstream.requests.filter((r) => r.url === path).at(-1);
  expect(seen?.auth?.ok).toBe(true);
  return bearerOf(seen?.headers ?? {});
}

describe('forwardAuthToken', () => {
  test("a user route with forwardAuthToken: the check's 200 carries the session's access token, the one the proxy sends upstream", async () => {
    const session = await login(world.url);
    const grants = world.idp.counters.refreshGrants;
    const answer = await check(world.url, '/tok/orders?x=1', asIngress(session));
    expect(answer).toMatchObject({ status: 200, body: { status: 'ok' } });
    const handedOut = /^Bearer (\S+)$/.exec(answer.authorization ?? '')?.[1];
    expect(handedOut, String(answer.authorization)).toBeDefined();

    expect(await proxiedToken(world.url, session, '/tok/protected?probe=user')).toBe(handedOut);
    // A fresh token is handed out as it is.
    expect(world.idp.counters.refreshGrants).toBe(grants);

    // Another session, another token.
    const other = await login(world.url, { user: 'bob' });
    const otherAnswer = await check(world.url, '/tok/orders', asIngress(other));
    expect(otherAnswer.status).toBe(200);
    expect(otherAnswer.authorization).toMatch(/^Bearer \S+$/);
    expect(otherAnswer.authorization).not.toBe(answer.authorization);
  });

  test('a client route with forwardAuthToken: the check hands out the client-credentials token the proxy sends, and only with a session', async () => {
    const session = await login(world.url);
    const answer = await check(world.url, '/svc/jobs', asIngress(session));
    expect(answer.status).toBe(200);
    const handedOut = /^Bearer (\S+)$/.exec(answer.authorization ?? '')?.[1];
    expect(handedOut, String(answer.authorization)).toBeDefined();
    expect(await proxiedToken(world.url, session, '/svc/protected?probe=client')).toBe(handedOut);
    expect(handedOut).not.toBe(await proxiedToken(world.url, session, '/tok/protected?probe=user-vs-client'));

    const anonymous = await check(world.url, '/svc/jobs', { 'x-forward-auth-secret': SECRET });
    expect([anonymous.status, anonymous.body, anonymous.authorization]).toEqual([
      401,
      expect.objectContaining({ error: 'unauthenticated' }),
      null,
    ]);
  });

  test('no token without forwardAuthToken, on a none route, on a path no route matches, without the secret, without a session', async () => {
    const session = await login(world.url);
    for (const path of ['/plain/orders', '/open/page', '/elsewhere']) {
      const answer = await check(world.url, path, asIngress(session));
      expect([path, answer.status, answer.authorization]).toEqual([path, 200, null]);
    }
    // The route asks for the token, the caller is not the ingress: refused, nothing handed out.
    for (const secret of [undefined, 'x'.repeat(SECRET.length)]) {
      const answer = await check(world.url, '/tok/orders', {
        cookie: session.cookieHeader,
        ...(secret ? { 'x-forward-auth-secret': secret } : {}),
      });
      expect([answer.status, answer.body, answer.authorization]).toEqual([403, expect.objectContaining({ error: 'forbidden' }), null]);
    }
    const anonymous = await check(world.url, '/tok/orders', { 'x-forward-auth-secret': SECRET });
    expect([anonymous.status, anonymous.body, anonymous.authorization]).toEqual([
      401,
      expect.objectContaining({ error: 'unauthenticated' }),
      null,
    ]);
  });

  test('a token about to expire is refreshed before it is handed out: concurrent checks, one refresh grant, all the new token, which the proxy then uses', async () => {
    const session = await login(world.url);
    const before = await proxiedToken(world.url, session, '/tok/protected?probe=before-refresh');
    const grants = world.idp.counters.refreshGrants;

    const answers = await Promise.all(Array.from({ length: 5 }, () => check(skewed.url, '/tok/orders', asIngress(session))));
    expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200, 200, 200]);
    const handedOut = new Set(answers.map((answer) => answer.authorization));
    expect(handedOut.size).toBe(1);
    const fresh = /^Bearer (\S+)$/.exec([...handedOut][0] ?? '')?.[1];
    expect(fresh).toBeDefined();
    expect(fresh).not.toBe(before);
    expect(world.idp.counters.refreshGrants - grants).toBe(1);

    // The new token is stored with the session: the upstream accepts it, the proxy sends it,
    // and no further grant is needed.
    expect(await proxiedToken(skewed.url, session, '/tok/protected?probe=after-refresh')).toBe(fresh);
    expect(await proxiedToken(world.url, session, '/tok/protected?probe=after-refresh-other')).toBe(fresh);
    expect(world.idp.counters.refreshGrants - grants).toBe(1);
  });
});
