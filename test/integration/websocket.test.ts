/**
 * WebSocket upgrades (docs/http-interface.md#websockets): proxied on `none` routes as they are, on `user`
 * routes with the session's access token, and refused (no upgrade) on `user` routes without a
 * session or from a foreign Origin.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { login, type LoginResult } from '../support/login.ts';
import { startWorld, type World } from '../support/world.ts';

let world: World;
let session: LoginResult;

beforeAll(async () => {
  world = await startWorld();
  session = await login(world.url);
});
afterAll(() => world?.close());

const wsUrl = (path: string) => `${world.url.replace(/^http/, 'ws')}${path}`;

/** Opens a socket, sends one message and resolves with the echo. */
function echoRoundTrip(path: string, headers: Record<string, string>, message: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl(path), { headers });
    ws.once('open', () => ws.send(message));
    ws.once('message', (data) => {
      resolve(String(data));
      ws.close();
    });
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused with HTTP ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

/** Attempts an upgrade that must be refused; resolves with the HTTP status and body. */
function refusedUpgrade(path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl(path), { headers });
    ws.once('open', () => {
      ws.terminate();
      reject(new Error('upgrade was accepted'));
    });
    ws.once('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    // A socket closed without any HTTP answer is a refusal too, but the gateway's JSON error is expected.
    ws.once('error', (err) => reject(err));
  });
}

describe('WebSocket upgrades', () => {
  it('are proxied on a none route (echo round trip)', async () => {
    expect(await echoRoundTrip('/ws', {}, 'hello over none')).toBe('hello over none');
  });

  it('are proxied on a user route with the session access token, without the gateway cookie', async () => {
    const before = world.upstream.requests.length;
    const echoed = await echoRoundTrip(
      '/api/ws',
      { cookie: `${session.cookieHeader}; theme=dark`, origin: world.url, authorization: 'Bearer browser-supplied' },
      'hello over user',
    );
    expect(echoed).toBe('hello over user');
    const seen = world.upstream.requests.slice(before).find((request) => request.url === '/api/ws');
    expect(seen?.headers.authorization).toMatch(/^Bearer eyJ/);
    expect(seen?.auth?.ok).toBe(true);
    expect(seen?.auth?.claims?.sub).toBe('alice');
    expect(seen?.headers.cookie).toBe('theme=dark');
  });

  it('are refused on a user route without a session: 401, nothing reaches the upstream', async () => {
    const before = world.upstream.requests.length;
    const { status, body } = await refusedUpgrade('/api/ws', { origin: world.url });
    expect(status).toBe(401);
    expect(JSON.parse(body).error).toBe('unauthenticated');
    expect(world.upstream.requests.length).toBe(before);
  });

  it.each([
    ['a foreign Origin', { origin: 'https://evil.example' }],
    ['no Origin', {}],
  ])('are refused on a user route from %s: 403', async (_label, extra) => {
    const before = world.upstream.requests.length;
    const { status, body } = await refusedUpgrade('/api/ws', { cookie: session.cookieHeader, ...extra });
    expect(status).toBe(403);
    expect(JSON.parse(body).error).toBe('csrf_required');
    expect(world.upstream.requests.length).toBe(before);
  });

  it('are refused with a tampered session cookie', async () => {
    const { status } = await refusedUpgrade('/api/ws', { cookie: `${session.cookieHeader}x`, origin: world.url });
    expect(status).toBe(401);
  });
});

/** Completes a handshake and resolves with the 101 response headers the client received. */
function handshakeHeaders(path: string, headers: Record<string, string>): Promise<Record<string, string | string[] | undefined>> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl(path), { headers });
    ws.once('upgrade', (res) => {
      resolve(res.headers);
      ws.terminate();
    });
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused with HTTP ${res.statusCode}`)));
    ws.once('error', (err) => reject(err));
  });
}

describe('the upstream handshake answer', () => {
  const userHeaders = () => ({ cookie: session.cookieHeader, origin: world.url });

  it('on a user route, a 101 reaches the browser without token headers or the gateway cookie', async () => {
    const received = await handshakeHeaders('/api/ws-leak', userHeaders());
    const token = world.upstream.requests.at(-1)?.headers.authorization?.replace(/^Bearer /, '') as string;
    expect(token.length).toBeGreaterThan(20);
    expect(JSON.stringify(received)).not.toContain(token);
    expect(received['x-access-token']).toBeUndefined();
    expect(received['x-debug']).toBeUndefined();
    const cookies = [received['set-cookie'] ?? []].flat();
    expect(cookies.some((line) => line.startsWith('bff-session='))).toBe(false);
    expect(cookies.some((line) => line.startsWith('theme=dark'))).toBe(true);
    expect(String(received.upgrade).toLowerCase()).toBe('websocket');
  });

  it('on a user route, a refused upgrade is answered by the gateway (502), never relayed with the token', async () => {
    const { status, body } = await refusedUpgrade('/api/ws-refuse', userHeaders());
    const token = world.upstream.requests.at(-1)?.headers.authorization?.replace(/^Bearer /, '') as string;
    expect(token.length).toBeGreaterThan(20);
    expect(status).toBe(502);
    expect(JSON.parse(body)).toMatchObject({ error: 'bad_gateway' });
    expect(body).not.toContain(token);
  });

  it('on a none route, an upstream Set-Cookie for the gateway cookie is dropped from the 101', async () => {
    const received = await handshakeHeaders('/ws-leak', {});
    const cookies = [received['set-cookie'] ?? []].flat();
    expect(cookies.some((line) => line.startsWith('bff-session='))).toBe(false);
    expect(cookies.some((line) => line.startsWith('theme=dark'))).toBe(true);
  });
});
