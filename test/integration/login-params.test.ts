/**
 * Login the way SPAs need it, against real gateway processes (CLI) and the embedded IdP:
 * allow-listed login parameters, IdP errors back to the app, the silent check (prompt=none),
 * prompt=login, acr/max_age verified at the callback, routes' `require` and the RFC 9470
 * challenge of an upstream answered with 401 step_up_required.
 */
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startProcessWorld, type ProcessWorld } from '../support/processes.ts';
import type { CookieJar } from '../support/login.ts';
import { loginFlow } from '../support/login-flow.ts';

/** An upstream that answers 200 with what it saw, and an RFC 9470 challenge under /api/rs/challenge. */
async function startApi(): Promise<{ url: string; seen: string[]; server: Server }> {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(req.url ?? '');
    if (req.url?.startsWith('/api/rs/challenge')) {
      res.writeHead(401, {
        'www-authenticate':
          'Bearer error="insufficient_user_authentication", error_description="stronger login needed", acr_values="mfa", max_age=60',
        'content-type': 'text/plain',
      });
      res.end('opaque upstream 401');
      return;
    }
    const body = JSON.stringify({ path: req.url, bearer: /^Bearer \S+$/.test(req.headers.authorization ?? '') });
    res.writeHead(200, { 'content-type': 'application/json' }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, server };
}

let api: Awaited<ReturnType<typeof startApi>>;
let world: ProcessWorld;
let stale: ProcessWorld;

const routes = (upstream: string) => [
  { path: '/api/sensitive', upstream, require: { acr: ['mfa'] } },
  { path: '/api/fresh', upstream, require: { maxAge: '5m' } },
  { path: '/api', upstream },
  { path: '/', upstream, token: 'none' },
];

beforeAll(async () => {
  api = await startApi();
  const config = { oidc: { acrValues: ['pwd', 'mfa'] }, routes: routes(api.url) };
  world = await startProcessWorld({ instances: 1, config });
  // An IdP that ignores max_age and whose logins are an hour old.
  stale = await startProcessWorld({ instances: 1, config, idp: { ignoreMaxAge: true, backdateAuthS: 3600 } });
}, 60_000);

afterAll(async () => {
  await world?.close();
  await stale?.close();
  await new Promise((resolve) => api?.server.close(resolve));
});

