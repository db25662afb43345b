import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { stringify } from 'yaml';
import { buildConfig, ConfigError, parseConfigText } from '../../src/config/load.ts';
import { parseDuration } from '../../src/config/duration.ts';
import { interpolateEnv } from '../../src/config/interpolate.ts';

const SECRET = 'q8Zr2LmN5vXc7TbY1wKe4HsJ9pUa3GdF';
const OTHER_SECRET = 'Xy7Kp2Qm9Rt4Lw8Zn3Vb6Hc1Jd5Fg0Sa';
const KEY = Buffer.alloc(32, 7).toString('base64');
const OTHER_KEY = Buffer.alloc(32, 9).toString('base64url').replace(/=+$/, '');

type Raw = Record<string, unknown>;

function minimal(overrides: (raw: Raw & { session: Raw; oidc: Raw }) => void = () => {}): Raw {
  const raw = {
    publicUrl: 'https://app.example.com',
    oidc: { issuer: 'https://idp.example.com', clientId: 'spa', clientSecret: 'shh' },
    session: { store: 'memory', secret: SECRET, encryptionKey: KEY },
    routes: [{ path: '/api', upstream: 'http://api.internal:3000' }],
  };
  overrides(raw);
  return raw;
}

function problems(input: unknown, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    if (typeof input === 'string') parseConfigText(input, env);
    else buildConfig(input);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('durations', () => {
  test.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['15m', 900_000],
    ['2h', 7_200_000],
    ['7d', 604_800_000],
    ['1.5s', 1_500],
    [' 2h ', 7_200_000],
    [30, 30_000],
    [0.25, 250],
    ['45', 45_000],
    [0, 0],
  ])('%j is %d ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  test.each(['', 'soon', '10 minutes', '5w', 's', '-5s', '1e3', '1h30m', '5S', 'NaN'])('%j is refused', (input) => {
    expect(parseDuration(input)).toBeUndefined();
  });

  test.each([-1, Number.NaN, Number.POSITIVE_INFINITY, true, null, {}, []])('non-duration value %j is refused', (input) => {
    expect(parseDuration(input)).toBeUndefined();
  });

  test('durations in the file become milliseconds, garbage is reported with its path', () => {
    const config = buildConfig(minimal((raw) => Object.assign(raw, { shutdownGrace: '500ms', tokens: { refreshBeforeExpiry: 45 } })));
    expect(config.shutdownGraceMs).toBe(500);
    expect(config.tokens.refreshBeforeExpiryMs).toBe(45_000);
    expect(problems(minimal((raw) => Object.assign(raw, { shutdownGrace: 'a while', tokens: { refreshBeforeExpiry: true } })))).toEqual([
      'shutdownGrace: must be a duration such as 500ms, 30s, 15m, 2h, 7d or a number of seconds',
      'tokens.refreshBeforeExpiry: must be a duration such as 500ms, 30s, 15m, 2h, 7d or a number of seconds',
    ]);
  });
});

describe('${VAR} interpolation', () => {
  test('set variables are substituted, defaults apply to unset and empty ones', () => {
    const { text, missing } = interpolateEnv('a=${A} b=${B:-dflt} c=${C:-dflt} d=${D:-} e=${A:-unused}', { A: 'one', C: '' });
    expect(text).toBe('a=one b=dflt c=dflt d= e=one');
    expect(missing).toEqual([]);
  });

  test('a variable with neither value nor default is reported once, by name', () => {
    const { text, missing } = interpolateEnv('${X} ${X} ${Y:-y} $Z ${not-a-name}', {});
    expect(text).toBe('  y $Z ${not-a-name}');
    expect(missing).toEqual(['X']);
  });

  test('substitution happens before YAML parsing, and a missing variable is named in the problems', () => {
    const yaml = stringify(minimal((raw) => Object.assign(raw.session, { secret: '${SESSION_SECRET}', encryptionKey: '${SESSION_KEY:-' + KEY + '}' })));
    const config = parseConfigText(yaml, { SESSION_SECRET: SECRET, SESSION_KEY: '' });
    expect(config.session.secrets).toEqual([SECRET]);
    expect(config.session.encryptionKeys[0]).toEqual(Buffer.alloc(32, 7));
    expect(problems(yaml, {})).toEqual(['session.secret: is required', 'environment variable SESSION_SECRET is not set (referenced as ${SESSION_SECRET})']);
  });
});

