import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { Signer } from '@fastify/cookie';
import { afterEach, describe, expect, test, vi } from 'vitest';
import { buildConfig } from '../../src/config/load.ts';
import { parseCookieHeader, SessionCookie, withoutCookies } from '../../src/session/cookie.ts';

const OLD_SECRET = 'old-secret-0123456789-abcdefghijklmnop';
const NEW_SECRET = 'new-secret-9876543210-ponmlkjihgfedcba';

function sessionConfig(publicUrl: string, session: Record<string, unknown> = {}) {
  return buildConfig({
    publicUrl,
    oidc: { issuer: 'https://idp.example.com', clientId: 'spa', clientSecret: 'x' },
    session: { store: 'memory', secret: NEW_SECRET, encryptionKey: randomBytes(32).toString('base64'), ...session },
  }).session;
}

const newId = () => randomBytes(32).toString('base64url');
const cookieValue = (setCookie: string) => setCookie.split(';')[0] as string;

describe('signing', () => {
  const cookie = new SessionCookie(sessionConfig('https://app.example.com'));

  test('a signed id reads back as the same id, no renewal needed', () => {
    const id = newId();
    const header = cookieValue(cookie.sessionSetCookie(id, 3600));
    expect(header.startsWith(`${cookie.name}=${id}.`)).toBe(true);
    expect(cookie.read(`other=1; ${header}; x=y`)).toEqual({ id, renew: false });
  });

  test('a tampered signature, a changed id or an unsigned id is refused', () => {
    const id = newId();
    const header = cookieValue(cookie.sessionSetCookie(id, 3600));
    const other = newId();
    expect(cookie.read(header.replace(id, other))).toBeUndefined();
    // The signature's last two characters changed (to something they were not).
    expect(cookie.read(`${header.slice(0, -2)}${header.endsWith('AA') ? 'BB' : 'AA'}`)).toBeUndefined();
    expect(cookie.read(`${cookie.name}=${id}`)).toBeUndefined();
    expect(cookie.read(`${cookie.name}=${id}.`)).toBeUndefined();
  });

  test('only a well-formed session id is accepted, even when correctly signed', () => {
    const signedShort = cookieValue(cookie.sessionSetCookie('short', 60));
    expect(cookie.read(signedShort)).toBeUndefined();
  });

  test('a forged cookie of the same name placed first does not hide the real one', () => {
    const id = newId();
    const real = cookieValue(cookie.sessionSetCookie(id, 60));
    expect(cookie.read(`${cookie.name}=forged.sig; ${real}`)).toEqual({ id, renew: false });
  });

  test('secret rotation: a cookie signed with an older secret is accepted and flagged for renewal', () => {
    const id = newId();
    const old = cookieValue(new SessionCookie(sessionConfig('https://app.example.com', { secret: OLD_SECRET })).sessionSetCookie(id, 60));
    const rotated = new SessionCookie(sessionConfig('https://app.example.com', { secret: [NEW_SECRET, OLD_SECRET] }));
    expect(rotated.read(old)).toEqual({ id, renew: true });
    expect(rotated.read(cookieValue(rotated.sessionSetCookie(id, 60)))).toEqual({ id, renew: false });
    expect(cookie.read(old)).toBeUndefined();
  });
});

describe('verified values are remembered', () => {
  const unsign = () => vi.spyOn(Signer.prototype, 'unsign');
  afterEach(() => vi.restoreAllMocks());

  test('a value that verified once is not verified again: the same answer, no HMAC', () => {
    const cookie = new SessionCookie(sessionConfig('https://app.example.com'));
    const id = newId();
    const header = cookieValue(cookie.sessionSetCookie(id, 3600));
    const spy = unsign();
    const first = cookie.read(header);
    expect(first).toEqual({ id, renew: false });
    for (let i = 0; i < 5; i++) expect(cookie.read(`a=b; ${header}`)).toBe(first);
    expect(spy).toHaveBeenCalledTimes(1);
  });

  test('a retired-secret cookie keeps its renewal flag when remembered', () => {
    const id = newId();
    const old = cookieValue(new SessionCookie(sessionConfig('https://app.example.com', { secret: OLD_SECRET })).sessionSetCookie(id, 60));
    const rotated = new SessionCookie(sessionConfig('https://app.example.com', { secret: [NEW_SECRET, OLD_SECRET] }));
    expect(rotated.read(old)).toEqual({ id, renew: true });
    expect(rotated.read(old)).toEqual({ id, renew: true });
  });

  test('a value that failed is checked again every time (forgeries are not remembered)', () => {
    const cookie = new SessionCookie(sessionConfig('https://app.example.com'));
    const id = newId();
    const forged = `${cookie.name}=${id}.${'A'.repeat(43)}`;
    const spy = unsign();
    for (let i = 0; i < 3; i++) expect(cookie.read(forged)).toBeUndefined();
    expect(spy).toHaveBeenCalledTimes(3);
  });

  test('bounded: past 10,000 remembered values the oldest is verified again', () => {
    const cookie = new SessionCookie(sessionConfig('https://app.example.com'));
    const headers = Array.from({ length: 10_001 }, () => cookieValue(cookie.sessionSetCookie(newId(), 60)));
    for (const header of headers) cookie.read(header);
    const spy = unsign();
    cookie.read(headers[10_000] as string);
    cookie.read(headers[1] as string);
    expect(spy).toHaveBeenCalledTimes(0);
    cookie.read(headers[0] as string);
    expect(spy).toHaveBeenCalledTimes(1);
  });
});

