import { describe, expect, test } from 'vitest';
import { generateKeyPairSync } from 'node:crypto';
import { buildConfig } from '../../src/config/load.ts';
import { minimal, problems, type Raw } from '../fixtures/config-inputs.ts';

const KEY_PEM = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

const withRoute = (route: Raw, top: Raw = {}) =>
  minimal((raw) => {
    raw.routes = [{ path: '/api', upstream: 'http://api.internal', ...route }];
    Object.assign(raw, top);
  });

describe('authorization keys', () => {
  test('a valid file: rules, claim headers (lower-cased), assertion and forward-auth defaults', () => {
    const config = buildConfig(
      withRoute(
        {
          allow: { anyOf: [{ claim: 'groups', contains: 'admins' }], allOf: [{ emailDomain: '@Example.com' }] },
          claimHeaders: { 'X-User-Sub': 'sub' },
          identityAssertion: true,
        },
        { identity: { assertion: { keys: KEY_PEM } } },
      ),
    );
    const route = config.routes[0];
    expect(route?.allow).toEqual({ anyOf: [{ claim: 'groups', contains: ['admins'] }], allOf: [{ emailDomain: ['example.com'] }] });
    expect(route?.claimHeaders).toEqual([{ header: 'x-user-sub', claim: 'sub' }]);
    expect(route?.identityAssertion).toEqual({});
    expect(config.identity.assertion).toMatchObject({ header: 'x-identity-assertion', ttlMs: 60_000, claims: [] });
    expect(config.forwardAuth).toEqual({ enabled: true, path: '/auth/check' });
  });

  test('unknown operators, empty lists and missing parts are refused with their YAML paths', () => {
    expect(problems(withRoute({ allow: { anyOf: [{ claim: 'groups', matches: 'adm.*' }] } }))).toEqual([
      'routes[0].allow.anyOf[0].matches: unknown key',
      'routes[0].allow.anyOf[0]: must have exactly one operator: equals, contains, emailDomain',
    ]);
    expect(problems(withRoute({ allow: { anyOf: [] } }))).toEqual(['routes[0].allow.anyOf: must list at least one condition']);
    expect(problems(withRoute({ allow: { allOf: [{ claim: 'groups', contains: [] }] } }))).toEqual([
      'routes[0].allow.allOf[0].contains: must list at least one value',
    ]);
    expect(problems(withRoute({ allow: {} }))).toEqual(['routes[0].allow: must set anyOf, allOf or both']);
    expect(problems(withRoute({ allow: { anyOf: [{ equals: 'x' }] } }))).toEqual(['routes[0].allow.anyOf[0].claim: is required']);
    expect(problems(withRoute({ allow: { anyOf: [{ emailDomain: 'localhost' }] } }))).toEqual([
      'routes[0].allow.anyOf[0].emailDomain: must be a domain such as example.com',
    ]);
  });

  test('claim headers may not take over gateway headers, repeat a name or lack a key', () => {
    expect(problems(withRoute({ claimHeaders: { Authorization: 'sub', 'X-Forwarded-User': 'sub', x_user: 'sub' } })).sort()).toEqual(
      [
        'routes[0].claimHeaders.Authorization: is a header the gateway sets or forbids itself',
        'routes[0].claimHeaders.X-Forwarded-User: is a header the gateway sets or forbids itself',
        'routes[0].claimHeaders.x_user: must be a header name of letters, digits and -',
      ].sort(),
    );
    // The claims other stacks trust (client address, URL, method overrides) are the gateway's too.
    expect(
      problems(
        withRoute({ claimHeaders: { 'True-Client-IP': 'sub', 'X-HTTP-Method-Override': 'sub', 'X-Original-URL': 'sub', DPoP: 'sub' } }),
      ).sort(),
    ).toEqual(
      ['True-Client-IP', 'X-HTTP-Method-Override', 'X-Original-URL', 'DPoP']
        .map((name) => `routes[0].claimHeaders.${name}: is a header the gateway sets or forbids itself`)
        .sort(),
    );
    // Checked once the rest of the file is valid, like every rule spanning sections.
    expect(problems(withRoute({ claimHeaders: { 'x-csrf': 'sub' } }))).toEqual(['routes[0].claimHeaders.x-csrf: is already csrf.header']);
    expect(problems(withRoute({ claimHeaders: { 'x-a': 'sub', 'X-A': 'email' } }))).toEqual([
      'routes[0].claimHeaders.X-A: duplicates another header name (names are case-insensitive)',
    ]);
    expect(problems(withRoute({ claimHeaders: {} }))).toEqual(['routes[0].claimHeaders: must map at least one header']);
  });

  test('assertions need keys; forwardAuthToken needs a secret and a token', () => {
    expect(problems(withRoute({ identityAssertion: true }))).toEqual([
      'routes[0].identityAssertion: needs identity.assertion (its signing keys)',
    ]);
    expect(problems(withRoute({ forwardAuthToken: true }))).toEqual(['routes[0].forwardAuthToken: needs forwardAuth.secret']);
    expect(problems(withRoute({ token: 'none', forwardAuthToken: true }, { forwardAuth: { secret: 'x'.repeat(32) } }))).toEqual([
      'routes[0].forwardAuthToken: has no effect on token: none routes',
    ]);
    expect(
      problems(
        withRoute(
          {},
          { identity: { assertion: { keys: ['not a key'], ttl: '1d', claims: ['aud'] } }, forwardAuth: { path: '/auth/user' } },
        ),
      ).sort(),
    ).toEqual(
      [
        'identity.assertion.keys[0]: is not a PEM (PKCS#8) or JWK private key',
        'identity.assertion.ttl: must be between 5s and 1h',
        'identity.assertion.claims[0]: is set by the gateway itself',
      ].sort(),
    );
    expect(problems(withRoute({}, { forwardAuth: { path: '/auth/user' } }))).toEqual(['forwardAuth.path: is already a gateway endpoint']);
  });
});