async function user(base: string, jar: CookieJar): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${base}/auth/user`, { headers: { cookie: jar.header(base), 'x-csrf': '1' } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function api401(base: string, path: string, jar: CookieJar): Promise<{ status: number; text: string }> {
  const res = await fetch(`${base}${path}`, { headers: { cookie: jar.header(base), 'x-csrf': '1' } });
  return { status: res.status, text: await res.text() };
}

describe('login parameters', () => {
  test('allow-listed parameters reach the IdP; the rest, and the protocol parameters, never do', async () => {
    const evil =
      'returnTo=/x&prompt=login&ui_locales=de-CH&login_hint=bob%40example.com&client_id=evil&redirect_uri=http%3A%2F%2Fevil.example%2F&scope=admin&state=s&nonce=n&code_challenge=c&code_challenge_method=plain&response_type=token&foo=bar';
    const res = await fetch(`${world.publicUrl}/auth/login?${evil}`, { redirect: 'manual' });
    expect(res.status).toBe(302);
    const location = new URL(res.headers.get('location') as string);
    expect(location.origin).toBe(world.idp.issuer);
    const sent = Object.fromEntries(location.searchParams);
    expect(sent).toMatchObject({
      client_id: 'spa-bff',
      redirect_uri: `${world.publicUrl}/auth/callback`,
      scope: 'openid profile email api',
      response_type: 'code',
      code_challenge_method: 'S256',
      prompt: 'login',
      ui_locales: 'de-CH',
      login_hint: 'bob@example.com',
    });
    expect(sent.state).not.toBe('s');
    expect(sent.nonce).not.toBe('n');
    expect(sent.code_challenge).not.toBe('c');
    expect(Object.keys(sent).sort()).toEqual([
      'client_id',
      'code_challenge',
      'code_challenge_method',
      'login_hint',
      'nonce',
      'prompt',
      'redirect_uri',
      'response_type',
      'scope',
      'state',
      'ui_locales',
    ]);
  });

  test.each(['prompt=sometimes', 'prompt=none%20login', 'max_age=-5', 'max_age=soon', 'acr_values=gold', 'prompt=login&prompt=none'])(
    '%s: 400 invalid_request, no login started',
    async (query) => {
      const res = await fetch(`${world.publicUrl}/auth/login?returnTo=/x&${query}`, { redirect: 'manual' });
      expect(res.status).toBe(400);
      expect(res.headers.get('set-cookie')).toBeNull();
      const body = (await res.json()) as { error: string; message: string };
      expect(body.error).toBe('invalid_request');
      expect(body.message).toMatch(/^The login parameter (prompt|max_age|acr_values) /);
    },
  );
});

describe('silent check and prompt', () => {
  test('prompt=none without an IdP session comes back to returnTo with error=login_required; the session stays', async () => {
    const fresh = await loginFlow(world.publicUrl, { returnTo: '/page?tab=2#top', prompt: 'none' });
    expect(fresh).toMatchObject({ interactions: 0, status: 302, location: '/page?tab=2&error=login_required#top' });
    expect(fresh.jar.header(world.publicUrl)).not.toMatch(/session=/);

    // A gateway session whose IdP session is gone (its cookies cleared): the silent check fails, the session lives on.
    const first = await loginFlow(world.publicUrl, { returnTo: '/' });
    expect(first.location).toBe('/');
    const before = await user(world.publicUrl, first.jar);
    expect(before.status).toBe(200);
    first.jar.clear(world.idp.issuer);
    const silent = await loginFlow(world.publicUrl, { returnTo: '/x', prompt: 'none' }, { jar: first.jar });
    expect(silent).toMatchObject({ interactions: 0, location: '/x?error=login_required' });
    expect(await user(world.publicUrl, first.jar)).toEqual(before);
  });

  test('prompt=none with an IdP session logs in without a page; prompt=login asks again', async () => {
    const first = await loginFlow(world.publicUrl, { returnTo: '/' });
    expect(first.interactions).toBe(1);
    const silent = await loginFlow(world.publicUrl, { returnTo: '/x', prompt: 'none' }, { jar: first.jar });
    expect(silent).toMatchObject({ interactions: 0, status: 302, location: '/x' });
    expect((await user(world.publicUrl, silent.jar)).body.sub).toBe('alice');

    const again = await loginFlow(world.publicUrl, { returnTo: '/y', prompt: 'login' }, { jar: first.jar });
    expect(again).toMatchObject({ interactions: 1, location: '/y' });
    const plain = await loginFlow(world.publicUrl, { returnTo: '/z' }, { jar: first.jar });
    expect(plain).toMatchObject({ interactions: 0, location: '/z' });
  });
});

describe('acr and max_age are verified', () => {
  test('acr_values=mfa met: /auth/user says acr mfa; not met: error= and the old session untouched', async () => {
    const first = await loginFlow(world.publicUrl, { returnTo: '/' });
    const before = await user(world.publicUrl, first.jar);
    expect(before.body.acr).not.toBe('mfa');

    const weak = await loginFlow(world.publicUrl, { returnTo: '/pay', acr_values: 'mfa' }, { jar: first.jar });
    expect(weak).toMatchObject({ interactions: 1, location: '/pay?error=unmet_authentication_requirements' });
    expect(await user(world.publicUrl, first.jar)).toEqual(before);

    const strong = await loginFlow(world.publicUrl, { returnTo: '/pay', acr_values: 'mfa' }, { jar: first.jar, fields: { otp: '123456' } });
    expect(strong).toMatchObject({ interactions: 1, location: '/pay' });
    const after = await user(world.publicUrl, first.jar);
    expect(after.body).toMatchObject({ sub: 'alice', acr: 'mfa' });
  });

  test('max_age=0 forces a new authentication whose auth_time is now', async () => {
    const first = await loginFlow(world.publicUrl, { returnTo: '/' });
    const startedS = Math.floor(Date.now() / 1000);
    const fresh = await loginFlow(world.publicUrl, { returnTo: '/', max_age: '0' }, { jar: first.jar });
    expect(fresh).toMatchObject({ interactions: 1, location: '/' });
    const authTime = (await user(world.publicUrl, fresh.jar)).body.auth_time as number;
    expect(authTime).toBeGreaterThanOrEqual(startedS - 1);
    expect(authTime).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000));
  });

  test('an IdP that ignores max_age: the stale login is refused, the route asks for a step-up', async () => {
    const first = await loginFlow(stale.publicUrl, { returnTo: '/' });
    expect(first.location).toBe('/');
    const before = await user(stale.publicUrl, first.jar);
    const refused = await api401(stale.publicUrl, '/api/fresh/report?id=7', first.jar);
    expect(refused.status).toBe(401);
    const body = JSON.parse(refused.text) as { message: string; loginUrl: string };
    const loginUrl = '/auth/login?returnTo=%2Fapi%2Ffresh%2Freport%3Fid%3D7&max_age=300';
    expect(refused.text).toBe(`{"error":"step_up_required","message":${JSON.stringify(body.message)},"loginUrl":"${loginUrl}"}`);
    const stepped = await loginFlow(stale.publicUrl, Object.fromEntries(new URL(body.loginUrl, stale.publicUrl).searchParams), {
      jar: first.jar,
    });
    expect(stepped.location).toBe('/api/fresh/report?id=7&error=unmet_authentication_requirements');
    expect(await user(stale.publicUrl, first.jar)).toEqual(before);
  });

  test("forward-auth applies the route's step-up requirement too: an ingress never lets a stale login through", async () => {
    const first = await loginFlow(stale.publicUrl, { returnTo: '/' });
    const cookie = first.jar.header(stale.publicUrl);
    const guarded = await fetch(`${stale.publicUrl}/auth/check/api/fresh/report`, { headers: { cookie } });
    expect(guarded.status).toBe(401);
    expect(((await guarded.json()) as { error: string }).error).toBe('step_up_required');
    const open = await fetch(`${stale.publicUrl}/auth/check/api/other`, { headers: { cookie } });
    expect(open.status).toBe(200);
  });
});

describe('step-up on routes and from upstreams', () => {
  test('require.acr: 401 step_up_required before the upstream; after the step-up the call goes through', async () => {
    const first = await loginFlow(world.publicUrl, { returnTo: '/' });
    const seenBefore = api.seen.length;
    const refused = await api401(world.publicUrl, '/api/sensitive/pay', first.jar);
    expect(refused.status).toBe(401);
    const body = JSON.parse(refused.text) as Record<string, string>;
    expect(Object.keys(body)).toEqual(['error', 'message', 'loginUrl']);
    expect(body).toMatchObject({ error: 'step_up_required', loginUrl: '/auth/login?returnTo=%2Fapi%2Fsensitive%2Fpay&acr_values=mfa' });
    expect(api.seen.length).toBe(seenBefore);

    const query = Object.fromEntries(new URL(body.loginUrl as string, world.publicUrl).searchParams);
    const stepped = await loginFlow(world.publicUrl, query, { jar: first.jar, fields: { otp: '123456' } });
    expect(stepped.location).toBe('/api/sensitive/pay');
    const ok = await api401(world.publicUrl, '/api/sensitive/pay', first.jar);
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.text)).toEqual({ path: '/api/sensitive/pay', bearer: true });

    // require.maxAge: this IdP states auth_time only when asked (max_age), so the step-up asks.
    const stale = JSON.parse((await api401(world.publicUrl, '/api/fresh', first.jar)).text) as Record<string, string>;
    expect(stale).toMatchObject({ error: 'step_up_required', loginUrl: '/auth/login?returnTo=%2Fapi%2Ffresh&max_age=300' });
    const fresh = await loginFlow(world.publicUrl, Object.fromEntries(new URL(stale.loginUrl as string, world.publicUrl).searchParams), {
      jar: first.jar,
    });
    expect(fresh).toMatchObject({ interactions: 0, location: '/api/fresh' });
    expect((await api401(world.publicUrl, '/api/fresh', first.jar)).status).toBe(200);
  });

  test('require holds for WebSocket upgrades on the route too', async () => {
    const first = await loginFlow(world.publicUrl, { returnTo: '/' });
    const seenBefore = api.seen.length;
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(`${world.publicUrl}/api/sensitive/feed`, {
        headers: {
          connection: 'Upgrade',
          upgrade: 'websocket',
          'sec-websocket-version': '13',
          'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
          origin: world.publicUrl,
          cookie: first.jar.header(world.publicUrl),
        },
      });
      req.on('response', (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('upgrade', () => reject(new Error('upgraded without the step-up')));
      req.on('error', reject);
      req.end();
    });
    expect(answer.status).toBe(401);
    expect(JSON.parse(answer.body)).toMatchObject({
      error: 'step_up_required',
      loginUrl: '/auth/login?returnTo=%2Fapi%2Fsensitive%2Ffeed&acr_values=mfa',
    });
    expect(api.seen.length).toBe(seenBefore);
  });

  test("an upstream's RFC 9470 challenge becomes step_up_required with its acr_values and max_age", async () => {
    const first = await loginFlow(world.publicUrl, { returnTo: '/' });
    const res = await api401(world.publicUrl, '/api/rs/challenge?x=1', first.jar);
    expect(res.status).toBe(401);
    expect(res.text).not.toContain('opaque upstream 401');
    const body = JSON.parse(res.text) as Record<string, string>;
    expect(body).toEqual({
      error: 'step_up_required',
      message: expect.any(String),
      loginUrl: '/auth/login?returnTo=%2Fapi%2Frs%2Fchallenge%3Fx%3D1&acr_values=mfa&max_age=60',
    });
  });
});
