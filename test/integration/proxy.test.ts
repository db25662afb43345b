/**
 * The proxy's request side (docs/http-interface.md#routes, #forwarding): token modes and CSRF, what the upstream
 * receives (Authorization, Cookie, X-Forwarded-*, hop-by-hop headers), and route matching.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { login, type LoginResult } from '../support/login.ts';
import { rawRequest } from '../support/raw-http.ts';
import type { UpstreamRequest } from '../support/upstream.ts';
import { apiHeaders, startWorld, type World } from '../support/world.ts';

let world: World;
let session: LoginResult;

beforeAll(async () => {
  world = await startWorld({
    routes: (upstream) => [
      { path: '/api', upstream: upstream.url, token: 'user' },
      { path: '/api/v2', upstream: `${upstream.url}/v2base`, token: 'user', stripPrefix: true },
      { path: '/maybe', upstream: upstream.url, token: 'optional' },
      { path: '/public', upstream: `${upstream.url}/static/`, token: 'none' },
    ],
  });
  session = await login(world.url);
});
afterAll(() => world?.close());

/** Sends a request and returns what the upstream recorded for it (and the response). */
async function through(path: string, headers: Record<string, string>): Promise<{ res: Response; seen: UpstreamRequest | undefined }> {
  const before = world.upstream.requests.length;
  const res = await fetch(`${world.url}${path}`, { headers });
  await res.body?.cancel();
  return { res, seen: world.upstream.requests[before] };
}

async function expectError(res: Response, status: number, code: string): Promise<void> {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  expect(res.headers.get('cache-control')).toContain('no-store');
  expect(((await res.json()) as { error: string }).error).toBe(code);
}

describe('user routes', () => {
  it('401 unauthenticated without a session, and nothing reaches the upstream', async () => {
    const before = world.upstream.requests.length;
    await expectError(await fetch(`${world.url}/api/echo`, { headers: { 'x-csrf': '1' } }), 401, 'unauthenticated');
    expect(world.upstream.requests.length).toBe(before);
  });

  it('403 csrf_required without the x-csrf header', async () => {
    await expectError(await fetch(`${world.url}/api/echo`, { headers: { cookie: session.cookieHeader } }), 403, 'csrf_required');
  });

  it.each([
    ['a foreign origin', 'https://evil.example'],
    ['Origin: null', 'null'],
    ['a sibling port', 'http://127.0.0.1:1'],
  ])('403 csrf_required with %s', async (_label, origin) => {
    const before = world.upstream.requests.length;
    await expectError(
      await fetch(`${world.url}/api/echo`, { headers: apiHeaders(session.cookieHeader, { origin }) }),
      403,
      'csrf_required',
    );
    expect(world.upstream.requests.length).toBe(before);
  });

  it('forwards with the session access token in place of the browser Authorization, without the gateway cookie', async () => {
    const { res, seen } = await through(
      '/api/echo?q=1',
      apiHeaders(`theme=dark; ${session.cookieHeader}; lang=en`, { origin: world.url, authorization: 'Bearer browser-supplied' }),
    );
    expect(res.status).toBe(200);
    expect(seen?.headers.authorization).toMatch(/^Bearer eyJ/);
    expect(seen?.headers.authorization).not.toContain('browser-supplied');
    expect(seen?.auth?.ok).toBe(true);
    expect(seen?.auth?.claims?.sub).toBe('alice');
    expect(seen?.headers.cookie).toBe('theme=dark; lang=en');
    expect(seen?.url).toBe('/api/echo?q=1');
  });

  it('sends no Cookie header upstream when the gateway cookie was the only one', async () => {
    const { seen } = await through('/api/echo', apiHeaders(session.cookieHeader));
    expect(seen?.headers.cookie).toBeUndefined();
  });
});