describe('contract section 2: every key, with exactly its name', () => {
  const text = readFileSync(new URL('../fixtures/contract-section2.yaml', import.meta.url), 'utf8');
  const env = { OIDC_CLIENT_SECRET: 'client-secret', SESSION_SECRET: SECRET, SESSION_KEY: KEY };

  test('the contract block parses into the runtime shape', () => {
    const config = parseConfigText(text, env);
    expect(config.listen).toEqual({ host: '0.0.0.0', port: 8080 });
    expect(config.publicUrl).toBe('https://app.example.com');
    expect(config.trustProxy).toBe(false);
    expect(config.shutdownGraceMs).toBe(10_000);
    expect(config.admin).toEqual({ host: '127.0.0.1', port: 9090 });
    expect(config.oidc).toMatchObject({
      issuer: 'https://idp.example.com',
      clientId: 'spa-bff',
      clientSecret: 'client-secret',
      scopes: ['openid', 'profile', 'email', 'offline_access'],
      authParams: {},
      postLogoutRedirect: '/',
      timeoutMs: 10_000,
    });
    expect(config.session).toMatchObject({
      store: 'redis',
      redis: { url: 'redis://127.0.0.1:6379/0', keyPrefix: 'bff:', commandTimeoutMs: 1000 },
      cookieName: '__Host-Http-bff-session',
      sameSite: 'strict',
      secrets: [SECRET],
      idleTimeoutMs: 7_200_000,
      absoluteTimeoutMs: 43_200_000,
    });
    expect(config.tokens).toEqual({ refreshBeforeExpiryMs: 30_000, retryOn401: true });
    expect(config.csrf).toEqual({ header: 'x-csrf' });
    expect(config.scrub).toEqual({ responseHeaders: [], bodies: true });
    expect(config.routes.map((r) => [r.path, r.upstream.href, r.token, r.stripPrefix, r.timeoutMs])).toEqual([
      ['/api', 'http://api.internal:3000/', 'user', false, 30_000],
      ['/', 'http://spa.internal:5173/', 'none', false, 30_000],
    ]);
  });

  test('the commented alternatives (cluster, sentinel) are accepted by name', () => {
    const cluster = text.replace('url: redis://127.0.0.1:6379/0', 'cluster: [redis://10.0.0.1:7000, redis://10.0.0.2:7000]');
    expect(parseConfigText(cluster, env).session.redis.cluster).toEqual(['redis://10.0.0.1:7000', 'redis://10.0.0.2:7000']);
    const sentinel = text.replace('url: redis://127.0.0.1:6379/0', 'sentinel: { name: mymaster, nodes: [redis://10.0.0.1:26379] }');
    expect(parseConfigText(sentinel, env).session.redis.sentinel).toEqual({ name: 'mymaster', nodes: ['redis://10.0.0.1:26379'] });
  });

  test('the result is frozen', () => {
    const config = parseConfigText(text, env);
    expect(Object.isFrozen(config.session)).toBe(true);
    expect(Object.isFrozen(config.routes)).toBe(true);
  });
});

