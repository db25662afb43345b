/**
 * The error format (docs/http-interface.md#errors): every error the gateway authors is JSON
 * `{error, message}` with `cache-control: no-store` and no internals; and a dead session store
 * is a fast 503 on session routes while token-less routes keep working.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { login, type LoginResult } from '../support/login.ts';
import { rawRequest } from '../support/raw-http.ts';
import { freePort } from '../support/redis.ts';
import { apiHeaders, startWorld, type World } from '../support/world.ts';

let world: World;
let session: LoginResult;

beforeAll(async () => {
  const closedPort = await freePort();
  world = await startWorld({
    store: 'redis',
    routes: (upstream) => [
      { path: '/api', upstream: upstream.url, token: 'user' },
      { path: '/quick', upstream: upstream.url, token: 'none', timeout: '200ms' },
      { path: '/down', upstream: `http://127.0.0.1:${closedPort}`, token: 'none' },
      { path: '/static', upstream: upstream.url, token: 'none' },
    ],
  });
  session = await login(world.url);
});
afterAll(() => world?.close());

// Bounds a request so a hang fails the test instead of stalling the file: not a timing check.
const bounded = (init: RequestInit = {}): RequestInit => ({ ...init, signal: AbortSignal.timeout(10_000) });

function expectContractError(status: number, headers: Headers, text: string, expected: { status: number; code: string }): void {
  expect({ status, code: (JSON.parse(text) as { error?: string }).error }).toEqual(expected);
  expect(headers.get('content-type')).toMatch(/^application\/json/);
  expect(headers.get('cache-control')).toContain('no-store');
  const body = JSON.parse(text) as Record<string, unknown>;
  expect(Object.keys(body).sort()).toEqual(['error', 'message']);
  expect(typeof body.message).toBe('string');
  expect(text).not.toMatch(/\bat .+:\d+:\d+|\.ts\b|\.js:\d|node_modules|stack|Error:/);
}

describe('error responses', () => {
  const cases: Array<[string, () => Promise<Response>, number, string]> = [
    ['no session on a user route', () => fetch(`${world.url}/api/echo`, { headers: { 'x-csrf': '1' } }), 401, 'unauthenticated'],
    ['missing CSRF header', () => fetch(`${world.url}/api/echo`, { headers: { cookie: session.cookieHeader } }), 403, 'csrf_required'],
    ['bad returnTo', () => fetch(`${world.url}/auth/login?returnTo=//evil.example`, { redirect: 'manual' }), 400, 'invalid_return_to'],
    ['callback without state', () => fetch(`${world.url}/auth/callback?code=abc`), 400, 'login_failed'],
    [
      'logout link with a wrong sid',
      () => fetch(`${world.url}/auth/logout?sid=wrong`, { headers: { cookie: session.cookieHeader }, redirect: 'manual' }),
      400,
      'invalid_request',
    ],
    [
      'back-channel logout without a token',
      () =>
        fetch(`${world.url}/auth/backchannel-logout`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: 'x=1',
        }),
      400,
      'invalid_request',
    ],
    ['no matching route', () => fetch(`${world.url}/nothing/here`), 404, 'not_found'],
    [
      'oversized body',
      () =>
        fetch(`${world.url}/auth/logout`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-csrf': '1' },
          body: JSON.stringify({ padding: 'a'.repeat(2 * 1024 * 1024) }),
        }),
      413,
      'payload_too_large',
    ],
    [
      'oversized back-channel body',
      () =>
        fetch(`${world.url}/auth/backchannel-logout`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: `logout_token=${'a'.repeat(100_000)}`,
        }),
      400,
      'invalid_request',
    ],
    ['unreachable upstream', () => fetch(`${world.url}/down/x`), 502, 'bad_gateway'],
    ['upstream reset', () => fetch(`${world.url}/static/reset`), 502, 'bad_gateway'],
    ['slow upstream', () => fetch(`${world.url}/quick/slow?ms=1500`), 504, 'gateway_timeout'],
    [
      'malformed JSON to an auth endpoint',
      () =>
        fetch(`${world.url}/auth/logout`, {
          method: 'POST',
          headers: apiHeaders(session.cookieHeader, { 'content-type': 'application/json' }),
          body: '{"x":',
        }),
      400,
      'invalid_request',
    ],
  ];

  it.each(cases)('%s', async (_label, send, status, code) => {
    const res = await send();
    expectContractError(res.status, res.headers, await res.text(), { status, code });
  });

  it('TRACE: 405 in the same format', async () => {
    const res = await rawRequest(`${world.url}/static/x`, { method: 'TRACE' });
    expectContractError(res.status, new Headers(res.headers as Record<string, string>), res.body.toString('utf8'), {
      status: 405,
      code: 'method_not_allowed',
    });
  });
});

describe('session store down', () => {
  it('503 session_store_unavailable quickly on session routes, while none routes still work', async () => {
    const before = await fetch(`${world.url}/api/echo`, { headers: apiHeaders(session.cookieHeader) });
    expect(before.status).toBe(200);
    await before.body?.cancel();

    await world.redis?.stop();

    for (const path of ['/api/echo', '/auth/user']) {
      const res = await fetch(`${world.url}${path}`, bounded({ headers: apiHeaders(session.cookieHeader) }));
      expectContractError(res.status, res.headers, await res.text(), { status: 503, code: 'session_store_unavailable' });
    }
    const open = await fetch(`${world.url}/static/echo`, bounded());
    expect(open.status).toBe(200);
    await open.body?.cancel();
    // A request without any session cookie needs no store either.
    const anonymous = await fetch(`${world.url}/api/echo`, bounded({ headers: { 'x-csrf': '1' } }));
    expectContractError(anonymous.status, anonymous.headers, await anonymous.text(), { status: 401, code: 'unauthenticated' });
  });
});
