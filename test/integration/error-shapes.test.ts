/**
 * Every error code, through every surface that answers errors, in one shape: the /auth scope
 * (fastify error handler), the proxy scope (raw response), WebSocket upgrades (raw socket) and
 * the admin listener (its own fastify app). The codes are injected through the supported seam
 * for the session store (`GatewayDeps.store`): a store whose every call throws the chosen
 * GatewayError, with a private detail and an errno-style cause that must never reach a client.
 * Then the concrete cases with real components: admin `GET /sessions` with redis-server stopped,
 * and unknown paths on both listeners.
 */
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { Signer } from '@fastify/cookie';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ERRORS, GatewayError, type ErrorCode } from '../../src/errors.ts';
import { MemoryStore } from '../../src/session/memory-store.ts';
import type { SessionStore } from '../../src/session/store.ts';
import { rawRequest, type RawResponse } from '../support/raw-http.ts';
import { SESSION_SECRET, startWorld, type RunningGateway, type World } from '../support/world.ts';

const ADMIN_TOKEN = 'admin-token-0123456789-abcdefghijklmnopqrstuvwxyz';
const PRIVATE = 'private-detail-7f3a9c';
const CAUSE = 'cause-message-51be20';
const CODES = Object.keys(ERRORS) as ErrorCode[];

/** A store that answers normally until `failure.error` is set, then every call throws it. */
function failingStore(inner: SessionStore, failure: { error?: GatewayError }): SessionStore {
  const spared = new Set<PropertyKey>(['close', 'onEnded', 'ping']);
  return new Proxy(inner, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        const error = failure.error;
        if (!error || spared.has(property)) return (value as (...a: unknown[]) => unknown).apply(target, args);
        if (property === 'scanHandles') {
          return (async function* () {
            yield* [] as string[];
            throw error;
          })();
        }
        return Promise.reject(error);
      };
    },
  });
}

async function listen(app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 });
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
}

function expectPublicShape(answer: RawResponse, code: ErrorCode, where: string): void {
  const text = answer.body.toString('utf8');
  expect({ where, status: answer.status }).toEqual({ where, status: ERRORS[code].status });
  expect(answer.headers['content-type'], where).toMatch(/^application\/json/);
  expect(answer.headers['cache-control'], where).toBe('no-store');
  expect(JSON.parse(text), where).toEqual({ error: code, message: ERRORS[code].message });
  const everything = `${JSON.stringify(answer.headers)}\n${text}`;
  expect(everything, where).not.toContain(PRIVATE);
  expect(everything, where).not.toContain(CAUSE);
  expect(everything, where).not.toContain('ECONNREFUSED');
}

