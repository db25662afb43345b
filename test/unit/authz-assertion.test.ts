import { generateKeyPairSync } from 'node:crypto';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { describe, expect, test } from 'vitest';
import { AssertionSigner } from '../../src/authz/assertion.ts';

function pem(type: 'ec' | 'rsa'): string {
  const pair = type === 'ec' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('rsa', { modulusLength: 2048 });
  return pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
}

const CLAIMS = { sub: 'alice', email: 'alice@example.com', groups: ['staff'], secret_note: 'never' };

describe('identity assertions', () => {
  test('carry iss, sub, aud, a short lifetime and only the selected claims; verify against the JWKS', async () => {
    let now = 1_700_000_000_000;
    const signer = await AssertionSigner.create(
      { keys: [pem('ec')], ttlMs: 60_000, issuer: 'https://app.example.com', claims: ['email'] },
      () => now,
    );
    const jwt = await signer.assertion({ session: 'h1', route: '/api', audience: 'http://api.internal', claims: CLAIMS });
    const { payload, protectedHeader } = await jwtVerify(jwt, createLocalJWKSet(signer.jwks()), {
      issuer: 'https://app.example.com',
      audience: 'http://api.internal',
      currentDate: new Date(now),
    });
    expect(protectedHeader.alg).toBe('ES256');
    expect(payload).toEqual({
      iss: 'https://app.example.com',
      sub: 'alice',
      aud: 'http://api.internal',
      iat: now / 1000,
      exp: now / 1000 + 60,
      email: 'alice@example.com',
    });
    for (const key of signer.jwks().keys) expect(key).not.toHaveProperty('d');

    const routeClaims = await signer.assertion({ session: 'h1', route: '/admin', audience: 'admin', claims: CLAIMS, select: ['groups'] });
    expect((await jwtVerify(routeClaims, createLocalJWKSet(signer.jwks()), { currentDate: new Date(now) })).payload.groups).toEqual([
      'staff',
    ]);

    // Reused while more than half the lifetime is left, then signed anew.
    now += 29_000;
    expect(await signer.assertion({ session: 'h1', route: '/api', audience: 'http://api.internal', claims: CLAIMS })).toBe(jwt);
    expect(await signer.assertion({ session: 'h2', route: '/api', audience: 'http://api.internal', claims: CLAIMS })).not.toBe(jwt);
    now += 2_000;
    expect(await signer.assertion({ session: 'h1', route: '/api', audience: 'http://api.internal', claims: CLAIMS })).not.toBe(jwt);
  });

  test('rotation: the first key signs, every key is published, old assertions still verify', async () => {
    const [oldKey, newKey] = [pem('rsa'), pem('ec')];
    const before = await AssertionSigner.create({ keys: [oldKey], ttlMs: 60_000, issuer: 'gw', claims: [] });
    const during = await AssertionSigner.create({ keys: [newKey, oldKey], ttlMs: 60_000, issuer: 'gw', claims: [] });
    const after = await AssertionSigner.create({ keys: [newKey], ttlMs: 60_000, issuer: 'gw', claims: [] });
    const oldJwt = await before.assertion({ session: 's', route: '/api', audience: 'a', claims: CLAIMS });
    const newJwt = await during.assertion({ session: 's', route: '/api', audience: 'a', claims: CLAIMS });
    expect(decodeProtectedHeader(oldJwt).alg).toBe('RS256');
    expect(decodeProtectedHeader(newJwt).kid).toBe(after.jwks().keys[0]?.kid);
    // Key ids are derived from the key: every instance and restart publishes the same ones.
    expect(during.jwks().keys.map((key) => key.kid)).toEqual([after.jwks().keys[0]?.kid, before.jwks().keys[0]?.kid]);
    await expect(jwtVerify(oldJwt, createLocalJWKSet(during.jwks()))).resolves.toBeTruthy();
    await expect(jwtVerify(newJwt, createLocalJWKSet(during.jwks()))).resolves.toBeTruthy();
    await expect(jwtVerify(oldJwt, createLocalJWKSet(after.jwks()))).rejects.toThrow();
  });
});
