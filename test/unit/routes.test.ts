import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import type { RouteConfig } from '../../src/config/load.ts';
import { normalisePath, RouteTable, upstreamUrl } from '../../src/proxy/routes.ts';

function route(path: string, upstream = 'http://up.internal:3000', extra: Partial<RouteConfig> = {}): RouteConfig {
  return { path, upstream: new URL(upstream), token: 'user', stripPrefix: false, timeoutMs: 30_000, ...extra };
}

describe('longest prefix on segment boundaries', () => {
  const table = new RouteTable([route('/'), route('/api'), route('/api/v2'), route('/apix'), route('/static/img')]);
  const matched = (path: string) => table.match(path)?.path;

  test.each([
    ['/api', '/api'],
    ['/api/', '/api'],
    ['/api/users', '/api'],
    ['/apix', '/apix'],
    ['/apix/y', '/apix'],
    ['/apixy', '/'],
    ['/api-v2', '/'],
    ['/api/v2', '/api/v2'],
    ['/api/v2/orders', '/api/v2'],
    ['/api/v20', '/api'],
    ['/api/v', '/api'],
    ['/static', '/'],
    ['/static/img/a.png', '/static/img'],
    ['/', '/'],
    ['/anything/else', '/'],
  ])('%s goes to %s', (path, expected) => {
    expect(matched(path)).toBe(expected);
  });

  test('the order routes are declared in does not matter', () => {
    const reversed = new RouteTable([route('/api/v2'), route('/api'), route('/')].reverse());
    expect(reversed.match('/api/v2/x')?.path).toBe('/api/v2');
    expect(reversed.match('/api/x')?.path).toBe('/api');
  });

  test('without a catch-all, an unmatched path has no route', () => {
    const table = new RouteTable([route('/api')]);
    expect(table.match('/other')).toBeUndefined();
    expect(table.match('/apix')).toBeUndefined();
    expect(table.match('/')).toBeUndefined();
  });
});

describe('normalisePath', () => {
  test.each([
    ['/', '/'],
    ['/a/b', '/a/b'],
    ['/a/b/', '/a/b/'],
    ['//a///b', '/a/b'],
    ['/a//', '/a/'],
    ['/a/./b', '/a/b'],
    ['/a/../b', '/b'],
    ['/a/%2e%2e/b', '/b'],
    ['/a/%2E%2E/b', '/b'],
    ['/a/.%2E/b', '/b'],
    ['/a/%2e./b', '/b'],
    ['/a/%2e/b', '/a/b'],
    ['/a/b/..', '/a/'],
    ['/a/b/.', '/a/b/'],
    ['/a/..', '/'],
    ['/a/...', '/a/...'],
    ['/a/..b', '/a/..b'],
    ['/a;v=1/b', '/a;v=1/b'],
    ['/a/%25', '/a/%25'],
    ['/caf%C3%A9', '/caf%C3%A9'],
  ])('%s -> %s', (raw, expected) => {
    expect(normalisePath(raw)).toEqual({ ok: true, path: expected });
  });

  test.each([
    ['escaping above the root', '/..'],
    ['escaping above the root, encoded', '/%2e%2e/etc/passwd'],
    ['escaping above the root, deeper', '/a/../../b'],
    ['escaping above the root, mixed case', '/a/.%2E/%2E./b'],
    ['dot-dot with a parameter', '/a/..;x/b'],
    ['dot-dot with an empty parameter', '/api/..;/admin'],
    ['dot with a parameter', '/a/.;x/b'],
    ['double-encoded dots', '/a/%252e%252e/b'],
    ['double-encoded dots, upper case', '/a/%252E%252E/b'],
    ['encoded slash', '/a%2fb'],
    ['encoded slash, upper case', '/api/%2E%2E%2Fsecret'],
    ['double-encoded slash', '/a/%252f'],
    ['encoded backslash', '/a%5cb'],
    ['double-encoded backslash', '/a%255c..%255cb'],
    ['raw backslash', '/a\\..\\b'],
    ['encoded NUL', '/a/..%00/b'],
    ['relative path', 'a/b'],
    ['absolute URL', 'http://evil/a'],
    ['empty', ''],
  ])('%s is refused: %s', (_why, raw) => {
    expect(normalisePath(raw).ok).toBe(false);
  });
});

