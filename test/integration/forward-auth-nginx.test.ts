/**
 * Debian's nginx in front, the gateway beside it (forward-auth): nginx routes /auth/* to the
 * gateway, protects /app/ with `auth_request` against the gateway's check endpoint, copies the
 * identity headers it answers onto the upstream request, and sends 401s to the login. A real
 * login through nginx, an allowed user whose assertion the upstream verifies with jose, a denied
 * user, and no session at all. The snippet is the one docs/authorization.md documents.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startIdentityUpstream, type IdentityUpstream } from '../support/identity-upstream.ts';
import { login } from '../support/login.ts';
import { startProcessWorld, type ProcessWorld } from '../support/processes.ts';
import { freePort } from '../support/redis.ts';
import { sleep } from '../support/time.ts';
import { nginxMainConf, nginxTempDirs } from '../support/nginx.ts';

const NGINX = '/usr/sbin/nginx';
const SECRET = 'forward-auth-secret-0123456789abcdefghij';
const KEY = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

function nginxConf(dir: string, port: number, gateway: string, upstream: string): string {
  return nginxMainConf(dir, {
    workerConnections: 64,
    accessLog: false,
    http: `
  server {
    listen 127.0.0.1:${port};
    # The gateway's own endpoints: login, callback, logout, user.
    location /auth/ {
      proxy_pass ${gateway};
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
    }
    location = /_bff_check {
      internal;
      proxy_pass ${gateway}/auth/check;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Forward-Auth-Secret ${SECRET};
    }
    location /app/ {
      auth_request /_bff_check;
      auth_request_set $bff_email $upstream_http_x_user_email;
      auth_request_set $bff_assertion $upstream_http_x_identity_assertion;
      proxy_set_header X-User-Email $bff_email;
      proxy_set_header X-Identity-Assertion $bff_assertion;
      error_page 401 = @login;
      proxy_pass ${upstream};
    }
    location @login { return 302 /auth/login?returnTo=$request_uri; }
  }`,
  });
}

let world: ProcessWorld;
let upstream: IdentityUpstream;
let nginx: ChildProcess | undefined;
let front: string;
let dir: string;

beforeAll(async () => {
  if (!existsSync(NGINX)) throw new Error('nginx is not installed: apt-get install -y nginx');
  const port = await freePort();
  front = `http://127.0.0.1:${port}`;
  upstream = await startIdentityUpstream({ issuer: front });
  world = await startProcessWorld({
    instances: 1,
    idp: {
      redirectUris: [`${front}/auth/callback`],
      postLogoutRedirectUris: [`${front}/`],
      accountClaims: { bob: { groups: ['staff'] }, alice: { groups: ['admins'] } },
    },
    config: {
      publicUrl: front,
      trustProxy: true,
      forwardAuth: { secret: SECRET },
      identity: { assertion: { keys: KEY, claims: ['email'] } },
      routes: [
        {
          path: '/app',
          upstream: upstream.url,
          allow: { anyOf: [{ claim: 'groups', contains: 'admins' }] },
          claimHeaders: { 'x-user-email': 'email' },
          identityAssertion: true,
        },
      ],
    },
  });
  upstream.useJwks(`${world.gateways[0]?.adminUrl}/jwks`);
  dir = mkdtempSync(join(tmpdir(), 'bff-nginx-'));
  nginxTempDirs(dir);
  writeFileSync(join(dir, 'nginx.conf'), nginxConf(dir, port, world.gateways[0]?.url as string, upstream.url));
  const started = spawn(NGINX, ['-e', join(dir, 'stderr.log'), '-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: 'ignore' });
  nginx = started;
  for (let attempt = 0; attempt < 100; attempt++) {
    if (started.exitCode !== null) throw new Error(`nginx exited with ${started.exitCode}`);
    if (
      await fetch(`${front}/auth/user`).then(
        () => true,
        () => false,
      )
    )
      return;
    await sleep(50);
  }
  throw new Error('nginx did not start');
}, 60_000);

afterAll(async () => {
  if (nginx && nginx.exitCode === null) {
    const exited = new Promise((resolve) => nginx?.once('exit', resolve));
    nginx.kill('SIGTERM');
    await exited;
  }
  await world?.close();
  await upstream?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('nginx auth_request against the gateway', () => {
  test('without a session nginx sends the browser to the login', async () => {
    const res = await fetch(`${front}/app/page`, { redirect: 'manual' });
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe(`${front}/auth/login?returnTo=/app/page`);
    expect(upstream.requests).toHaveLength(0);
  });

  test('a user logged in through nginx reaches the app with headers and an assertion the upstream verifies', async () => {
    const { cookieHeader } = await login(front, { user: 'alice' });
    const res = await fetch(`${front}/app/page?x=1`, { headers: { cookie: cookieHeader, 'x-user-email': 'evil@spoof.test' } });
    expect(res.status).toBe(200);
    const seen = upstream.requests.at(-1);
    if (!seen) throw new Error('the upstream saw no request');
    expect(seen.url).toBe('/app/page?x=1');
    expect(upstream.linesNamed(seen, 'x-user-email')).toEqual([['X-User-Email', 'alice@example.com']]);
    expect(seen.assertion).toMatchObject({
      ok: true,
      payload: { sub: 'alice', email: 'alice@example.com', aud: new URL(upstream.url).origin, iss: front },
    });
    // No forwardAuthToken on this route: the check hands out no token for nginx to forward.
    expect(upstream.linesNamed(seen, 'authorization')).toEqual([]);
  });

  test('a user the route rules refuse gets 403 and never reaches the app', async () => {
    const before = upstream.requests.length;
    const { cookieHeader } = await login(front, { user: 'bob' });
    const res = await fetch(`${front}/app/page`, { headers: { cookie: cookieHeader } });
    expect(res.status).toBe(403);
    expect(upstream.requests.length).toBe(before);
  });

  test('the check endpoint itself: 403 without the shared secret, 401 without a session', async () => {
    const gateway = world.gateways[0]?.url as string;
    const noSecret = await fetch(`${gateway}/auth/check`, { headers: { 'x-original-uri': '/app/x' } });
    expect([noSecret.status, ((await noSecret.json()) as { error: string }).error]).toEqual([403, 'forbidden']);
    const noSession = await fetch(`${gateway}/auth/check`, { headers: { 'x-original-uri': '/app/x', 'x-forward-auth-secret': SECRET } });
    expect([noSession.status, ((await noSession.json()) as { error: string }).error]).toEqual([401, 'unauthenticated']);
  });
});
