/**
 * The session cookie (docs/http-interface.md#cookies): its attributes on 127.0.0.1 and on localhost, what it
 * may hold, that hostile cookie values are plain 401s, and that a Redis dump gives nothing away.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorldBehindFront, type HostileIdp } from '../support/hostile-idp.ts';
import { login, parseSetCookie } from '../support/login.ts';
import { apiHeaders, startWorld, type World } from '../support/world.ts';

let plain: World;
let lax: World;
let local: World;
let redisWorld: World;
let front: HostileIdp;

beforeAll(async () => {
  [plain, lax, local] = await Promise.all([
    startWorld(),
    startWorld({ config: { session: { sameSite: 'lax' } } }),
    startWorld({ host: 'localhost' }),
  ]);
  ({ world: redisWorld, front } = await startWorldBehindFront({
    store: 'redis',
  }));
});
afterAll(async () => {
  await Promise.all([plain, lax, local, redisWorld].map((world) => world?.close()));
});

function attributes(setCookie: string): string[] {
  return setCookie
    .split(';')
    .slice(1)
    .map((part) => part.trim().toLowerCase());
}

describe('session cookie attributes', () => {
  it('on 127.0.0.1: bff-session, HttpOnly, Path=/, SameSite=Strict, no Domain, no Secure, small', async () => {
    const session = await login(plain.url);
    const cookie = parseSetCookie(session.setCookie);
    expect(cookie?.name).toBe('bff-session');
    const attrs = attributes(session.setCookie);
    expect(attrs).toContain('httponly');
    expect(attrs).toContain('path=/');
    expect(attrs).toContain('samesite=strict');
    expect(attrs).not.toContain('secure');
    expect(attrs.some((a) => a.startsWith('domain'))).toBe(false);
    expect(Buffer.byteLength(session.cookie)).toBeLessThan(200);
    // Opaque: nothing about the user is in it.
    expect(session.cookie).not.toMatch(/alice|example\.com|eyJ/i);
  });

  it('SameSite=Lax when configured', async () => {
    const session = await login(lax.url);
    expect(attributes(session.setCookie)).toContain('samesite=lax');
    expect(attributes(session.setCookie)).not.toContain('samesite=strict');
  });

  it('on localhost: Secure and the __Host-Http- prefixed name', async () => {
    expect(local.url).toMatch(/^http:\/\/localhost:/);
    const session = await login(local.url);
    const cookie = parseSetCookie(session.setCookie);
    expect(cookie?.name).toBe('__Host-Http-bff-session');
    const attrs = attributes(session.setCookie);
    expect(attrs).toContain('secure');
    expect(attrs).toContain('path=/');
    expect(attrs).toContain('httponly');
    expect(attrs.some((a) => a.startsWith('domain'))).toBe(false);
    expect(Buffer.byteLength(session.cookie)).toBeLessThan(200);
    const user = await fetch(`${local.url}/auth/user`, { headers: apiHeaders(session.cookieHeader) });
    expect(user.status).toBe(200);
    await user.body?.cancel();
  });
});

describe('hostile cookie values', () => {
  let valid: string;
  beforeAll(async () => {
    valid = (await login(plain.url)).cookie.split('=').slice(1).join('=');
  });

  const flip = (text: string, index: number) => `${text.slice(0, index)}${text[index] === 'A' ? 'B' : 'A'}${text.slice(index + 1)}`;

  const cases: Array<[string, () => string]> = [
    ['a tampered id', () => `bff-session=${flip(valid, 3)}`],
    ['a tampered signature', () => `bff-session=${flip(valid, valid.length - 3)}`],
    ['the id without its signature', () => `bff-session=${valid.split('.')[0]}`],
    ['a signature without the id', () => `bff-session=.${valid.split('.')[1]}`],
    ['garbage', () => 'bff-session=%%%zz\u00ff\u00fe;;==;'],
    ['an empty value', () => 'bff-session='],
    ['a quoted value', () => `bff-session="${flip(valid, 5)}"`],
    ['an oversized value', () => `bff-session=${'A'.repeat(8000)}.${'B'.repeat(43)}`],
    ['many cookies', () => Array.from({ length: 200 }, (_, i) => `c${i}=${'x'.repeat(20)}`).join('; ')],
    ['no name', () => `=${valid}`],
  ];

  it.each(cases)('%s: 401 unauthenticated on /auth/user and on a user route, never 500', async (_label, cookie) => {
    for (const path of ['/auth/user', '/api/echo']) {
      const res = await fetch(`${plain.url}${path}`, { headers: apiHeaders(cookie()) });
      expect(res.status).toBe(401);
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
      expect(((await res.json()) as { error: string }).error).toBe('unauthenticated');
    }
  });

  it('control: the untampered value is accepted', async () => {
    const res = await fetch(`${plain.url}/auth/user`, { headers: apiHeaders(`bff-session=${valid}`) });
    expect(res.status).toBe(200);
    await res.body?.cancel();
  });
});

describe('Redis contents', () => {
  function redisCli(...args: string[]): string {
    return execFileSync('redis-cli', ['-h', '127.0.0.1', '-p', String(redisWorld.redis?.port), '--no-raw', ...args], { encoding: 'utf8' });
  }

  function dump(): string {
    const keys = execFileSync('redis-cli', ['-h', '127.0.0.1', '-p', String(redisWorld.redis?.port), '--scan'], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean);
    const parts: string[] = [];
    for (const key of keys) {
      const type = redisCli('TYPE', key).trim();
      const value =
        type === 'string'
          ? redisCli('GET', key)
          : type === 'set'
            ? redisCli('SMEMBERS', key)
            : type === 'hash'
              ? redisCli('HGETALL', key)
              : redisCli('DUMP', key);
      parts.push(`${key}\n${type}\n${value}`);
    }
    return parts.join('\n');
  }

  it('holds no token, no claim value and no session id', async () => {
    const session = await login(redisWorld.url, { user: 'carol' });
    const api = await fetch(`${redisWorld.url}/api/echo`, { headers: apiHeaders(session.cookieHeader) });
    expect(api.status).toBe(200);
    await api.body?.cancel();
    const tokens = front.tokenResponses.at(-1) as { access_token: string; refresh_token: string; id_token: string };
    expect(tokens.refresh_token).toBeTruthy();
    const claims = decodeJwt(tokens.id_token);
    const sessionId = session.cookie.split('=')[1]?.split('.')[0] as string;

    const contents = dump();
    // The dump is not empty: the session really is in this Redis.
    expect(contents).toMatch(/s:\{/);
    const secrets = [
      tokens.access_token,
      tokens.refresh_token,
      tokens.id_token,
      ...[tokens.access_token, tokens.id_token].map((jwt) => jwt.split('.')[2] as string),
      'carol@example.com',
      'Carol',
      ...(typeof claims.sid === 'string' ? [claims.sid] : []),
      sessionId,
      session.cookie.split('=')[1] as string,
    ];
    for (const secret of secrets) expect(contents).not.toContain(secret);
    // The store key is derived from the id, never the id itself.
    expect(contents).toContain(createHash('sha256').update(sessionId).digest('base64url'));
  });
});
