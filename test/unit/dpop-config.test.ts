/**
 * `oidc.dpop` configuration (docs/http-interface.md#route-tokens): false, true (key = oidc.privateKey) or
 * `{ key }`; a missing or unusable key is a configuration error at its path, not a crash later.
 */
import { generateKeyPairSync } from 'node:crypto';
import { expect, test } from 'vitest';
import { buildConfig } from '../../src/config/load.ts';
import { DpopKey } from '../../src/oidc/dpop.ts';
import { parsePrivateKey } from '../../src/oidc/keys.ts';

const parseDpopKey = (text: string) => parsePrivateKey(text, 'PS256');
import { minimal, problems } from '../fixtures/config-inputs.ts';

const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const EC_PEM = ec.export({ format: 'pem', type: 'pkcs8' }).toString();
const EC_JWK = JSON.stringify(ec.export({ format: 'jwk' }));
const NEEDS_KEY = 'oidc.dpop: needs a key: set dpop.key or oidc.privateKey (every instance must hold the same key)';

test('dpop is off by default and no key is derived', () => {
  expect(buildConfig(minimal()).oidc.dpopKey).toBeUndefined();
  expect(buildConfig(minimal((raw) => void (raw.oidc.privateKey = EC_PEM))).oidc.dpopKey).toBeUndefined();
});

test('dpop: true without any key is refused with the documented message', () => {
  expect(problems(minimal((raw) => void (raw.oidc.dpop = true)))).toEqual([NEEDS_KEY]);
});

test('dpop: true signs with oidc.privateKey; dpop.key wins over it', () => {
  expect(buildConfig(minimal((raw) => Object.assign(raw.oidc, { dpop: true, privateKey: EC_PEM }))).oidc.dpopKey).toBe(EC_PEM);
  expect(buildConfig(minimal((raw) => Object.assign(raw.oidc, { dpop: { key: EC_JWK }, privateKey: EC_PEM }))).oidc.dpopKey).toBe(EC_JWK);
});

test('a private_key_jwt key is checked by `check` too, and reported once when DPoP shares it', () => {
  const jwt = (extra: Record<string, unknown>) =>
    minimal((raw) => Object.assign(raw.oidc, { clientAuth: 'private_key_jwt', clientSecret: undefined, ...extra }));
  expect(problems(jwt({ privateKey: 'garbage' }))).toEqual([
    'oidc.privateKey: is not a PEM (PKCS#8) or JWK private key (needed for private_key_jwt)',
  ]);
  expect(problems(jwt({ privateKey: 'garbage', dpop: true }))).toEqual([
    'oidc.privateKey: is not a PEM (PKCS#8) or JWK private key (needed for private_key_jwt)',
  ]);
  expect(problems(jwt({ privateKey: EC_PEM }))).toEqual([]);
});

test('an unusable key is a configuration error at its path', () => {
  expect(problems(minimal((raw) => void (raw.oidc.dpop = { key: 'garbage' })))).toEqual([
    'oidc.dpop.key: is not a PEM (PKCS#8) or JWK private key (needed for DPoP)',
  ]);
  expect(problems(minimal((raw) => Object.assign(raw.oidc, { dpop: true, privateKey: '{"kty":"EC"}' })))).toEqual([
    'oidc.privateKey: is not a PEM (PKCS#8) or JWK private key (needed for DPoP)',
  ]);
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  expect(problems(minimal((raw) => void (raw.oidc.dpop = { key: p384 })))).toEqual([
    'oidc.dpop.key: EC keys must use the P-256 curve (needed for DPoP)',
  ]);
  expect(problems(minimal((raw) => void (raw.oidc.dpop = 'yes')))).toEqual(['oidc.dpop: must be true, false or { key: <PEM or JWK> }']);
});

test('the signing algorithm follows the key type', () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  expect(parseDpopKey(EC_PEM).alg).toBe('ES256');
  expect(parseDpopKey(rsa.export({ format: 'pem', type: 'pkcs8' }).toString()).alg).toBe('PS256');
  expect(parseDpopKey(JSON.stringify({ ...rsa.export({ format: 'jwk' }), alg: 'RS256' })).alg).toBe('RS256');
  expect(parseDpopKey(generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()).alg).toBe('EdDSA');
});

test('a proof names method, URL without query or fragment, token hash and a fresh jti', async () => {
  const key = await DpopKey.load(EC_PEM);
  const decode = (jwt: string) =>
    jwt
      .split('.')
      .slice(0, 2)
      .map((part) => JSON.parse(Buffer.from(part, 'base64url').toString()) as Record<string, unknown>);
  const [header, claims] = decode(await key.proof('post', 'https://api.example.com/a/b?x=1#f', 'token-1'));
  expect(header).toEqual({ typ: 'dpop+jwt', alg: 'ES256', jwk: key.publicJwk });
  expect(header?.jwk).not.toHaveProperty('d');
  expect(claims).toMatchObject({ htm: 'POST', htu: 'https://api.example.com/a/b', ath: 'PwiqzhIu4jaEMsHKI6BJvGQLr78A_fM6UkKfOLoS2_k' });
  const [, ws] = decode(await key.proof('GET', 'wss://api.example.com/live', 'token-1'));
  expect(ws?.htu).toBe('https://api.example.com/live');
  expect(ws?.jti).not.toBe(claims?.jti);
  expect(claims).not.toHaveProperty('nonce');
  key.rememberNonce('https://api.example.com/other', 'n-1');
  const [, withNonce] = decode(await key.proof('GET', 'https://api.example.com/a', 'token-1'));
  expect(withNonce?.nonce).toBe('n-1');
});
