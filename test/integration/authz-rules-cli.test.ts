/**
 * Route rules, claim headers and identity assertions through the real CLI process: users with
 * different claims (the embedded IdP's accountClaims), an upstream that records every header
 * line as it arrived and verifies the assertion with jose against the admin listener's JWKS.
 */
import { generateKeyPairSync } from 'node:crypto';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startIdentityUpstream, type IdentityUpstream } from '../support/identity-upstream.ts';
import { login } from '../support/login.ts';
import { startProcessWorld, type ProcessWorld } from '../support/processes.ts';
import { converse } from '../support/raw-exchange.ts';

const KEY = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const API_AUDIENCE = 'urn:test:api';

const ACCOUNTS = {
  alice: { groups: ['admins', 'staff'], name: 'Zoë\r\nX-Admin: yes' },
  bob: { groups: ['staff'], email: 'bob@other.test' },
  carol: {},
  dave: { roles: 'auditor', email: 'dave@example.com', email_verified: false },
};

let world: ProcessWorld;
let upstream: IdentityUpstream;
let gateway: string;
const cookies: Record<string, string> = {};

async function call(user: keyof typeof cookies | undefined, path: string): Promise<{ status: number; body: { error?: string } }> {
  const headers: Record<string, string> = { 'x-csrf': '1' };
  if (user) headers.cookie = cookies[user] as string;
  const res = await fetch(`${gateway}${path}`, { headers });
  return { status: res.status, body: (await res.json()) as { error?: string } };
}

const upstreamHits = (marker: string) => upstream.requests.filter((r) => r.url.includes(marker)).length;

beforeAll(async () => {
  upstream = await startIdentityUpstream({ audience: API_AUDIENCE });
  world = await startProcessWorld({
    instances: 1,
    idp: { accountClaims: ACCOUNTS },
    config: {
      identity: { assertion: { keys: [KEY], claims: ['email'] } },
      routes: [
        { path: '/admin', upstream: upstream.url, allow: { anyOf: [{ claim: 'groups', contains: 'admins' }] } },
        { path: '/corp', upstream: upstream.url, allow: { allOf: [{ emailDomain: 'example.com' }] } },
        {
          path: '/audit',
          upstream: upstream.url,
          allow: {
            anyOf: [
              { claim: 'roles', contains: 'auditor' },
              { claim: 'groups', contains: 'admins' },
            ],
          },
        },
        { path: '/reports', upstream: upstream.url, token: 'client', allow: { anyOf: [{ claim: 'groups', contains: ['staff'] }] } },
        {
          path: '/api',
          upstream: upstream.url,
          claimHeaders: { 'X-User-Sub': 'sub', 'x-user-email': 'email', 'x-user-groups': 'groups', 'x-user-name': 'name' },
          identityAssertion: { audience: API_AUDIENCE, claims: ['email', 'groups'] },
        },
        { path: '/', upstream: upstream.url, token: 'none' },
      ],
    },
  });
  gateway = world.gateways[0]?.url as string;
  upstream.useJwks(`${world.gateways[0]?.adminUrl}/jwks`);
  for (const user of Object.keys(ACCOUNTS)) cookies[user] = (await login(gateway, { user })).cookieHeader;
}, 60_000);

afterAll(async () => {
  await world?.close();
  await upstream?.close();
});

describe('route rules through the CLI', () => {
  test('allowed and denied by group membership; the upstream never sees a denied user', async () => {
    expect((await call('alice', '/admin/x')).status).toBe(200);
    const before = upstreamHits('/admin');
    const denied = await call('bob', '/admin/x');
    expect(denied).toEqual({ status: 403, body: { error: 'forbidden', message: 'You are not allowed to use this route.' } });
    expect((await call('carol', '/admin/x')).status).toBe(403);
    expect(upstreamHits('/admin')).toBe(before);
    expect((await call(undefined, '/admin/x')).status).toBe(401);
  });

  test('email domain: exact domain only, unverified addresses refused, missing claim refused', async () => {
    expect((await call('alice', '/corp')).status).toBe(200);
    expect((await call('carol', '/corp')).status).toBe(200);
    expect((await call('bob', '/corp')).body.error).toBe('forbidden');
    expect((await call('dave', '/corp')).body.error).toBe('forbidden');
  });

  test('anyOf over a string claim and an array claim', async () => {
    expect((await call('dave', '/audit')).status).toBe(200);
    expect((await call('alice', '/audit')).status).toBe(200);
    expect((await call('bob', '/audit')).status).toBe(403);
  });

  test('token: client routes judge the user when there is a session, and refuse without one', async () => {
    expect((await call('bob', '/reports/q')).status).toBe(200);
    expect((await call('carol', '/reports/q')).body.error).toBe('forbidden');
    expect((await call(undefined, '/reports/q')).body.error).toBe('unauthenticated');
  });
});

