/**
 * RFC 9449 with refreshes: the refresh grant is DPoP-bound, so the refreshed access token is
 * still `token_type: DPoP`, bound to the gateway's key, and accepted upstream with a proof.
 * The key comes from `oidc.privateKey` here (`dpop: true`), the documented fallback.
 */
import { generateKeyPairSync } from 'node:crypto';
import { calculateJwkThumbprint, decodeJwt, type JWK } from 'jose';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { login } from '../support/login.ts';
import { recordOf } from '../support/session-probe.ts';
import { apiHeaders, startWorld, type World } from '../support/world.ts';

const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
let thumbprint: string;
let world: World;

beforeAll(async () => {
  thumbprint = await calculateJwkThumbprint(publicKey.export({ format: 'jwk' }) as JWK);
  // Tokens live 300 s; refreshing 400 s before expiry makes every API call refresh first.
  world = await startWorld({
    idp: { dpop: true },
    config: {
      oidc: { dpop: true, privateKey: JSON.stringify(privateKey.export({ format: 'jwk' })) },
      tokens: { refreshBeforeExpiry: '400s' },
    },
  });
});

afterAll(async () => {
  await world?.close();
});

test('a refresh is DPoP-bound: the new token is DPoP, bound to the same key, and accepted', async () => {
  const session = await login(world.url);
  const original = (await recordOf(world.gateway, session.cookie))?.tokens;
  expect(original?.tokenType.toLowerCase()).toBe('dpop');
  const refreshesBefore = world.idp.counters.refreshGrants;

  for (let call = 1; call <= 2; call += 1) {
    const before = world.upstream.requests.length;
    const res = await fetch(`${world.url}/api/protected`, { headers: apiHeaders(session.cookieHeader) });
    expect(res.status).toBe(200);
    expect(world.idp.counters.refreshGrants).toBe(refreshesBefore + call);
    const record = await recordOf(world.gateway, session.cookie);
    expect(record?.tokens.accessToken).not.toBe(original?.accessToken);
    expect(record?.tokens.tokenType.toLowerCase()).toBe('dpop');
    expect((decodeJwt(record?.tokens.accessToken as string).cnf as { jkt?: string }).jkt).toBe(thumbprint);
    const [request] = world.upstream.requests.slice(before);
    expect(request?.headers.authorization).toBe(`DPoP ${record?.tokens.accessToken}`);
    expect(request?.auth?.dpop?.ok).toBe(true);
  }
});
