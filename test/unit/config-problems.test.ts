import { describe, expect, test } from 'vitest';
import { buildConfig } from '../../src/config/load.ts';
import { KEY, minimal, OTHER_KEY, OTHER_SECRET, problems, SECRET, type Raw } from '../fixtures/config-inputs.ts';

const HTTPS_RULE = 'must be https (http is allowed only for localhost, 127.0.0.0/8 and [::1])';

describe('problems are reported with their YAML paths, all at once', () => {
  test('a file with many mistakes lists every one of them', () => {
    const yaml = `
publicUrl: http://app.example.com
listen: { port: eighty }
shutdownGrace: forever
colour: blue
oidc: { issuer: http://idp.example.com, clientId: spa, clientSecret: shh, scope: [openid] }
session:
  store: redis
  redis: { url: "redis://a:6379", cluster: ["redis://b:7000"], tls: true }
  secret: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
  encryptionKey: c2hvcnQ=
routes:
  - { path: /api, upstream: "http://api.internal" }
  - { path: /x, upstream: not a url, extra: 1 }
`;
    expect(problems(yaml).sort()).toEqual(
      [
        'colour: unknown key',
        'listen.port: must be a port number',
        `publicUrl: ${HTTPS_RULE}`,
        'shutdownGrace: must be a duration such as 500ms, 30s, 15m, 2h, 7d or a number of seconds',
        'oidc.scope: unknown key',
        `oidc.issuer: ${HTTPS_RULE}`,
        'session.redis.tls: unknown key',
        'session.redis: must set exactly one of url, cluster, sentinel',
        'session.secret: is too weak: use a random value (e.g. `openssl rand -base64 48`)',
        'session.encryptionKey: must be 32 bytes, base64-encoded (e.g. `openssl rand -base64 32`)',
        'routes[1].extra: unknown key',
        'routes[1].upstream: must be a URL',
      ].sort(),
    );
  });

  test.each([
    ['(root)', (raw: Raw) => Object.assign(raw, { bogus: 1 }), 'bogus'],
    ['listen', (raw: Raw) => Object.assign(raw, { listen: { port: 1, ipv6: true } }), 'listen.ipv6'],
    ['admin', (raw: Raw) => Object.assign(raw, { admin: { port: 9, path: '/x' } }), 'admin.path'],
    ['oidc', (raw: Raw & { oidc: Raw }) => Object.assign(raw.oidc, { client_id: 'x' }), 'oidc.client_id'],
    ['session', (raw: Raw & { session: Raw }) => Object.assign(raw.session, { cookie: 'x' }), 'session.cookie'],
    [
      'session.redis',
      (raw: Raw & { session: Raw }) => Object.assign(raw.session, { redis: { url: 'redis://r', db: 1 } }),
      'session.redis.db',
    ],
    [
      'session.redis.sentinel',
      (raw: Raw & { session: Raw }) => Object.assign(raw.session, { redis: { sentinel: { name: 'm', nodes: ['redis://s'], role: 'x' } } }),
      'session.redis.sentinel.role',
    ],
    ['tokens', (raw: Raw) => Object.assign(raw, { tokens: { retryOn401: true, retryOn403: true } }), 'tokens.retryOn403'],
    ['csrf', (raw: Raw) => Object.assign(raw, { csrf: { headerName: 'x' } }), 'csrf.headerName'],
    ['scrub', (raw: Raw) => Object.assign(raw, { scrub: { body: true } }), 'scrub.body'],
    [
      'routes[n]',
      (raw: Raw) =>
        Object.assign(raw, {
          routes: [
            { path: '/a', upstream: 'http://a' },
            { path: '/b', upstream: 'http://b', strip: true },
          ],
        }),
      'routes[1].strip',
    ],
  ] as const)('an unknown key in %s is refused with its path', (_where, mutate, path) => {
    expect(problems(minimal(mutate as (raw: Raw) => void))).toEqual([`${path}: unknown key`]);
  });

  test('keys are case-sensitive: a near-miss spelling is an unknown key', () => {
    expect(problems(minimal((raw) => Object.assign(raw, { PublicUrl: 'https://x.example.com' })))).toEqual(['PublicUrl: unknown key']);
  });

  test('missing required keys and wrong types say so', () => {
    expect(problems({}).sort()).toEqual(['oidc: is required', 'publicUrl: is required', 'session: is required']);
    expect(
      problems(
        minimal((raw) => Object.assign(raw, { trustProxy: 'yes', routes: [{ path: '/a', upstream: 'http://a', stripPrefix: 1 }] })),
      ).sort(),
    ).toEqual(['routes[0].stripPrefix: must be true or false', 'trustProxy: must be true or false']);
  });

  test('route rules: paths, upstreams, token modes, duplicates', () => {
    const routes = [
      { path: 'api', upstream: 'http://a' },
      { path: '/b', upstream: 'ftp://b' },
      { path: '/c', upstream: 'http://c?x=1' },
      { path: '/d', upstream: 'http://user:pw@d' },
      { path: '/e', upstream: 'http://e', token: 'always' },
      { path: '/f/../g', upstream: 'http://f' },
      { path: '/h', upstream: 'http://h', timeout: 'later' },
    ];
    expect(problems(minimal((raw) => Object.assign(raw, { routes })))).toEqual([
      'routes[0].path: must be a path such as /api',
      'routes[1].upstream: must be a URL',
      'routes[2].upstream: must not carry a query, fragment or credentials',
      'routes[3].upstream: must not carry a query, fragment or credentials',
      'routes[4].token: must be one of user, optional, none, client',
      'routes[5].path: must be a path such as /api',
      'routes[6].timeout: must be a duration such as 500ms, 30s, 15m, 2h, 7d or a number of seconds',
    ]);
    const dup = [
      { path: '/a', upstream: 'http://a' },
      { path: '/a/', upstream: 'http://b' },
    ];
    expect(problems(minimal((raw) => Object.assign(raw, { routes: dup })))).toEqual(['routes[1].path: duplicates routes[0].path']);
  });

  test('a YAML syntax error is reported, not thrown raw', () => {
    expect(problems('publicUrl: [unclosed\n')[0]).toMatch(/^YAML: /);
    expect(problems('a: 1\na: 2\n')[0]).toMatch(/^YAML: /);
  });
});

