import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { stringify } from 'yaml';
import { buildConfig, parseConfigText } from '../../src/config/load.ts';
import { parseDuration } from '../../src/config/duration.ts';
import { interpolateEnv } from '../../src/config/interpolate.ts';
import { KEY, minimal, problems, SECRET } from '../fixtures/config-inputs.ts';

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
    const yaml = stringify(
      minimal((raw) => Object.assign(raw.session, { secret: '${SESSION_SECRET}', encryptionKey: `\${SESSION_KEY:-${KEY}}` })),
    );
    const config = parseConfigText(yaml, { SESSION_SECRET: SECRET, SESSION_KEY: '' });
    expect(config.session.secrets).toEqual([SECRET]);
    expect(config.session.encryptionKeys[0]).toEqual(Buffer.alloc(32, 7));
    expect(problems(yaml, {})).toEqual([
      'session.secret: is required',
      'environment variable SESSION_SECRET is not set (referenced as ${SESSION_SECRET})',
    ]);
  });
});

describe('the documented configuration block (docs/configuration.md): every key, with exactly its name', () => {
  const text = readFileSync(new URL('../fixtures/reference-config.yaml', import.meta.url), 'utf8');
  const env = { OIDC_CLIENT_SECRET: 'client-secret', SESSION_SECRET: SECRET, SESSION_KEY: KEY };

  test('the documented block parses into the runtime shape', () => {
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
    expect(
      buildConfig(
        minimal((raw) => {
          raw.session.cookieName = 'sid';
        }),
      ).session.cookieName,
    ).toBe('sid');
    expect(
      problems(
        minimal(
          (raw) => Object.assign(raw, { publicUrl: 'http://127.0.0.1:8080' }) && Object.assign(raw.session, { cookieName: '__Host-sid' }),
        ),
      ),
    ).toEqual(['session.cookieName: a __Host-/__Secure- name needs a Secure cookie (publicUrl https or localhost)']);
  });

  test('omitted sections take the documented defaults', () => {
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

describe('defaults never make an explicit setting invalid', () => {
  const withSession = (session: Record<string, unknown>) => minimal((raw) => Object.assign(raw.session, session));

  test('absoluteTimeout shorter than the default idle timeout caps it', () => {
    expect(problems(withSession({ absoluteTimeout: '1h' }))).toEqual([]);
    expect(buildConfig(withSession({ absoluteTimeout: '1h' })).session).toMatchObject({
      idleTimeoutMs: 3_600_000,
      absoluteTimeoutMs: 3_600_000,
    });
    expect(buildConfig(withSession({ absoluteTimeout: '3h' })).session).toMatchObject({
      idleTimeoutMs: 7_200_000,
      absoluteTimeoutMs: 10_800_000,
    });
  });

  test('explicit settings are still checked against each other and against the minimum', () => {
    expect(problems(withSession({ absoluteTimeout: '30m', idleTimeout: '1h' }))).toEqual([
      'session.absoluteTimeout: must not be shorter than idleTimeout',
    ]);
    expect(problems(withSession({ idleTimeout: '500ms' }))).toEqual(['session.idleTimeout: must be at least 1s']);
    expect(problems(withSession({ absoluteTimeout: '500ms' }))).toEqual(['session.absoluteTimeout: must be at least 1s']);
  });
});

describe('one runtime shape, derived by the schema', () => {
  test('renamed and derived keys replace the spelling of the file', () => {
    const config = buildConfig(minimal((raw) => Object.assign(raw, { admin: { port: 9091 }, limits: { requestTimeout: '1m' } })));
    expect(Object.keys(config).sort()).toEqual([
      'admin',
      'csrf',
      'forwardAuth',
      'identity',
      'limits',
      'listen',
      'oidc',
      'publicUrl',
      'routes',
      'scrub',
      'session',
      'shutdownGraceMs',
      'tokens',
      'trustProxy',
    ]);
    expect(Object.keys(config.limits).sort()).toEqual([
      'bodyIdleTimeoutMs',
      'headersTimeoutMs',
      'keepAliveTimeoutMs',
      'maxBufferedBytes',
      'perClientRequests',
      'perClientWebSockets',
      'requestTimeoutMs',
      'sendIdleTimeoutMs',
      'upstreamConnections',
      'webSocketIdleTimeoutMs',
    ]);
    expect(config.limits.requestTimeoutMs).toBe(60_000);
    expect(Object.keys(config.oidc)).not.toContain('timeout');
    expect(Object.keys(config.oidc)).not.toContain('dpop');
    expect(Object.keys(config.session).sort()).toEqual([
      'absoluteTimeoutMs',
      'cache',
      'cookieName',
      'encryptionKeys',
      'idleTimeoutMs',
      'loginCookieName',
      'redis',
      'sameSite',
      'secrets',
      'secureCookie',
      'store',
    ]);
    expect(Object.keys(config.session.redis)).not.toContain('commandTimeout');
    expect(Object.keys(config.routes[0] ?? {})).not.toContain('timeout');
    expect(config.routes[0]?.upstream).toBeInstanceOf(URL);
  });

  test('an unset clientAuth is auto (basic, or post when the IdP offers only that) and needs the client secret', () => {
    expect(buildConfig(minimal()).oidc.clientAuth).toBe('auto');
    expect(buildConfig(minimal((raw) => void (raw.oidc.clientAuth = 'client_secret_post'))).oidc.clientAuth).toBe('client_secret_post');
    expect(problems(minimal((raw) => void delete raw.oidc.clientSecret))).toEqual(['oidc.clientSecret: must not be empty']);
  });

  test('header names are kept lower-case; publicUrl is the bare origin', () => {
    const config = buildConfig(
      minimal((raw) =>
        Object.assign(raw, {
          publicUrl: 'https://App.Example.com/',
          csrf: { header: 'X-Requested-By' },
          scrub: { responseHeaders: ['X-Debug'] },
        }),
      ),
    );
    expect(config.publicUrl).toBe('https://app.example.com');
    expect(config.csrf.header).toBe('x-requested-by');
    expect(config.scrub.responseHeaders).toEqual(['x-debug']);
  });
});
