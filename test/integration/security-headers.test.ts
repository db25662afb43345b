/**
 * Security headers on what the gateway itself writes, and only there:
 * - every gateway-authored response (the /auth endpoints, the gateway's JSON errors from the
 *   proxy, errors for malformed HTTP) carries `x-content-type-options: nosniff`,
 *   `content-security-policy: frame-ancestors 'none'` and `x-frame-options: DENY`; /auth
 *   responses and errors are `cache-control: no-store`;
 * - an upstream response passes through as the upstream wrote it: nothing added (a SPA or API
 *   sets its own policy, which the gateway must not overwrite or weaken).
 */
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { login, type LoginResult } from '../support/login.ts';
import { rawRequest } from '../support/raw-http.ts';
import { freePort } from '../support/redis.ts';
import { apiHeaders, startWorld, type World } from '../support/world.ts';

const OWN_POLICY = {
  'content-security-policy': "default-src 'self'",
  'x-frame-options': 'SAMEORIGIN',
  'cache-control': 'public, max-age=60',
};

let world: World;
let site: Server;
let session: LoginResult;

beforeAll(async () => {
  site = createServer((req, res) => {
    const own = req.url?.endsWith('/own-policy');
    res.writeHead(200, { 'content-type': 'text/html', ...(own ? OWN_POLICY : {}) }).end('<p>hello</p>');
  });
  await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
  const siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
  const closedPort = await freePort();
  world = await startWorld({
    routes: () => [
      { path: '/api', upstream: siteUrl, token: 'user' },
      { path: '/site', upstream: siteUrl, token: 'none' },
      { path: '/down', upstream: `http://127.0.0.1:${closedPort}`, token: 'none' },
    ],
  });
  session = await login(world.url);
});
afterAll(async () => {
  await world?.close();
  site.closeAllConnections();
  await new Promise<void>((resolve) => site.close(() => resolve()));
});

type HeaderMap = Record<string, string | string[] | undefined>;

function expectGatewayHeaders(headers: HeaderMap, noStore: boolean): void {
  expect(headers['x-content-type-options']).toBe('nosniff');
  expect(headers['content-security-policy']).toBe("frame-ancestors 'none'");
  expect(headers['x-frame-options']).toBe('DENY');
  if (noStore) expect(String(headers['cache-control'])).toContain('no-store');
}

async function get(
  path: string,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; headers: HeaderMap }> {
  const res = await rawRequest(`${world.url}${path}`, init);
  return { status: res.status, headers: res.headers };
}

describe("the gateway's own responses", () => {
  it.each<[string, () => Promise<{ status: number; headers: HeaderMap }>, number]>([
    ['GET /auth/login (302 to the IdP)', () => get('/auth/login'), 302],
    ['GET /auth/login with a bad returnTo (400)', () => get('/auth/login?returnTo=//evil.example'), 400],
    ['GET /auth/callback without state (400)', () => get('/auth/callback'), 400],
    ['GET /auth/user without a session (401)', () => get('/auth/user', { headers: { 'x-csrf': '1' } }), 401],
    ['GET /auth/user with a session (200)', () => get('/auth/user', { headers: apiHeaders(session.cookieHeader) }), 200],
    ['GET /auth/logout without a session (302)', () => get('/auth/logout'), 302],
    [
      'POST /auth/backchannel-logout without a token (400)',
      () =>
        get('/auth/backchannel-logout', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'x=1' }),
      400,
    ],
  ])('%s: nosniff, no-store, frame-ancestors none, DENY', async (_label, send, status) => {
    const res = await send();
    expect(res.status).toBe(status);
    expectGatewayHeaders(res.headers, true);
  });

  it.each<[string, () => Promise<{ status: number; headers: HeaderMap }>, number]>([
    ['404 not_found', () => get('/nowhere'), 404],
    ['403 csrf_required', () => get('/api/x', { headers: { cookie: session.cookieHeader } }), 403],
    ['401 unauthenticated', () => get('/api/x', { headers: { 'x-csrf': '1' } }), 401],
    ['405 for TRACE', () => get('/site/x', { method: 'TRACE' }), 405],
    ['502 bad_gateway', () => get('/down/x'), 502],
  ])('proxy error %s: nosniff, no-store, frame-ancestors none, DENY', async (_label, send, status) => {
    const res = await send();
    expect(res.status).toBe(status);
    expectGatewayHeaders(res.headers, true);
  });

  it('the JSON error for malformed HTTP carries them too', async () => {
    const raw = await new Promise<string>((resolve) => {
      const socket = connect(world.gateway.port, '127.0.0.1');
      const chunks: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      socket.on('error', () => {});
      socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
      socket.write('POST /site/x HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n');
    });
    expect(raw).toMatch(/^HTTP\/1\.1 400 /);
    const headers = Object.fromEntries(
      raw
        .slice(0, raw.indexOf('\r\n\r\n'))
        .split('\r\n')
        .slice(1)
        .map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]),
    );
    expectGatewayHeaders(headers, true);
  });
});

describe('upstream responses pass through unchanged', () => {
  it.each([
    ['a none route', () => get('/site/plain')],
    ['a user route', () => get('/api/plain', { headers: apiHeaders(session.cookieHeader) })],
  ])('on %s, no security header is added', async (_label, send) => {
    const res = await send();
    expect(res.status).toBe(200);
    expect(res.headers['x-content-type-options']).toBeUndefined();
    expect(res.headers['content-security-policy']).toBeUndefined();
    expect(res.headers['x-frame-options']).toBeUndefined();
    expect(res.headers['cache-control']).toBeUndefined();
  });

  it("the upstream's own policy arrives exactly as it was written", async () => {
    const res = await get('/site/own-policy');
    expect(res.status).toBe(200);
    for (const [name, value] of Object.entries(OWN_POLICY)) expect(res.headers[name]).toBe(value);
    expect(res.headers['x-content-type-options']).toBeUndefined();
  });
});