describe('https for the issuer and publicUrl, except loopback', () => {
  test.each(['http://localhost:8080', 'http://127.0.0.1:8080', 'http://127.10.20.30', 'http://[::1]:8080', 'https://app.example.com'])(
    '%s is accepted',
    (url) => {
      expect(
        problems(
          minimal((raw) => {
            raw.publicUrl = url;
            raw.oidc.issuer = `${url}/realm`;
          }),
        ),
      ).toEqual([]);
    },
  );

  test.each([
    'http://app.example.com',
    'http://10.0.0.1',
    'http://localhost.evil.com',
    'http://127.0.0.1.nip.io',
    'http://[::2]',
    'http://0.0.0.0',
  ])('%s is refused for both', (url) => {
    expect(
      problems(
        minimal((raw) => {
          raw.publicUrl = url;
          raw.oidc.issuer = url;
        }),
      ),
    ).toEqual([`publicUrl: ${HTTPS_RULE}`, `oidc.issuer: ${HTTPS_RULE}`]);
  });

  test('publicUrl is an origin only; upstreams may be plain http anywhere', () => {
    expect(
      problems(
        minimal((raw) => {
          raw.publicUrl = 'https://app.example.com/app';
        }),
      ),
    ).toEqual(['publicUrl: must be an origin only (no path, query, fragment or credentials)']);
    expect(problems(minimal((raw) => Object.assign(raw, { routes: [{ path: '/', upstream: 'http://10.1.2.3:8080/base' }] })))).toEqual([]);
  });
});

