import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { safeReturnTo } from '../../src/auth/return-to.ts';
import { buildCorpus } from '../../scripts/return-to-corpus.ts';

const ORIGIN = 'https://app.example.com';
const corpus = JSON.parse(readFileSync(new URL('../fixtures/return-to-corpus.json', import.meta.url), 'utf8')) as string[];

/** What a browser does with `Location: <value>` on a page of ORIGIN. */
function staysHome(value: string): boolean {
  if (!/^\/(?![/\\])/.test(value) || /[\u0000-\u001f\u007f\\]/.test(value)) return false;
  const url = new URL(value, `${ORIGIN}/auth/callback`);
  return url.origin === ORIGIN && url.pathname.startsWith('/') && !url.pathname.startsWith('//');
}

describe('the open-redirect corpus', () => {
  test('holds at least 300 distinct payloads and matches its generator', () => {
    expect(new Set(corpus).size).toBe(corpus.length);
    expect(corpus.length).toBeGreaterThanOrEqual(300);
    expect(corpus).toEqual(buildCorpus());
  });

  test('every payload is refused or becomes a path on the same origin', () => {
    const escaped = corpus.filter((payload) => {
      const result = safeReturnTo(payload);
      return result !== undefined && !staysHome(result);
    });
    expect(escaped).toEqual([]);
  });

  test('payloads that do not start with exactly one "/" are refused outright', () => {
    const shapes = corpus.filter((payload) => !/^\/(?![/\\])/.test(payload));
    expect(shapes.length).toBeGreaterThan(100);
    expect(shapes.filter((payload) => safeReturnTo(payload) !== undefined)).toEqual([]);
  });

  test('payloads with raw control, format or space characters are refused outright', () => {
    const controls = corpus.filter((payload) => /[\p{Cc}\p{Cf}\p{Z}]/u.test(payload));
    expect(controls.length).toBeGreaterThan(50);
    expect(controls.filter((payload) => safeReturnTo(payload) !== undefined)).toEqual([]);
  });

  test.each([
    '//evil.com',
    '/\\evil.com',
    '\\/evil.com',
    '/%09/evil.com',
    '/%5cevil.com',
    '/%2f%2fevil.com',
    '/%252f%252fevil.com',
    '/.//evil.com',
    '/%2e//evil.com',
    'https:evil.com',
    'javascript:alert(1)',
    'data:text/html,x',
    '/x%0d%0aSet-Cookie:%20a=b',
    `/${'a'.repeat(3000)}`,
  ])('%j is refused', (payload) => {
    expect(safeReturnTo(payload)).toBeUndefined();
  });
});

describe('legitimate paths pass unchanged', () => {
  test.each(['/', '/a/b?c=d#e', '/search?q=a%20b', '/app/dashboard', '/caf%C3%A9', '/x?next=%2Fy', '/a;b', '/@me', '/%E2%82%AC'])(
    '%s',
    (path) => {
      expect(safeReturnTo(path)).toBe(path);
    },
  );

  test('an absent or empty returnTo takes the fallback', () => {
    expect(safeReturnTo(undefined)).toBe('/');
    expect(safeReturnTo('')).toBe('/');
    expect(safeReturnTo(undefined, '/home')).toBe('/home');
  });

  test('dot segments are resolved the way the browser will resolve them', () => {
    expect(safeReturnTo('/a/../b')).toBe('/b');
    expect(safeReturnTo('/a/./b')).toBe('/a/b');
  });
});

test('property: any string is refused or stays on the origin', () => {
  const alphabet = fc.constantFrom(
    '/',
    '\\',
    '.',
    '%',
    '2',
    'f',
    'F',
    '5',
    'c',
    'e',
    '0',
    '9',
    ':',
    '@',
    '?',
    '#',
    'a',
    ' ',
    '\t',
    '\n',
    '\u3002',
    '\uFF0F',
    '\u2215',
  );
  fc.assert(
    fc.property(fc.string({ unit: alphabet, maxLength: 24 }), (payload) => {
      const result = safeReturnTo(payload);
      return result === undefined || (payload === '' ? result === '/' : staysHome(result));
    }),
    { numRuns: 3000 },
  );
});
