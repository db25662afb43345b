/**
 * GET /auth/login and GET /auth/user against the real IdP (docs/http-interface.md#get-authlogin, #get-authuser). The IdP sits
 * behind a recording front, so the session's real tokens are known and can be looked for in
 * the /auth/user body.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorldBehindFront, type HostileIdp } from '../support/hostile-idp.ts';
import { login, parseSetCookie } from '../support/login.ts';
import { apiHeaders, CLIENT_ID, type World } from '../support/world.ts';

let world: World;
let front: HostileIdp;

beforeAll(async () => {
  ({ world, front } = await startWorldBehindFront({
    config: { oidc: { authParams: { audience: 'https://api.example', acr_values: 'urn:demo:loa1' } } },
  }));
});
afterAll(async () => {
  await world?.close();
});

async function startLogin(query = ''): Promise<Response> {
  return fetch(`${world.url}/auth/login${query}`, { redirect: 'manual' });
}

describe('GET /auth/login', () => {
  it('redirects to the authorization endpoint with code flow, PKCE S256, state, nonce, scopes, authParams and the redirect_uri', async () => {
    const res = await startLogin('?returnTo=/app');
    expect(res.status).toBe(302);
    const location = new URL(res.headers.get('location') ?? '');
    const metadata = (await (await fetch(`${front.issuer}/.well-known/openid-configuration`)).json()) as { authorization_endpoint: string };
    expect(`${location.origin}${location.pathname}`).toBe(metadata.authorization_endpoint);
    const q = location.searchParams;
    expect(q.get('response_type')).toBe('code');
    expect(q.get('client_id')).toBe(CLIENT_ID);
    expect(q.get('code_challenge_method')).toBe('S256');
    expect(q.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(q.get('state')?.length).toBeGreaterThanOrEqual(16);
    expect(q.get('nonce')?.length).toBeGreaterThanOrEqual(16);
    expect(q.get('scope')?.split(' ').sort()).toEqual(['api', 'email', 'openid', 'profile']);
    expect(q.get('audience')).toBe('https://api.example');
    expect(q.get('acr_values')).toBe('urn:demo:loa1');
    expect(q.get('redirect_uri')).toBe(`${world.url}/auth/callback`);
    expect(res.headers.get('cache-control')).toContain('no-store');
  });

  it('uses fresh state, nonce and PKCE values for every login', async () => {
    const a = new URL((await startLogin()).headers.get('location') ?? '').searchParams;
    const b = new URL((await startLogin()).headers.get('location') ?? '').searchParams;
    for (const name of ['state', 'nonce', 'code_challenge']) expect(a.get(name)).not.toBe(b.get(name));
  });

  it('binds the login to the browser with a SameSite=Lax HttpOnly Path=/ cookie', async () => {
    const res = await startLogin();
    const lines = res.headers.getSetCookie();
    expect(lines).toHaveLength(1);
    const line = lines[0] as string;
    expect(line).toMatch(/;\s*SameSite=Lax(;|$)/i);
    expect(line).toMatch(/;\s*HttpOnly(;|$)/i);
    expect(line).toMatch(/;\s*Path=\/(;|$)/i);
    expect(line).not.toMatch(/;\s*Domain=/i);
    const cookie = parseSetCookie(line);
    expect(cookie?.value.length).toBeGreaterThan(0);
    // The cookie is sealed: none of the transaction's values is readable in it.
    const state = new URL(res.headers.get('location') ?? '').searchParams.get('state') as string;
    expect(line).not.toContain(state);
  });

  it.each([
    ['//evil.example/x'],
    ['/\\evil.example'],
    ['https://evil.example/'],
    ['javascript:alert(1)'],
    ['/%09/evil.example'],
    ['%2F%2Fevil.example'],
    ['relative/path'],
  ])('refuses returnTo=%s with 400 invalid_return_to', async (returnTo) => {
    const res = await startLogin(`?returnTo=${encodeURIComponent(returnTo)}`);
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.headers.get('cache-control')).toContain('no-store');
    expect(await res.json()).toEqual({ error: 'invalid_return_to', message: expect.any(String) });
    expect(res.headers.get('location')).toBeNull();
  });

  it('refuses a duplicated returnTo', async () => {
    const res = await startLogin('?returnTo=/a&returnTo=//evil.example');
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe('invalid_return_to');
  });

  it('returns to / by default and to the requested path otherwise', async () => {
    expect((await login(world.url)).location).toBe(`${world.url}/`);
    expect((await login(world.url, { returnTo: '/app/page?x=1' })).location).toBe(`${world.url}/app/page?x=1`);
  });
});

describe('GET /auth/user', () => {
  it('needs the CSRF header: 403 csrf_required without it, even with a session', async () => {
    const session = await login(world.url);
    const res = await fetch(`${world.url}/auth/user`, { headers: { cookie: session.cookieHeader } });
    expect(res.status).toBe(403);
    expect(res.headers.get('cache-control')).toContain('no-store');
    expect(((await res.json()) as { error: string }).error).toBe('csrf_required');
  });

  it('answers 401 unauthenticated without a session', async () => {
    const res = await fetch(`${world.url}/auth/user`, { headers: { 'x-csrf': '1' } });
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ error: 'unauthenticated', message: expect.any(String) });
  });

  it('answers sub, claims, session times and logoutUrl, and never a token', async () => {
    const before = Date.now();
    const session = await login(world.url, { user: 'bob' });
    const tokens = front.tokenResponses.at(-1) as { access_token: string; refresh_token?: string; id_token: string };
    const res = await fetch(`${world.url}/auth/user`, { headers: apiHeaders(session.cookieHeader) });
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toContain('no-store');
    const text = await res.text();
    const body = JSON.parse(text) as {
      sub: string;
      claims: Record<string, unknown>;
      session: { expiresAt: string; idleExpiresAt: string };
      logoutUrl: string;
    };
    expect(body.sub).toBe('bob');
    expect(body.claims).toMatchObject({ sub: 'bob', email: 'bob@example.com', name: 'Bob' });
    const expiresAt = Date.parse(body.session.expiresAt);
    const idleExpiresAt = Date.parse(body.session.idleExpiresAt);
    // Defaults: 12h absolute, 2h idle.
    expect(expiresAt).toBeGreaterThan(before + 11 * 3600_000);
    expect(idleExpiresAt).toBeGreaterThan(before + 3600_000);
    expect(idleExpiresAt).toBeLessThanOrEqual(expiresAt);
    expect(new URL(body.logoutUrl).origin).toBe(world.url);
    expect(new URL(body.logoutUrl).pathname).toBe('/auth/logout');
    expect(new URL(body.logoutUrl).searchParams.get('sid')).toBeTruthy();

    // The upstream sees the same access token the IdP issued: the recorded tokens are the session's.
    const api = await fetch(`${world.url}/api/echo`, { headers: apiHeaders(session.cookieHeader) });
    expect(api.status).toBe(200);
    await api.body?.cancel();
    expect(world.upstream.requests.at(-1)?.headers.authorization).toBe(`Bearer ${tokens.access_token}`);

    expect(tokens.refresh_token).toBeTruthy();
    const secrets = [tokens.access_token, tokens.refresh_token as string, tokens.id_token];
    const sessionId = session.cookie.split('=')[1]?.split('.')[0] as string;
    for (const secret of [...secrets, sessionId, createHash('sha256').update(sessionId).digest('base64url')]) {
      expect(text).not.toContain(secret);
    }
    // Nor any recognisable piece of one (a JWT's signature part).
    for (const jwt of [tokens.access_token, tokens.id_token]) expect(text).not.toContain(jwt.split('.')[2]);
  });
});
