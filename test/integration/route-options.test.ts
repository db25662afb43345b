/**
 * Behaviour driven by configuration keys, end to end: `scrub.responseHeaders`
 * (docs/configuration.md#scrub), redaction of the refresh and ID tokens as well as the access
 * token (docs/http-interface.md#forwarding), a route's `methods` (docs/configuration.md#routes),
 * a renamed `csrf.header` (docs/configuration.md#csrf), and a client route's `audience` sent as
 * the RFC 8707 `resource` (docs/http-interface.md#route-tokens), `scrub.bodies: false`, and client tokens fetched again
 * inside the refresh window.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { login, type LoginResult } from '../support/login.ts';
import { loginAt, recordOf } from '../support/session-probe.ts';
import { startWorld, type World } from '../support/world.ts';

const AUDIENCE = 'http://api.local';
let world: World;
let session: LoginResult;
const headers = () => ({ cookie: session.cookieHeader, 'x-requested-by': '1' });

beforeAll(async () => {
  world = await startWorld({
    idp: { audience: AUDIENCE },
    config: { csrf: { header: 'x-requested-by' }, scrub: { responseHeaders: ['x-internal-debug'] } },
    routes: (upstream) => [
      { path: '/api/readonly', upstream: upstream.url, token: 'user', methods: ['GET', 'head'] },
      { path: '/api', upstream: upstream.url, token: 'user' },
      { path: '/svc', upstream: upstream.url, token: 'client', audience: AUDIENCE },
    ],
  });
  session = await login(world.url);
});
afterAll(() => world?.close());

describe('configuration-driven behaviour', () => {
  test('scrub.responseHeaders drops the named upstream header; others pass', async () => {
    const res = await fetch(`${world.url}/api/echo?respond-header=x-internal-debug:trace-1&respond-header=x-kept:yes`, {
      headers: headers(),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-internal-debug')).toBeNull();
    expect(res.headers.get('x-kept')).toBe('yes');
  });

  test('the refresh and ID tokens are redacted from bodies too, not only the access token', async () => {
    const record = (await recordOf(world.gateway, session.cookie))!;
    const { refreshToken, idToken } = record.tokens;
    expect(refreshToken && idToken).toBeTruthy();
    // The echo upstream returns the request body: the browser itself sent the tokens there.
    const res = await fetch(`${world.url}/api/echo`, {
      method: 'POST',
      headers: { ...headers(), 'content-type': 'text/plain' },
      body: `r=${refreshToken} i=${idToken}`,
    });
    const text = await res.text();
    expect(res.status).toBe(200);
    expect(text).not.toContain(refreshToken);
    expect(text).not.toContain(idToken);
    expect(text.match(/\[redacted\]/g)?.length).toBeGreaterThanOrEqual(2);
  });

  test('a route with methods answers anything else with 405 and never forwards it', async () => {
    const before = world.upstream.requests.length;
    expect((await fetch(`${world.url}/api/readonly/x`, { headers: headers() })).status).toBe(200);
    expect((await fetch(`${world.url}/api/readonly/x`, { method: 'HEAD', headers: headers() })).status).toBe(200);
    const post = await fetch(`${world.url}/api/readonly/x`, { method: 'POST', headers: headers(), body: 'x' });
    expect(post.status).toBe(405);
    expect(await post.json()).toMatchObject({ error: 'method_not_allowed' });
    expect(world.upstream.requests.length - before).toBe(2);
    // Other routes keep every method.
    expect((await fetch(`${world.url}/api/x`, { method: 'POST', headers: headers(), body: 'x' })).status).toBe(200);
  });

  test('csrf.header renames the anti-forgery header: the default name no longer counts', async () => {
    expect((await fetch(`${world.url}/api/x`, { headers: headers() })).status).toBe(200);
    const withDefault = await fetch(`${world.url}/api/x`, { headers: { cookie: session.cookieHeader, 'x-csrf': '1' } });
    expect(withDefault.status).toBe(403);
    expect(await withDefault.json()).toMatchObject({ error: 'csrf_required' });
  });

  test('a client route with audience asks the IdP for that resource (RFC 8707)', async () => {
    const res = await fetch(`${world.url}/svc/protected`, { headers: { 'x-requested-by': '1' } });
    expect(res.status).toBe(200);
    expect(world.idp.tokenRequests.at(-1)).toMatchObject({ grantType: 'client_credentials', params: { resource: AUDIENCE } });
    expect(world.upstream.requests.at(-1)?.auth?.claims?.aud).toBe(AUDIENCE);
  });

  test('with scrub.bodies off, bodies pass unmodified (content-length kept); the header rules still apply', async () => {
    const plain = await world.startGateway({}, { scrub: { bodies: false } });
    const cookie = await loginAt(world, plain);
    const res = await fetch(`${plain.url}/api/leak`, { headers: { cookie, 'x-requested-by': '1' } });
    const body = await res.text();
    const token = world.upstream.requests.at(-1)?.headers.authorization?.replace(/^Bearer /, '') as string;
    expect(body).toContain(token);
    expect(Number(res.headers.get('content-length'))).toBe(Buffer.byteLength(body));
    expect(res.headers.get('x-access-token')).toBeNull();
  });

  test('a client token is fetched again once it is inside the refresh window', async () => {
    // The IdP's tokens live 300 s: with a 400 s window every cached token is already due.
    const eager = await world.startGateway({}, { tokens: { refreshBeforeExpiry: '400s' } });
    const before = world.idp.counters.clientCredentialsGrants;
    for (let i = 0; i < 2; i += 1)
      expect((await fetch(`${eager.url}/svc/protected`, { headers: { 'x-requested-by': '1' } })).status).toBe(200);
    expect(world.idp.counters.clientCredentialsGrants - before).toBe(2);
  });
});