describe('identity for upstreams through the CLI', () => {
  const SPOOFS = [
    'X-User-Email: evil-1@spoof.test',
    'x-user-email: evil-2@spoof.test',
    'X_User_Email: evil-3@spoof.test',
    'x_user-email: evil-4@spoof.test',
    'X-USER-SUB: evil-root',
    'X-User-Groups: evil-admins',
    'x_identity_assertion: evil.forged.jwt',
    'X-Identity-Assertion: evil.forged.jwt',
  ];
  const port = () => Number(new URL(gateway).port);
  const spoofed = (path: string, user: string | undefined, extra: string[] = SPOOFS) =>
    [
      `GET ${path} HTTP/1.1`,
      `Host: 127.0.0.1:${port()}`,
      'x-csrf: 1',
      ...(user ? [`Cookie: ${cookies[user]}`] : []),
      ...extra,
      'Connection: close',
      '',
      '',
    ].join('\r\n');
  const lastAt = (marker: string) => upstream.requests.filter((r) => r.url.startsWith(marker)).at(-1);
  const anyEvil = (rawHeaders: string[]) => rawHeaders.some((value) => /evil/i.test(value));

  test('claim headers carry the real claims, safely encoded, and the assertion verifies against the JWKS', async () => {
    const before = upstream.requests.length;
    const { answers } = await converse(port(), spoofed('/api/me', 'alice'), { expected: 1 });
    expect(answers[0]?.status).toBe(200);
    expect(upstream.requests.length).toBe(before + 1);
    const seen = lastAt('/api/me');
    if (!seen) throw new Error('the upstream saw no request');
    expect(anyEvil(seen.rawHeaders)).toBe(false);
    expect(upstream.linesNamed(seen, 'x-user-email')).toEqual([['x-user-email', 'alice@example.com']]);
    expect(upstream.linesNamed(seen, 'x-user-sub')).toEqual([['x-user-sub', 'alice']]);
    expect(upstream.linesNamed(seen, 'x-user-groups')).toEqual([['x-user-groups', 'admins,staff']]);
    // CR/LF and non-ASCII in a claim: percent-encoded, never a second header line.
    expect(upstream.linesNamed(seen, 'x-user-name')).toEqual([['x-user-name', 'Zo%C3%AB%0D%0AX-Admin:%20yes']]);
    expect(upstream.linesNamed(seen, 'x-admin')).toEqual([]);
    expect(upstream.linesNamed(seen, 'x-identity-assertion')).toHaveLength(1);
    expect(seen.assertion).toMatchObject({
      ok: true,
      payload: { sub: 'alice', aud: API_AUDIENCE, iss: world.publicUrl, email: 'alice@example.com', groups: ['admins', 'staff'] },
    });
  });

  test('client-sent identity headers never reach the upstream on routes without claim headers, with or without a session', async () => {
    for (const [path, user] of [
      ['/public/page', undefined],
      ['/public/page', 'bob'],
      ['/admin/page', 'alice'],
      ['/reports/page', 'bob'],
    ] as const) {
      const { answers } = await converse(port(), spoofed(path, user), { expected: 1 });
      expect(answers[0]?.status).toBe(200);
      const seen = lastAt(path);
      if (!seen) throw new Error(`the upstream saw no request for ${path}`);
      expect(anyEvil(seen.rawHeaders)).toBe(false);
      for (const name of ['x-user-email', 'x-user-sub', 'x-user-groups', 'x-identity-assertion'])
        expect(upstream.linesNamed(seen, name)).toEqual([]);
    }
  });

  test('a folded (obs-fold) identity header is refused, never forwarded', async () => {
    const before = upstream.requests.length;
    const { answers } = await converse(port(), spoofed('/public/fold', 'alice', ['X-User-Email: a@b.test', ' evil-fold@spoof.test']), {
      expected: 1,
    });
    // Node's parser refuses obs-fold outright; the gateway answers its JSON 400.
    expect(answers[0]?.status).toBe(400);
    for (const seen of upstream.requests.slice(before)) {
      expect(anyEvil(seen.rawHeaders)).toBe(false);
      expect(upstream.linesNamed(seen, 'x-user-email')).toEqual([]);
    }
  });

  test('the JWKS is published on the admin listener, public keys only', async () => {
    for (const path of ['/jwks', '/.well-known/jwks.json']) {
      const res = await fetch(`${world.gateways[0]?.adminUrl}${path}`);
      const body = (await res.json()) as { keys: Array<Record<string, unknown>> };
      expect(res.status).toBe(200);
      expect(body.keys).toHaveLength(1);
      expect(body.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
      expect(body.keys[0]).not.toHaveProperty('d');
    }
  });
});

describe('WebSocket handshakes to a route with rules', () => {
  test('a client that resets the connection while its session is read cannot take the gateway down', async () => {
    const { hostname, host, port } = new URL(gateway);
    const cookie = cookies.alice as string;
    for (let i = 0; i < 30; i += 1) {
      const socket = connect({ host: hostname, port: Number(port) });
      socket.on('error', () => {});
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      socket.write(
        `GET /admin/ws HTTP/1.1\r\nhost: ${host}\r\nupgrade: websocket\r\nconnection: Upgrade\r\norigin: ${gateway}\r\n` +
          `sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\ncookie: ${cookie}\r\n\r\n`,
      );
      socket.resetAndDestroy();
    }
    // Still alive, and still serving.
    expect(world.gateways[0]?.child.exitCode).toBeNull();
    expect((await fetch(`${gateway}/alive`)).status).toBe(200);
    expect(world.gateways[0]?.child.exitCode).toBeNull();
  });
});