describe('session secrets and keys', () => {
  test.each([
    ['short', 'too-short-secret', 'session.secret: must be at least 32 characters'],
    ['weak', 'abababababababababababababababababab', 'session.secret: is too weak: use a random value (e.g. `openssl rand -base64 48`)'],
    ['not a string', 12345, 'session.secret: must be a string of at least 32 characters, or a list of them'],
  ])('a %s secret is refused', (_kind, secret, message) => {
    expect(
      problems(
        minimal((raw) => {
          raw.session.secret = secret;
        }),
      ),
    ).toEqual([message]);
  });

  test.each([
    ['16 bytes', Buffer.alloc(16, 1).toString('base64')],
    ['33 bytes', Buffer.alloc(33, 1).toString('base64')],
    ['not base64', 'this is not base64 at all, sorry!!!!!!!!!!!'],
    ['hex', Buffer.alloc(32, 1).toString('hex')],
  ])('an encryption key of %s is refused', (_kind, key) => {
    expect(
      problems(
        minimal((raw) => {
          raw.session.encryptionKey = key;
        }),
      ),
    ).toEqual(['session.encryptionKey: must be 32 bytes, base64-encoded (e.g. `openssl rand -base64 32`)']);
  });

  test('secret and encryptionKey accept lists; the first signs/encrypts, all are kept in order', () => {
    const config = buildConfig(
      minimal((raw) => Object.assign(raw.session, { secret: [SECRET, OTHER_SECRET], encryptionKey: [KEY, OTHER_KEY] })),
    );
    expect(config.session.secrets).toEqual([SECRET, OTHER_SECRET]);
    expect(config.session.encryptionKeys).toEqual([Buffer.alloc(32, 7), Buffer.alloc(32, 9)]);
  });

  test('every element of a list is checked, and an empty list is refused', () => {
    expect(problems(minimal((raw) => Object.assign(raw.session, { secret: [SECRET, 'short'], encryptionKey: [KEY, 'AAAA'] })))).toEqual([
      'session.secret[1]: must be at least 32 characters',
      'session.encryptionKey[1]: must be 32 bytes, base64-encoded (e.g. `openssl rand -base64 32`)',
    ]);
    expect(
      problems(
        minimal((raw) => {
          raw.session.secret = [];
        }),
      ),
    ).toEqual(['session.secret: must list at least one value']);
  });
});

describe('session.redis: exactly one of url, cluster, sentinel', () => {
  const withRedis = (redis: Raw) => minimal((raw) => Object.assign(raw.session, { store: 'redis', redis }));
  const ONE_OF = 'session.redis: must set exactly one of url, cluster, sentinel';

  test.each([
    [{ url: 'redis://r:6379/2' }, { url: 'redis://r:6379/2' }],
    [{ cluster: ['redis://a:7000', 'rediss://b:7000'] }, { cluster: ['redis://a:7000', 'rediss://b:7000'] }],
    [
      { sentinel: { name: 'm', nodes: ['redis://s:26379'], password: 'p' } },
      { sentinel: { name: 'm', nodes: ['redis://s:26379'], password: 'p' } },
    ],
  ])('%j is accepted', (redis, expected) => {
    expect(buildConfig(withRedis(redis)).session.redis).toMatchObject(expected);
  });

  test.each([
    { url: 'redis://a', cluster: ['redis://b'] },
    { url: 'redis://a', sentinel: { name: 'm', nodes: ['redis://s'] } },
    { cluster: ['redis://b'], sentinel: { name: 'm', nodes: ['redis://s'] } },
    { keyPrefix: 'x:' },
  ])('%j is refused', (redis) => {
    expect(problems(withRedis(redis))).toEqual([ONE_OF]);
  });

  test('redis URLs must be redis:// or rediss://', () => {
    expect(problems(withRedis({ cluster: ['http://a:7000'] }))).toEqual(['session.redis.cluster[0]: must be a redis:// or rediss:// URL']);
  });

  test('without a redis block the store defaults to a local Redis', () => {
    expect(
      buildConfig(
        minimal((raw) => {
          raw.session.store = 'redis';
        }),
      ).session.redis,
    ).toMatchObject({ url: 'redis://127.0.0.1:6379/0', keyPrefix: 'bff:', commandTimeoutMs: 1000 });
  });
});

describe('routes: per-route audience and scopes (docs/http-interface.md#route-tokens)', () => {
  const withRoute = (route: Raw) =>
    minimal((raw) => {
      raw.routes = [{ path: '/orders', upstream: 'http://orders.internal', ...route }];
    });

  test.each(['user', 'optional', 'client'])('are accepted on token: %s routes', (token) => {
    const [route] = buildConfig(withRoute({ token, audience: 'https://orders.internal', scopes: ['orders.read'] })).routes;
    expect(route).toMatchObject({ token, audience: 'https://orders.internal', scopes: ['orders.read'] });
  });

  test('are refused on token: none routes, where no token would carry them', () => {
    expect(problems(withRoute({ token: 'none', audience: 'https://orders.internal' }))).toEqual([
      'routes[0].audience: has no effect on token: none routes',
    ]);
    expect(problems(withRoute({ token: 'none', scopes: ['orders.read'] }))).toEqual([
      'routes[0].scopes: has no effect on token: none routes',
    ]);
  });
});