describe('optional and none routes', () => {
  it('optional without a session forwards with no Authorization at all', async () => {
    const { res, seen } = await through('/maybe/echo', { 'x-csrf': '1', authorization: 'Bearer browser-supplied' });
    expect(res.status).toBe(200);
    expect(seen?.headers.authorization).toBeUndefined();
  });

  it('optional with a session forwards the session token', async () => {
    const { seen } = await through('/maybe/echo', apiHeaders(session.cookieHeader));
    expect(seen?.auth?.ok).toBe(true);
  });

  it('optional still applies the CSRF rule', async () => {
    await expectError(await fetch(`${world.url}/maybe/echo`, { headers: { cookie: session.cookieHeader } }), 403, 'csrf_required');
  });

  it('none needs no CSRF header and passes the browser Authorization as is', async () => {
    const { res, seen } = await through('/public/app.js', { authorization: 'Basic dXNlcjpwYXNz', origin: 'https://evil.example' });
    expect(res.status).toBe(200);
    expect(seen?.headers.authorization).toBe('Basic dXNlcjpwYXNz');
  });

  it('none never adds the session token, even for a logged-in browser', async () => {
    const { seen } = await through('/public/app.js', { cookie: session.cookieHeader });
    expect(seen?.headers.authorization).toBeUndefined();
    expect(seen?.headers.cookie).toBeUndefined();
  });
});

describe('route matching', () => {
  it('404 not_found when no route matches', async () => {
    await expectError(await fetch(`${world.url}/nowhere`), 404, 'not_found');
    await expectError(await fetch(`${world.url}/`), 404, 'not_found');
  });

  it('matches on segment boundaries: /apix is not /api', async () => {
    await expectError(await fetch(`${world.url}/apix/echo`, { headers: apiHeaders(session.cookieHeader) }), 404, 'not_found');
  });

  it('the longest prefix wins, with stripPrefix and the upstream base path', async () => {
    const { seen } = await through('/api/v2/items?x=1', apiHeaders(session.cookieHeader));
    expect(seen?.url).toBe('/v2base/items?x=1');
    const { seen: shorter } = await through('/api/v2x/items', apiHeaders(session.cookieHeader));
    expect(shorter?.url).toBe('/api/v2x/items');
  });

  it('keeps the prefix without stripPrefix, under the base path', async () => {
    const { seen } = await through('/public/css/site.css', {});
    expect(seen?.url).toBe('/static/public/css/site.css');
  });
});

describe('forwarding headers', () => {
  it('sets X-Forwarded-For/Proto/Host and ignores client-sent ones without trustProxy', async () => {
    const { seen } = await through('/public/echo', {
      'x-forwarded-for': '6.6.6.6',
      'x-forwarded-host': 'evil.example',
      'x-forwarded-proto': 'https',
      forwarded: 'for=6.6.6.6;host=evil.example',
    });
    expect(seen?.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen?.headers['x-forwarded-proto']).toBe('http');
    expect(seen?.headers['x-forwarded-host']).toBe(new URL(world.url).host);
    expect(seen?.headers.forwarded).toBeUndefined();
  });

  it('removes hop-by-hop and Connection-nominated request headers', async () => {
    const before = world.upstream.requests.length;
    const res = await rawRequest(`${world.url}/public/echo`, {
      headers: {
        connection: 'close, x-nominated',
        'x-nominated': 'secret',
        te: 'trailers',
        'proxy-authorization': 'Basic eDp5',
        'x-kept': 'yes',
      },
    });
    expect(res.status).toBe(200);
    const seen = world.upstream.requests[before]?.headers;
    expect(seen?.['x-nominated']).toBeUndefined();
    expect(seen?.te).toBeUndefined();
    expect(seen?.['proxy-authorization']).toBeUndefined();
    expect(seen?.['x-kept']).toBe('yes');
  });

  it('removes hop-by-hop and Connection-nominated response headers', async () => {
    const res = await rawRequest(`${world.url}/public/hop`, { headers: { connection: 'close' } });
    expect(res.status).toBe(200);
    expect(res.headers['x-secret']).toBeUndefined();
    expect(res.headers['proxy-authenticate']).toBeUndefined();
    expect(res.headers['keep-alive']).toBeUndefined();
    expect(res.headers.connection ?? '').not.toContain('x-secret');
    expect(res.headers['x-visible']).toBe('1');
  });

  it('drops an upstream Set-Cookie for the gateway cookie name and passes the others', async () => {
    const res = await fetch(`${world.url}/api/set-cookie`, { headers: apiHeaders(session.cookieHeader) });
    expect(res.status).toBe(200);
    const names = res.headers.getSetCookie().map((line) => line.split('=')[0]);
    expect(names).toContain('theme');
    expect(names).not.toContain('bff-session');
    // The session survived: the upstream could not overwrite it.
    const user = await fetch(`${world.url}/auth/user`, { headers: apiHeaders(session.cookieHeader) });
    expect(user.status).toBe(200);
  });
});
