/**
 * How the gateway authenticates to the IdP and sends the authorization request
 * (docs/configuration.md, docs/http-interface.md#route-tokens): client_secret_basic by default, client_secret_post, private_key_jwt with a
 * PEM or JWK key, and RFC 9126 pushed authorization requests — on demand (`oidc.par`) and when
 * the IdP requires them for the client. Each world logs in for real and calls the API, so the
 * code, refresh and revocation calls all authenticate the chosen way.
 */
import { exportJWK, exportPKCS8, generateKeyPair } from 'jose';
import { afterEach, describe, expect, test } from 'vitest';
import { startWorldBehindFront } from '../support/hostile-idp.ts';
import { login } from '../support/login.ts';
import { apiHeaders, startWorld, type World } from '../support/world.ts';

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

async function loginAndCallApi(w: World): Promise<void> {
  const session = await login(w.url);
  const api = await fetch(`${w.url}/api/protected`, { headers: apiHeaders(session.cookieHeader) });
  expect(api.status).toBe(200);
  expect(w.upstream.requests.at(-1)?.auth?.ok).toBe(true);
}

function tokenCall(w: World) {
  return w.idp.tokenRequests.find((request) => request.grantType === 'authorization_code');
}

describe('client authentication at the token endpoint', () => {
  test('client_secret_basic by default: the secret never travels in the form body', async () => {
    world = await startWorld();
    await loginAndCallApi(world);
    expect(tokenCall(world)?.params.client_secret).toBeUndefined();
  });

  test('client_secret_post when configured (and the IdP registered the client that way)', async () => {
    world = await startWorld({ idp: { clientAuthMethod: 'client_secret_post' }, config: { oidc: { clientAuth: 'client_secret_post' } } });
    await loginAndCallApi(world);
    expect(tokenCall(world)?.params.client_secret).toBeDefined();
  });

  test('without clientAuth, client_secret_post is chosen when discovery offers only that', async () => {
    const only = await startWorldBehindFront(
      { idp: { clientAuthMethod: 'client_secret_post' } },
      { rewriteDiscovery: (doc) => ({ ...doc, token_endpoint_auth_methods_supported: ['client_secret_post'] }) },
    );
    world = only.world;
    await loginAndCallApi(world);
    expect(tokenCall(world)?.params.client_secret).toBeDefined();
  });

  test('private_key_jwt with a PEM key: a signed client assertion, no secret at all', async () => {
    const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
    const jwk = { ...(await exportJWK(publicKey)), kid: 'gw-1', alg: 'RS256', use: 'sig' };
    world = await startWorld({
      idp: { clientAuthMethod: 'private_key_jwt', clientJwks: { keys: [jwk] } },
      config: { oidc: { clientAuth: 'private_key_jwt', clientSecret: undefined, privateKey: await exportPKCS8(privateKey) } },
    });
    await loginAndCallApi(world);
    const call = tokenCall(world);
    expect(call?.params.client_assertion_type).toBe('urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
    expect(call?.params.client_assertion?.split('.')).toHaveLength(3);
    expect(call?.params.client_secret).toBeUndefined();
  });

  test('private_key_jwt with a JWK key (EC)', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const publicJwk = { ...(await exportJWK(publicKey)), kid: 'gw-ec', alg: 'ES256', use: 'sig' };
    const privateJwk = { ...(await exportJWK(privateKey)), kid: 'gw-ec', alg: 'ES256' };
    world = await startWorld({
      idp: { clientAuthMethod: 'private_key_jwt', clientJwks: { keys: [publicJwk] } },
      config: { oidc: { clientAuth: 'private_key_jwt', clientSecret: undefined, privateKey: JSON.stringify(privateJwk) } },
    });
    await loginAndCallApi(world);
    expect(tokenCall(world)?.params.client_assertion).toBeDefined();
  });

  test('a wrong private key fails the login cleanly (400 login_failed), never a 500', async () => {
    const registered = await generateKeyPair('RS256', { extractable: true });
    const other = await generateKeyPair('RS256', { extractable: true });
    world = await startWorld({
      idp: {
        clientAuthMethod: 'private_key_jwt',
        clientJwks: { keys: [{ ...(await exportJWK(registered.publicKey)), kid: 'k', alg: 'RS256' }] },
      },
      config: { oidc: { clientAuth: 'private_key_jwt', clientSecret: undefined, privateKey: await exportPKCS8(other.privateKey) } },
    });
    await expect(login(world.url)).rejects.toThrow(/HTTP 400[\s\S]*login_failed/);
  });
});

describe('pushed authorization requests (RFC 9126)', () => {
  test('with oidc.par the browser is sent only a request_uri; PKCE and state travel back-channel', async () => {
    world = await startWorld({ config: { oidc: { par: true } } });
    const start = await fetch(`${world.url}/auth/login`, { redirect: 'manual' });
    expect(start.status).toBe(302);
    const location = new URL(start.headers.get('location') as string);
    expect(location.searchParams.get('request_uri')).toMatch(/^urn:ietf:params:oauth:request_uri:/);
    expect(location.searchParams.get('code_challenge')).toBeNull();
    expect(location.searchParams.get('state')).toBeNull();
    await loginAndCallApi(world);
  });

  test('an IdP whose discovery requires PAR gets it without oidc.par', async () => {
    world = await startWorld({ idp: { requirePar: true } });
    const start = await fetch(`${world.url}/auth/login`, { redirect: 'manual' });
    expect(new URL(start.headers.get('location') as string).searchParams.get('request_uri')).toBeTruthy();
    await loginAndCallApi(world);
  });
});