describe('Set-Cookie', () => {
  test('name=value stays under 200 bytes', () => {
    const cookie = new SessionCookie(sessionConfig('https://app.example.com'));
    for (let i = 0; i < 50; i += 1) expect(Buffer.byteLength(cookieValue(cookie.sessionSetCookie(newId(), 7200)))).toBeLessThan(200);
  });

  test('https: __Host- name, HttpOnly, Path=/, SameSite, Secure, no Domain', () => {
    const cookie = new SessionCookie(sessionConfig('https://app.example.com'));
    const line = cookie.sessionSetCookie(newId(), 7200);
    const attributes = line
      .split(';')
      .slice(1)
      .map((a) => a.trim());
    expect(line.startsWith('__Host-Http-bff-session=')).toBe(true);
    expect(attributes).toEqual(expect.arrayContaining(['HttpOnly', 'Path=/', 'SameSite=Strict', 'Secure', 'Max-Age=7200']));
    expect(line).not.toMatch(/domain=/i);
  });

  test('SameSite follows the configuration', () => {
    const cookie = new SessionCookie(sessionConfig('https://app.example.com', { sameSite: 'lax' }));
    expect(cookie.sessionSetCookie(newId(), 1)).toMatch(/; SameSite=Lax$/);
  });

  test('http on 127.0.0.1: plain name, no Secure; http://localhost is still Secure', () => {
    const plain = new SessionCookie(sessionConfig('http://127.0.0.1:8080'));
    const line = plain.sessionSetCookie(newId(), 60);
    expect(line.startsWith('bff-session=')).toBe(true);
    expect(line).not.toMatch(/secure/i);
    expect(line).toMatch(/HttpOnly/);
    const local = new SessionCookie(sessionConfig('http://localhost:8080'));
    expect(local.sessionSetCookie(newId(), 60)).toMatch(/^__Host-Http-bff-session=.*; Secure/);
  });

  test('clearing expires the cookie with the same attributes', () => {
    const cookie = new SessionCookie(sessionConfig('https://app.example.com'));
    const line = cookie.sessionClearCookie();
    expect(line).toMatch(
      /^__Host-Http-bff-session=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=\/; HttpOnly; Secure; SameSite=Strict$/,
    );
  });

  test('the login cookie is always SameSite=Lax, even when the session cookie is Strict', () => {
    const cookie = new SessionCookie(sessionConfig('https://app.example.com'));
    expect(cookie.loginSetCookie('sealed', 600)).toMatch(/^__Host-bff-login=sealed; Max-Age=600; Path=\/; HttpOnly; Secure; SameSite=Lax$/);
    expect(cookie.loginClearCookie()).toMatch(/^__Host-bff-login=; Max-Age=0;.*SameSite=Lax$/);
    expect(cookie.readRaw('a=b; __Host-bff-login=sealed', cookie.loginName)).toBe('sealed');
  });
});

describe('hostile Cookie headers never throw', () => {
  const cookie = new SessionCookie(sessionConfig('https://app.example.com'));
  const names = new Set([cookie.name, cookie.loginName]);
  const corpus: Array<string | string[]> = [
    'x'.repeat(1_000_000),
    `${cookie.name}=${'a'.repeat(100_000)}`,
    Array.from({ length: 5000 }, (_, i) => `c${i}=${i}`).join('; '),
    Array.from({ length: 5000 }, () => `${cookie.name}=forged`).join('; '),
    '"unbalanced=quote; b="',
    `${cookie.name}="`,
    `${cookie.name}=""`,
    '=;=;=;;;;',
    ';',
    '=value-without-name',
    'name-without-value',
    randomBytes(4096).toString('latin1'),
    '\u0000\u0001\uffff\ud800',
    `${cookie.name}=${'.'.repeat(500)}`,
    ['a=1', `${cookie.name}=x`, ''],
    [],
    '',
  ];

  test.each(corpus.map((header, i) => [i, header] as const))('corpus entry %i', (_i, header) => {
    expect(() => parseCookieHeader(header)).not.toThrow();
    expect(() => withoutCookies(header, names)).not.toThrow();
    expect(cookie.read(header)).toBeUndefined();
  });

  test('property: any string yields a list, reading never throws and never authenticates', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ maxLength: 300 }), fc.string({ unit: 'binary', maxLength: 300 }), fc.array(fc.string(), { maxLength: 5 })),
        (header) => {
          const pairs = parseCookieHeader(header);
          withoutCookies(header, names);
          return Array.isArray(pairs) && cookie.read(header) === undefined;
        },
      ),
      { numRuns: 2000 },
    );
  });

  test('a quoted value is unquoted; oversized values are ignored', () => {
    expect(parseCookieHeader('a="b c"; d=e')).toEqual([
      { name: 'a', value: 'b c' },
      { name: 'd', value: 'e' },
    ]);
    expect(parseCookieHeader(`big=${'x'.repeat(5000)}; small=1`)).toEqual([{ name: 'small', value: '1' }]);
  });
});
