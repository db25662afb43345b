/**
 * RFC 9449 DPoP (docs/http-interface.md#route-tokens, `oidc.dpop`) against the real oidc-provider with DPoP on:
 * the gateway's tokens are sender-constrained to its key, every upstream request carries
 * `Authorization: DPoP` and its own proof (verified by the test upstream: signature, htm, htu,
 * ath, iat, jti, key = token cnf.jkt), and an upstream nonce demand is met. Refreshes:
 * dpop-refresh.test.ts.
 */
import { generateKeyPairSync } from 'node:crypto';
import { calculateJwkThumbprint, decodeJwt, type JWK } from 'jose';
import { afterAll, beforeAll, expect, test } from 'vitest';
import WebSocket from 'ws';
import { login } from '../support/login.ts';
import { recordOf } from '../support/session-probe.ts';
import { apiHeaders, startWorld, type World } from '../support/world.ts';

const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const KEY_PEM = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
let thumbprint: string;
let world: World;
let cookieHeader: string;
let cookie: string;

beforeAll(async () => {
  thumbprint = await calculateJwkThumbprint(publicKey.export({ format: 'jwk' }) as JWK);
  world = await startWorld({ idp: { dpop: true }, config: { oidc: { dpop: { key: KEY_PEM } } } });
  ({ cookieHeader, cookie } = await login(world.url));
});

afterAll(async () => {
  await world?.close();
});

function cnfJkt(token: string): unknown {
  return (decodeJwt(token).cnf as { jkt?: string } | undefined)?.jkt;
}

async function callProtected(): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${world.url}/api/protected`, { headers: apiHeaders(cookieHeader) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

test('the login yields a DPoP token bound to the gateway key', async () => {
  const record = await recordOf(world.gateway, cookie);
  expect(record?.tokens.tokenType.toLowerCase()).toBe('dpop');
  expect(cnfJkt(record?.tokens.accessToken as string)).toBe(thumbprint);
});

test('an API call carries Authorization: DPoP and a proof the upstream verifies', async () => {
  const before = world.upstream.requests.length;
  // A proof the browser sends must never reach the upstream in place of the gateway's.
  const res = await fetch(`${world.url}/api/protected`, { headers: apiHeaders(cookieHeader, { dpop: 'browser-proof' }) });
  expect(res.status).toBe(200);
  const seen = world.upstream.requests.slice(before);
  expect(seen).toHaveLength(1);
  expect(seen[0]?.headers.dpop).not.toBe('browser-proof');
  const [request] = seen;
  expect(request?.headers.authorization).toMatch(/^DPoP [\w-]+\.[\w-]+\.[\w-]+$/);
  expect(request?.auth?.ok).toBe(true);
  expect(request?.auth?.dpop).toMatchObject({ ok: true });
  expect(request?.auth?.dpop?.proof).toMatchObject({ htm: 'GET', htu: `${world.upstream.url}/api/protected` });
});

test('every request gets a fresh proof (own jti), also for other methods', async () => {
  const before = world.upstream.requests.length;
  expect((await callProtected()).status).toBe(200);
  const post = await fetch(`${world.url}/api/protected?x=1`, {
    method: 'POST',
    headers: apiHeaders(cookieHeader, { 'content-type': 'application/json' }),
    body: '{}',
  });
  expect(post.status).toBe(200);
  const [first, second] = world.upstream.requests.slice(before);
  expect(first?.auth?.dpop?.ok).toBe(true);
  expect(second?.auth?.dpop).toMatchObject({ ok: true, proof: { htm: 'POST', htu: `${world.upstream.url}/api/protected` } });
  expect(first?.headers.dpop).not.toBe(second?.headers.dpop);
  expect(first?.auth?.dpop?.proof?.jti).not.toBe(second?.auth?.dpop?.proof?.jti);
});

test('an upstream demanding a nonce gets a replay with it, and the browser sees 200', async () => {
  world.upstream.requireDpopNonce = 'nonce-abc';
  try {
    const before = world.upstream.requests.length;
    const { status } = await callProtected();
    expect(status).toBe(200);
    const seen = world.upstream.requests.slice(before);
    expect(seen).toHaveLength(2);
    expect(seen[0]?.auth?.dpop?.proof?.nonce).toBeUndefined();
    expect(seen[1]?.auth?.dpop).toMatchObject({ ok: true, proof: { nonce: 'nonce-abc' } });
    // The nonce is remembered for that upstream: the next request needs no replay.
    const next = world.upstream.requests.length;
    expect((await callProtected()).status).toBe(200);
    expect(world.upstream.requests.slice(next)).toHaveLength(1);
  } finally {
    world.upstream.requireDpopNonce = undefined;
  }
});

test('a WebSocket upgrade carries the DPoP token and a GET proof for the http form of its URL', async () => {
  const before = world.upstream.requests.length;
  const echo = await new Promise<string>((resolve, reject) => {
    const ws = new WebSocket(`${world.url.replace(/^http/, 'ws')}/api/ws`, { headers: { cookie: cookieHeader, origin: world.url } });
    ws.once('open', () => ws.send('over dpop'));
    ws.once('message', (data) => {
      resolve(String(data));
      ws.close();
    });
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused with HTTP ${res.statusCode}`)));
    ws.once('error', reject);
  });
  expect(echo).toBe('over dpop');
  const [upgrade] = world.upstream.requests.slice(before);
  expect(upgrade?.headers.authorization).toMatch(/^DPoP /);
  expect(upgrade?.auth?.dpop).toMatchObject({ ok: true, proof: { htm: 'GET', htu: `${world.upstream.url}/api/ws` } });
});

test('the authorization request names the key (dpop_jkt)', async () => {
  const res = await fetch(`${world.url}/auth/login`, { redirect: 'manual' });
  await res.body?.cancel();
  expect(new URL(res.headers.get('location') as string).searchParams.get('dpop_jkt')).toBe(thumbprint);
});

test('an upstream 401 with a DPoP invalid_token challenge gets one refresh and one replay', async () => {
  const stale = (await recordOf(world.gateway, cookie))?.tokens.accessToken as string;
  world.upstream.rejectTokens.add(stale);
  const refreshes = world.idp.counters.refreshGrants;
  const before = world.upstream.requests.length;
  expect((await callProtected()).status).toBe(200);
  expect(world.idp.counters.refreshGrants).toBe(refreshes + 1);
  const [rejected, replayed] = world.upstream.requests.slice(before);
  expect(rejected?.headers.authorization).toBe(`DPoP ${stale}`);
  expect(replayed?.headers.authorization).not.toBe(`DPoP ${stale}`);
  expect(replayed?.auth?.dpop?.ok).toBe(true);
});
