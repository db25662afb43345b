import { generateKeyPairSync } from 'node:crypto';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { describe, expect, test } from 'vitest';
import { AssertionSigner } from '../../src/authz/assertion.ts';
import { RouteIdentity } from '../../src/authz/route-identity.ts';
import { buildConfig } from '../../src/config/load.ts';
import { errorBody, type GatewayError } from '../../src/errors.ts';
import type { SessionRecord } from '../../src/session/sessions.ts';
import { minimal } from '../fixtures/config-inputs.ts';

const KEY_PEM = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

const config = buildConfig(
  minimal((raw) => {
    Object.assign(raw, { identity: { assertion: { keys: KEY_PEM, header: 'X-Who' } } });
    raw.routes = [
      { path: '/admin', upstream: 'http://admin.internal:81/v1', allow: { anyOf: [{ claim: 'groups', contains: 'admins' }] } },
      { path: '/reports', upstream: 'http://reports.internal', token: 'client', allow: { allOf: [{ emailDomain: 'example.com' }] } },
      {
        path: '/api',
        upstream: 'http://api.internal',
        claimHeaders: { 'X-User-Sub': 'sub', 'x-user-name': 'name' },
        identityAssertion: { claims: ['email'] },
      },
      { path: '/', upstream: 'http://spa.internal', token: 'none' },
    ];
  }),
);
const route = (path: string) => config.routes.find((r) => r.path === path) as (typeof config.routes)[number];

function session(sub: string, claims: Record<string, unknown>): { handle: string; record: SessionRecord } {
  return { handle: `handle-${sub}`, record: { sub, claims } as SessionRecord };
}

const errorOf = (fn: () => void): GatewayError => {
  try {
    fn();
  } catch (err) {
    return err as GatewayError;
  }
  throw new Error('did not throw');
};

describe('route identity', async () => {
  const signer = await AssertionSigner.create({ keys: [KEY_PEM], ttlMs: 60_000, issuer: config.publicUrl, claims: [] });
  const identity = new RouteIdentity({ routes: config.routes, signer, assertionHeader: config.identity.assertion?.header });

  test('rules pass, refuse with 403 forbidden, and need a session (401) on any token mode', () => {
    expect(() => identity.authorize(route('/admin'), session('alice', { groups: ['admins'] }))).not.toThrow();
    const denied = errorOf(() => identity.authorize(route('/admin'), session('bob', { groups: ['users'] })));
    expect([denied.code, denied.status]).toEqual(['forbidden', 403]);
    expect(denied.detail).not.toContain('users');
    expect(JSON.parse(errorBody(denied.code))).toEqual({ error: 'forbidden', message: 'You are not allowed to use this route.' });
    expect(errorOf(() => identity.authorize(route('/reports'), undefined)).code).toBe('unauthenticated');
    expect(errorOf(() => identity.authorize(route('/reports'), session('eve', { email: 'eve@evil.test' }))).code).toBe('forbidden');
    expect(() => identity.authorize(route('/'), undefined)).not.toThrow();
  });

  test('which routes need the session, and which names are reserved everywhere', () => {
    expect(config.routes.map((r) => identity.usesSession(r))).toEqual([true, true, true, false]);
    expect(['x-user-sub', 'X_User_Name', 'x-who', 'x_WHO'].every((name) => identity.names.has(name))).toBe(true);
    expect(identity.names.has('x-user')).toBe(false);
  });

  test('claim headers and an assertion for the route upstream origin', async () => {
    const alice = session('alice', { name: 'Ålice\r\nX-Admin: 1', email: 'alice@example.com' });
    const headers = await identity.headers(route('/api'), alice);
    expect(headers['x-user-sub']).toBe('alice');
    expect(headers['x-user-name']).toBe('%C3%85lice%0D%0AX-Admin:%201');
    const { payload } = await jwtVerify(headers['x-who'] as string, createLocalJWKSet(signer.jwks()), {
      audience: 'http://api.internal',
      issuer: config.publicUrl,
    });
    expect([payload.sub, payload.email]).toEqual(['alice', 'alice@example.com']);
    expect(await identity.headers(route('/api'), undefined)).toEqual({});
    expect(await identity.headers(route('/admin'), alice)).toEqual({});
  });
});
