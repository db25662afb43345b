/**
 * DPoP beyond the user session: `token: client` routes get a DPoP-bound client-credentials
 * token and a proof per request; and an IdP that demands a DPoP nonce (RFC 9449 section 8) at
 * its token endpoint is answered — the first attempt is refused with use_dpop_nonce, the retry
 * carries the nonce and succeeds, so logins and refreshes still work.
 */
import { generateKeyPairSync } from 'node:crypto';
import { calculateJwkThumbprint, decodeJwt, type JWK } from 'jose';
import { afterEach, expect, test } from 'vitest';
import { login } from '../support/login.ts';
import { apiHeaders, startWorld, type World } from '../support/world.ts';

const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const KEY_PEM = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

function cnfJkt(token: string): unknown {
  return (decodeJwt(token).cnf as { jkt?: string } | undefined)?.jkt;
}

test('a token: client route carries a DPoP-bound client token with a verified proof', async () => {
  world = await startWorld({
    idp: { dpop: true },
    config: { oidc: { dpop: { key: KEY_PEM } } },
    routes: (upstream) => [{ path: '/svc', upstream: upstream.url, token: 'client' }],
  });
  const res = await fetch(`${world.url}/svc/protected`, { headers: { 'x-csrf': '1' } });
  expect(res.status).toBe(200);
  const seen = world.upstream.requests.at(-1)!;
  expect(seen.headers.authorization).toMatch(/^DPoP /);
  expect(seen.auth?.dpop?.ok).toBe(true);
  const token = (seen.headers.authorization as string).slice('DPoP '.length);
  expect(cnfJkt(token)).toBe(await calculateJwkThumbprint(publicKey.export({ format: 'jwk' }) as JWK));
});

test('an IdP that demands a DPoP nonce: the code exchange and the refresh retry once with it', async () => {
  world = await startWorld({
    idp: { dpop: true, dpopRequireNonce: true },
    config: { oidc: { dpop: { key: KEY_PEM } }, tokens: { refreshBeforeExpiry: '400s' } },
  });
  const codeAttempts = world.idp.counters.authorizationCodeGrants;
  const session = await login(world.url);
  // The first token request is refused with use_dpop_nonce; the retry carries the nonce.
  expect(world.idp.counters.authorizationCodeGrants - codeAttempts).toBe(2);
  // The IdP's token lifetime (300 s) is inside refreshBeforeExpiry: this call refreshes first.
  const refreshes = world.idp.counters.refreshGrants;
  const res = await fetch(`${world.url}/api/protected`, { headers: apiHeaders(session.cookieHeader) });
  expect(res.status).toBe(200);
  expect(world.idp.counters.refreshGrants - refreshes).toBeGreaterThanOrEqual(1);
  expect(world.upstream.requests.at(-1)?.auth?.dpop?.ok).toBe(true);
});