describe('derived defaults', () => {
  test.each([
    ['https://app.example.com', true, '__Host-Http-bff-session'],
    ['http://localhost:8080', true, '__Host-Http-bff-session'],
    ['http://127.0.0.1:8080', false, 'bff-session'],
    ['http://[::1]:8080', false, 'bff-session'],
  ])('publicUrl %s: secure=%s, cookie %s', (publicUrl, secure, name) => {
    const config = buildConfig(minimal((raw) => Object.assign(raw, { publicUrl })));
    expect(config.session.secureCookie).toBe(secure);
    expect(config.session.cookieName).toBe(name);
  });

  test('an explicit cookieName wins; a __Host- name without Secure is refused', () => {
    expect(buildConfig(minimal((raw) => { raw.session.cookieName = 'sid'; })).session.cookieName).toBe('sid');
    expect(problems(minimal((raw) => Object.assign(raw, { publicUrl: 'http://127.0.0.1:8080' }) && Object.assign(raw.session, { cookieName: '__Host-sid' })))).toEqual([
      'session.cookieName: a __Host-/__Secure- name needs a Secure cookie (publicUrl https or localhost)',
    ]);
  });

  test('omitted sections take the contract defaults', () => {
    const config = buildConfig(minimal());
    expect(config.listen).toEqual({ host: '0.0.0.0', port: 8080 });
    expect(config.shutdownGraceMs).toBe(10_000);
    expect(config.admin).toBeUndefined();
    expect(config.session.sameSite).toBe('strict');
    expect(config.session.idleTimeoutMs).toBe(7_200_000);
    expect(config.tokens).toEqual({ refreshBeforeExpiryMs: 30_000, retryOn401: true });
    expect(config.csrf.header).toBe('x-csrf');
    expect(config.scrub).toEqual({ responseHeaders: [], bodies: true });
    expect(config.routes[0]).toMatchObject({ token: 'user', stripPrefix: false, timeoutMs: 30_000 });
  });
});

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
    ['session.redis', (raw: Raw & { session: Raw }) => Object.assign(raw.session, { redis: { url: 'redis://r', db: 1 } }), 'session.redis.db'],
    ['session.redis.sentinel', (raw: Raw & { session: Raw }) => Object.assign(raw.session, { redis: { sentinel: { name: 'm', nodes: ['redis://s'], role: 'x' } } }), 'session.redis.sentinel.role'],
    ['tokens', (raw: Raw) => Object.assign(raw, { tokens: { retryOn401: true, retryOn403: true } }), 'tokens.retryOn403'],
    ['csrf', (raw: Raw) => Object.assign(raw, { csrf: { headerName: 'x' } }), 'csrf.headerName'],
    ['scrub', (raw: Raw) => Object.assign(raw, { scrub: { body: true } }), 'scrub.body'],
    ['routes[n]', (raw: Raw) => Object.assign(raw, { routes: [{ path: '/a', upstream: 'http://a' }, { path: '/b', upstream: 'http://b', strip: true }] }), 'routes[1].strip'],
  ] as const)('an unknown key in %s is refused with its path', (_where, mutate, path) => {
    expect(problems(minimal(mutate as (raw: Raw) => void))).toEqual([`${path}: unknown key`]);
  });

  test('keys are case-sensitive: a near-miss spelling is an unknown key', () => {
    expect(problems(minimal((raw) => Object.assign(raw, { PublicUrl: 'https://x.example.com' })))).toEqual(['PublicUrl: unknown key']);
  });

  test('missing required keys and wrong types say so', () => {
    expect(problems({}).sort()).toEqual(['oidc: is required', 'publicUrl: is required', 'session: is required']);
    expect(problems(minimal((raw) => Object.assign(raw, { trustProxy: 'yes', routes: [{ path: '/a', upstream: 'http://a', stripPrefix: 1 }] }))).sort()).toEqual([
      'routes[0].stripPrefix: must be true or false',
      'trustProxy: must be true or false',
    ]);
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
    const dup = [{ path: '/a', upstream: 'http://a' }, { path: '/a/', upstream: 'http://b' }];
    expect(problems(minimal((raw) => Object.assign(raw, { routes: dup })))).toEqual(['routes[1].path: duplicates routes[0].path']);
  });

  test('a YAML syntax error is reported, not thrown raw', () => {
    expect(problems('publicUrl: [unclosed\n')[0]).toMatch(/^YAML: /);
    expect(problems('a: 1\na: 2\n')[0]).toMatch(/^YAML: /);
  });
});

