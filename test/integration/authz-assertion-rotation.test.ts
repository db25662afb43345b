/**
 * Identity-assertion key rotation across gateways sharing one Redis: an instance still signing
 * with the old key, one that already signs with the new key but still publishes the old one,
 * and one that publishes only the new key. The upstream verifies with jose against the JWKS
 * each publishes on its public jwksPath. Also: the forward-auth check reads X-Original-URI only
 * with trustProxy.
 */
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startIdentityUpstream, type IdentityUpstream } from '../support/identity-upstream.ts';
import { login } from '../support/login.ts';
import { startWorld, type RunningGateway, type World } from '../support/world.ts';

const pem = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const OLD = pem();
const NEW = pem();
const JWKS_PATH = '/.well-known/jwks.json';

let world: World;
let upstream: IdentityUpstream;
let rotating: RunningGateway;
let rotated: RunningGateway;
let cookie: string;

beforeAll(async () => {
  upstream = await startIdentityUpstream();
  world = await startWorld({
    store: 'redis',
    config: { identity: { assertion: { keys: [OLD], jwksPath: JWKS_PATH } } },
    routes: () => [
      { path: '/api', upstream: upstream.url, identityAssertion: true, allow: { anyOf: [{ claim: 'sub', equals: 'alice' }] } },
      { path: '/', upstream: upstream.url, token: 'none' },
    ],
  });
  rotating = await world.startGateway({}, { identity: { assertion: { keys: [NEW, OLD], jwksPath: JWKS_PATH } } });
  rotated = await world.startGateway({}, { identity: { assertion: { keys: [NEW], jwksPath: JWKS_PATH } }, trustProxy: true });
  cookie = (await login(world.url, { user: 'alice' })).cookieHeader;
}, 60_000);

afterAll(async () => {
  await world?.close();
  await upstream?.close();
});

async function assertionVia(gateway: RunningGateway): Promise<string> {
  const res = await fetch(`${gateway.url}/api/x`, { headers: { cookie, 'x-csrf': '1' } });
  expect(res.status).toBe(200);
  return upstream.requests.at(-1)?.headers['x-identity-assertion'] as string;
}

describe('assertion key rotation', () => {
  test('during a rotation both keys verify; after it only the new one', async () => {
    const oldJwt = await assertionVia(world.gateway);
    const newJwt = await assertionVia(rotating);
    expect(oldJwt).not.toBe(newJwt);

    // The verifier follows the rotating instance's published keys.
    upstream.useJwks(`${rotating.url}${JWKS_PATH}`);
    const during = await Promise.all([oldJwt, newJwt].map((jwt) => verify(jwt)));
    expect(during).toEqual([true, true]);

    upstream.useJwks(`${rotated.url}${JWKS_PATH}`);
    expect(await verify(oldJwt)).toBe(false);
    expect(await verify(newJwt)).toBe(true);
    expect(await verify(await assertionVia(rotated))).toBe(true);
  });
});

describe('forward-auth route selection', () => {
  test('X-Original-URI picks the route only with trustProxy', async () => {
    const bob = (await login(world.url, { user: 'bob' })).cookieHeader;
    // world.gateway has trustProxy off: the header is ignored, the path is /, no rules apply.
    const untrusted = await fetch(`${world.gateway.url}/auth/check`, { headers: { cookie: bob, 'x-original-uri': '/api/x' } });
    expect(untrusted.status).toBe(200);
    // The Envoy form: the original path after the check path, trusted or not.
    const suffix = await fetch(`${world.gateway.url}/auth/check/api/x`, { headers: { cookie: bob } });
    expect([suffix.status, ((await suffix.json()) as { error: string }).error]).toEqual([403, 'forbidden']);
    const trusted = await fetch(`${rotated.url}/auth/check`, { headers: { cookie: bob, 'x-original-uri': '/api/x' } });
    expect(trusted.status).toBe(403);
    const alice = await fetch(`${rotated.url}/auth/check`, { headers: { cookie, 'x-forwarded-uri': '/api/x?q=1' } });
    expect(alice.status).toBe(200);
    expect(alice.headers.get('x-identity-assertion')).toMatch(/^ey/);
    expect(alice.headers.get('authorization')).toBeNull();
  });
});

/** Sends the assertion through the upstream's verifier (a request straight to it). */
async function verify(jwt: string): Promise<boolean> {
  await fetch(`${upstream.url}/verify`, { headers: { 'x-identity-assertion': jwt } });
  const result = upstream.requests.at(-1)?.assertion;
  return result?.ok === true;
}