describe('upstreamUrl', () => {
  test('the upstream base path prefixes the request path; the query passes verbatim', () => {
    expect(upstreamUrl(route('/api', 'http://up:3000/base'), '/api/users', 'a=1&b=%20').href).toBe(
      'http://up:3000/base/api/users?a=1&b=%20',
    );
    expect(upstreamUrl(route('/api', 'http://up:3000/base/'), '/api/users', '').href).toBe('http://up:3000/base/api/users');
    expect(upstreamUrl(route('/api', 'http://up:3000'), '/api/users/', '').href).toBe('http://up:3000/api/users/');
  });

  test('stripPrefix removes the route path, keeping the rest as is', () => {
    const strip = route('/api', 'http://up:3000/v1', { stripPrefix: true });
    expect(upstreamUrl(strip, '/api/users', 'x=1').href).toBe('http://up:3000/v1/users?x=1');
    expect(upstreamUrl(strip, '/api', '').href).toBe('http://up:3000/v1/');
    expect(upstreamUrl(strip, '/api/', '').href).toBe('http://up:3000/v1/');
    expect(upstreamUrl(route('/api', 'http://up:3000', { stripPrefix: true }), '/api/a/b', '').href).toBe('http://up:3000/a/b');
  });

  test('stripPrefix on the catch-all changes nothing', () => {
    expect(upstreamUrl(route('/', 'https://spa:5173/app', { stripPrefix: true }), '/index.html', '').href).toBe(
      'https://spa:5173/app/index.html',
    );
  });

  test('characters a URL cannot carry raw are percent-encoded, existing escapes kept', () => {
    expect(upstreamUrl(route('/', 'http://up'), '/a b/%41#x', '').pathname).toBe('/a%20b/%41%23x');
  });
});

describe('property: a request can never leave its route upstream base path', () => {
  const segment = fc.oneof(
    fc.constantFrom(
      '..',
      '.',
      '%2e',
      '%2E%2e',
      '.%2e',
      '%2e.',
      '..;x',
      '.;',
      '',
      'api',
      'v2',
      'x',
      'admin',
      ';x',
      '%2f',
      '%5c',
      '\\',
      '%252e',
      '%25',
      '...',
      '%00',
      'a%20b',
      '?',
      '#',
    ),
    fc.stringMatching(/^[a-z0-9.%;~-]{1,6}$/),
  );
  const rawPath = fc.array(segment, { maxLength: 10 }).map((segments) => `/${segments.join('/')}`);
  const table = new RouteTable([
    route('/api', 'http://api:3000/base', { stripPrefix: true }),
    route('/api/v2', 'http://api2:3000/v2/root'),
    route('/admin', 'http://admin:3000/private/'),
    route('/', 'http://spa:5173/site'),
  ]);
  const base = (r: RouteConfig) => r.upstream.pathname.replace(/\/+$/, '');

  /** What an upstream that decodes once and then resolves dot segments would serve. */
  function servedPath(url: URL): string {
    let decoded: string;
    try {
      decoded = decodeURIComponent(url.pathname);
    } catch {
      decoded = url.pathname;
    }
    return new URL(decoded.replace(/[?#]/g, '_'), 'http://upstream').pathname;
  }

  test('the forwarded path stays under the base path, before and after upstream decoding', () => {
    fc.assert(
      fc.property(rawPath, (raw) => {
        const normalised = normalisePath(raw);
        if (!normalised.ok) return true;
        const matched = table.match(normalised.path);
        if (!matched) return false;
        const target = upstreamUrl(matched, normalised.path, '');
        const prefix = `${base(matched)}/`;
        const served = servedPath(target);
        return (
          target.host === matched.upstream.host &&
          target.pathname.startsWith(prefix) &&
          (served.startsWith(prefix) || `${served}/` === prefix)
        );
      }),
      { numRuns: 5000 },
    );
  });

  test('a path that matches a route keeps matching it after normalisation (no route switching)', () => {
    fc.assert(
      fc.property(rawPath, (raw) => {
        const normalised = normalisePath(raw);
        if (!normalised.ok) return true;
        return normalisePath(normalised.path).ok && (normalisePath(normalised.path) as { path: string }).path === normalised.path;
      }),
      { numRuns: 3000 },
    );
  });
});