describe('https for the issuer and publicUrl, except loopback', () => {
  test.each(['http://localhost:8080', 'http://127.0.0.1:8080', 'http://127.10.20.30', 'http://[::1]:8080', 'https://app.example.com'])('%s is accepted', (url) => {
    expect(problems(minimal((raw) => { raw.publicUrl = url; raw.oidc.issuer = `${url}/realm`; }))).toEqual([]);
  });

  test.each(['http://app.example.com', 'http://10.0.0.1', 'http://localhost.evil.com', 'http://127.0.0.1.nip.io', 'http://[::2]', 'http://0.0.0.0'])('%s is refused for both', (url) => {
    expect(problems(minimal((raw) => { raw.publicUrl = url; raw.oidc.issuer = url; }))).toEqual([`publicUrl: ${HTTPS_RULE}`, `oidc.issuer: ${HTTPS_RULE}`]);
  });

  test('publicUrl is an origin only; upstreams may be plain http anywhere', () => {
    expect(problems(minimal((raw) => { raw.publicUrl = 'https://app.example.com/app'; }))).toEqual(['publicUrl: must be an origin only (no path, query, fragment or credentials)']);
    expect(problems(minimal((raw) => Object.assign(raw, { routes: [{ path: '/', upstream: 'http://10.1.2.3:8080/base' }] })))).toEqual([]);
  });
});

describe('session secrets and keys', () => {
  test.each([
    ['short', 'too-short-secret', 'session.secret: must be at least 32 characters'],
    ['weak', 'abababababababababababababababababab', 'session.secret: is too weak: use a random value (e.g. `openssl rand -base64 48`)'],
    ['not a string', 12345, 'session.secret: must be a string of at least 32 characters, or a list of them'],
  ])('a %s secret is refused', (_kind, secret, message) => {
    expect(problems(minimal((raw) => { raw.session.secret = secret; }))).toEqual([message]);
  });

  test.each([
    ['16 bytes', Buffer.alloc(16, 1).toString('base64')],
    ['33 bytes', Buffer.alloc(33, 1).toString('base64')],
    ['not base64', 'this is not base64 at all, sorry!!!!!!!!!!!'],
    ['hex', Buffer.alloc(32, 1).toString('hex')],
  ])('an encryption key of %s is refused', (_kind, key) => {
    expect(problems(minimal((raw) => { raw.session.encryptionKey = key; }))).toEqual([
      'session.encryptionKey: must be 32 bytes, base64-encoded (e.g. `openssl rand -base64 32`)',
    ]);
  });

  test('secret and encryptionKey accept lists; the first signs/encrypts, all are kept in order', () => {
    const config = buildConfig(minimal((raw) => Object.assign(raw.session, { secret: [SECRET, OTHER_SECRET], encryptionKey: [KEY, OTHER_KEY] })));
    expect(config.session.secrets).toEqual([SECRET, OTHER_SECRET]);
    expect(config.session.encryptionKeys).toEqual([Buffer.alloc(32, 7), Buffer.alloc(32, 9)]);
  });

  test('every element of a list is checked, and an empty list is refused', () => {
    expect(problems(minimal((raw) => Object.assign(raw.session, { secret: [SECRET, 'short'], encryptionKey: [KEY, 'AAAA'] })))).toEqual([
      'session.secret[1]: must be at least 32 characters',
      'session.encryptionKey[1]: must be 32 bytes, base64-encoded (e.g. `openssl rand -base64 32`)',
    ]);
    expect(problems(minimal((raw) => { raw.session.secret = []; }))).toEqual(['session.secret: must list at least one value']);
  });
});

describe('session.redis: exactly one of url, cluster, sentinel', () => {
  const withRedis = (redis: Raw) => minimal((raw) => Object.assign(raw.session, { store: 'redis', redis }));
  const ONE_OF = 'session.redis: must set exactly one of url, cluster, sentinel';

  test.each([
    [{ url: 'redis://r:6379/2' }, { url: 'redis://r:6379/2' }],
    [{ cluster: ['redis://a:7000', 'rediss://b:7000'] }, { cluster: ['redis://a:7000', 'rediss://b:7000'] }],
    [{ sentinel: { name: 'm', nodes: ['redis://s:26379'], password: 'p' } }, { sentinel: { name: 'm', nodes: ['redis://s:26379'], password: 'p' } }],
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
    expect(buildConfig(minimal((raw) => { raw.session.store = 'redis'; })).session.redis).toMatchObject({ url: 'redis://127.0.0.1:6379/0', keyPrefix: 'bff:', commandTimeoutMs: 1000 });
  });
});
