/**
 * The anti-forgery rule on a `token: user` route, beyond the basics in proxy.test.ts:
 * - `x-csrf: 1` is needed on every method, safe ones included (a GET that reaches an API with
 *   the user's token is as dangerous as a POST if the API is not strictly read-only);
 * - only the exact value `1` counts;
 * - `Sec-Fetch-Site: cross-site` is refused even with the header;
 * - a CORS preflight is refused (403, not forwarded, no `access-control-allow-origin`), and the
 *   gateway never reflects a foreign Origin into `access-control-allow-origin`: a cross-origin
 *   script can neither send the header nor read an answer.
 * The logged-in control for each method proves the refusals come from the CSRF rule alone.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { login, type LoginResult } from '../support/login.ts';
import { rawRequest } from '../support/raw-http.ts';
import { startWorld, type World } from '../support/world.ts';

let world: World;
let session: LoginResult;

beforeAll(async () => {
  world = await startWorld();
  session = await login(world.url);
});
afterAll(async () => {
  await world?.close();
});

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];
const EVIL = 'https://evil.example';

async function expectCsrfRefused(res: Response, upstreamBefore: number, method = 'GET'): Promise<void> {
  expect(res.status).toBe(403);
  const text = await res.text();
  // HEAD has no body; every other method carries the gateway's JSON error.
  if (method !== 'HEAD') expect((JSON.parse(text) as { error: string }).error).toBe('csrf_required');
  expect(res.headers.get('access-control-allow-origin')).toBeNull();
  expect(world.upstream.requests.length).toBe(upstreamBefore);
}

describe('every method of a user route needs x-csrf: 1', () => {
  it.each(METHODS)('%s without the header: 403 csrf_required, not forwarded', async (method) => {
    const before = world.upstream.requests.length;
    const res = await fetch(`${world.url}/api/echo`, { method, headers: { cookie: session.cookieHeader } });
    await expectCsrfRefused(res, before, method);
  });

  it.each(METHODS)('%s with the header: forwarded with the token (control)', async (method) => {
    const before = world.upstream.requests.length;
    const res = await fetch(`${world.url}/api/echo`, { method, headers: { cookie: session.cookieHeader, 'x-csrf': '1' } });
    await res.body?.cancel();
    expect(res.status).toBe(200);
    expect(world.upstream.requests.length).toBe(before + 1);
    expect(world.upstream.requests.at(-1)?.method).toBe(method);
    expect(world.upstream.requests.at(-1)?.auth?.ok).toBe(true);
  });
});

describe('only the exact value counts', () => {
  it.each(['0', 'true', '', '11', 'yes'])('x-csrf: %j is refused', async (value) => {
    const before = world.upstream.requests.length;
    // node:http sends an empty header value as is; fetch implementations differ.
    const res = await rawRequest(`${world.url}/api/echo`, { headers: { cookie: session.cookieHeader, 'x-csrf': value } });
    expect(res.status).toBe(403);
    expect((JSON.parse(res.body.toString()) as { error: string }).error).toBe('csrf_required');
    expect(world.upstream.requests.length).toBe(before);
  });

  it('two x-csrf headers are refused even if one is 1', async () => {
    const before = world.upstream.requests.length;
    const res = await rawRequest(`${world.url}/api/echo`, { headers: { cookie: session.cookieHeader, 'x-csrf': ['1', '0'] } });
    expect(res.status).toBe(403);
    expect(world.upstream.requests.length).toBe(before);
  });
});

describe('fetch metadata and origins', () => {
  it('Sec-Fetch-Site: cross-site is refused even with x-csrf: 1', async () => {
    const before = world.upstream.requests.length;
    const res = await fetch(`${world.url}/api/echo`, {
      headers: { cookie: session.cookieHeader, 'x-csrf': '1', 'sec-fetch-site': 'cross-site' },
    });
    await expectCsrfRefused(res, before);
  });

  it.each(['same-origin', 'none'])('Sec-Fetch-Site: %s with x-csrf: 1 is forwarded (control)', async (site) => {
    const res = await fetch(`${world.url}/api/echo`, { headers: { cookie: session.cookieHeader, 'x-csrf': '1', 'sec-fetch-site': site } });
    await res.body?.cancel();
    expect(res.status).toBe(200);
  });

  it('a CORS preflight is answered 403, not forwarded, with no access-control-allow-origin', async () => {
    const before = world.upstream.requests.length;
    const res = await fetch(`${world.url}/api/echo`, {
      method: 'OPTIONS',
      headers: { origin: EVIL, 'access-control-request-method': 'POST', 'access-control-request-headers': 'x-csrf, content-type' },
    });
    await expectCsrfRefused(res, before);
    expect(res.headers.get('access-control-allow-headers')).toBeNull();
    expect(res.headers.get('access-control-allow-credentials')).toBeNull();
  });

  it('a cross-origin simple request with the cookie is refused and gets no access-control-allow-origin', async () => {
    const before = world.upstream.requests.length;
    const res = await fetch(`${world.url}/api/echo`, { headers: { cookie: session.cookieHeader, origin: EVIL } });
    await expectCsrfRefused(res, before);
  });

  it('on a none route the cross-origin request passes, but the gateway reflects no Origin', async () => {
    const res = await fetch(`${world.url}/echo`, { headers: { origin: EVIL } });
    expect(res.status).toBe(200);
    const echoed = (await res.json()) as { headers: Record<string, string> };
    expect(echoed.headers.origin).toBe(EVIL);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    expect(res.headers.get('access-control-allow-credentials')).toBeNull();
  });
});