describe('every error code on every listener', () => {
  let world: World;
  let gateway: RunningGateway;
  let adminUrl: string;
  const failure: { error?: GatewayError } = {};
  let cookie: string;

  beforeAll(async () => {
    world = await startWorld({ config: { admin: { host: '127.0.0.1', port: 0, token: ADMIN_TOKEN } } });
    gateway = await world.startGateway({ store: failingStore(new MemoryStore(), failure) });
    adminUrl = await listen(gateway.gateway.admin!);
    // A validly signed cookie: the session layer reads the store for it (and meets the failure).
    cookie = `${gateway.config.session.cookieName}=${new Signer([SESSION_SECRET]).sign(randomBytes(32).toString('base64url'))}`;
  });
  afterAll(() => world?.close());

  const surfaces: Record<string, () => Promise<RawResponse>> = {
    'public /auth scope': () => rawRequest(`${gateway.url}/auth/user`, { headers: { cookie, 'x-csrf': '1' } }),
    'public proxy scope': () => rawRequest(`${gateway.url}/api/orders`, { headers: { cookie, 'x-csrf': '1' } }),
    'public WebSocket upgrade': () =>
      rawRequest(`${gateway.url}/api/socket`, {
        headers: {
          cookie,
          origin: world.url,
          connection: 'Upgrade',
          upgrade: 'websocket',
          'sec-websocket-version': '13',
          'sec-websocket-key': randomBytes(16).toString('base64'),
        },
      }),
    'admin listener': () => rawRequest(`${adminUrl}/sessions?sub=alice`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }),
  };

  test.each(CODES)('%s', async (code) => {
    const cause = Object.assign(new Error(CAUSE), { code: 'ECONNREFUSED' });
    failure.error = new GatewayError(code, { detail: `${PRIVATE} ${code}`, cause });
    try {
      for (const [where, send] of Object.entries(surfaces)) expectPublicShape(await send(), code, where);
    } finally {
      failure.error = undefined;
    }
  });

  test('the detail of each failure reached the log instead', () => {
    const logged = gateway.logs.filter((line) => line.includes(PRIVATE));
    // One line per code for each fastify surface and the proxy (upgrades are refused silently).
    expect(logged.length).toBeGreaterThanOrEqual(CODES.length * 2);
    for (const code of CODES)
      expect(logged.some((line) => line.includes(`"code":"${code}"`) && line.includes(`${PRIVATE} ${code}`))).toBe(true);
  });

  test('unknown paths: the admin listener answers not_found in the gateway shape, not fastify’s', async () => {
    for (const path of ['/nope', '/sessions/nope', '/healthz/x']) {
      const answer = await rawRequest(`${adminUrl}${path}`);
      expectPublicShape(answer, 'not_found', `admin ${path}`);
      expect(JSON.parse(answer.body.toString())).not.toHaveProperty('statusCode');
    }
  });

  test('the admin listener refuses a bad token and a bad revoke in the same shape', async () => {
    const refused = await rawRequest(`${adminUrl}/sessions`, { headers: { authorization: 'Bearer wrong' } });
    expect(refused.status).toBe(401);
    expect(refused.headers['cache-control']).toBe('no-store');
    expect(JSON.parse(refused.body.toString())).toEqual({ error: 'unauthenticated', message: 'The admin token is missing or wrong.' });
    const unnamed = await rawRequest(`${adminUrl}/sessions/revoke`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(unnamed.status).toBe(400);
    expect(JSON.parse(unnamed.body.toString())).toEqual({
      error: 'invalid_request',
      message: 'Name one of sub, sid, handle, or all: true.',
    });
    const malformed = await rawRequest(`${adminUrl}/sessions/revoke`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: '{"sub":',
    });
    expectPublicShape(malformed, 'invalid_request', 'admin malformed JSON');
  });
});

describe('real failures', () => {
  let world: World;
  let adminUrl: string;

  beforeAll(async () => {
    world = await startWorld({
      store: 'redis',
      config: { admin: { host: '127.0.0.1', port: 0, token: ADMIN_TOKEN } },
      // No catch-all route: unmatched paths reach the public not-found answer.
      routes: (upstream) => [{ path: '/api', upstream: upstream.url, token: 'user' }],
    });
    adminUrl = await listen(world.gateway.gateway.admin!);
  });
  afterAll(() => world?.close());

  test('unknown paths on the public listener', async () => {
    for (const path of ['/nope', '/auth/nope']) expectPublicShape(await rawRequest(`${world.url}${path}`), 'not_found', `public ${path}`);
  });

  test('admin GET /sessions with redis-server stopped: 503 session_store_unavailable, no Redis reply in the body', async () => {
    const before = await rawRequest(`${adminUrl}/sessions?sub=alice`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(before.status).toBe(200);
    await world.redis!.stop();
    const answer = await rawRequest(`${adminUrl}/sessions?sub=alice`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expectPublicShape(answer, 'session_store_unavailable', 'admin /sessions, store down');
    const text = answer.body.toString();
    expect(text).not.toMatch(/redis|connection|closed|statusCode/i);
    // The operator still learns what happened: the detail is in the gateway's log.
    expect(
      world.gateway.logs.some(
        (line) =>
          line.includes('"listener":"admin"') && line.includes('"code":"session_store_unavailable"') && /"detail":"redis: /.test(line),
      ),
    ).toBe(true);
  });
});
