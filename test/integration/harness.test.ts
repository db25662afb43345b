import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startIdp, type Idp } from '../../fixtures/idp/idp.ts';
import { CookieJar, fetchWithJar, login, loginUpToCallback, submitIdpLogout } from '../support/login.ts';
import { Cluster, Redis } from 'ioredis';
import { redisCommand, startRedis, startRedisCluster, startSentinel } from '../support/redis.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

const CLIENT_ID = 'bff';
const CLIENT_SECRET = 'harness-secret-harness-secret';
const AUDIENCE = 'http://api.local';

// Follows the IdP's redirects with the interaction fast path until it redirects to `redirectUri`.
async function authorize(authUrl: URL, redirectUri: string, user = 'alice'): Promise<URL> {
  const jar = new CookieJar();
  let url = authUrl;
  for (let hop = 0; hop < 10; hop++) {
    const res = await fetchWithJar(url, jar);
    await res.body?.cancel();
    const location = res.headers.get('location');
    if (!location) throw new Error(`authorization stopped at ${url.href} with ${res.status}`);
    const next = new URL(location, url);
    if (next.href.startsWith(redirectUri)) return next;
    if (next.pathname.startsWith('/interaction/')) {
      next.searchParams.set('login', user);
      next.searchParams.set('password', 'demo');
    }
    url = next;
  }
  throw new Error('too many redirects');
}

describe('redis harness', () => {
  it('spawns its own redis-server that answers PING', async () => {
    const redis = await startRedis();
    try {
      expect(redis.port).not.toBe(6379);
      expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}/0`);
      expect(await redisCommand(redis.port, 'PING')).toBe('+PONG');
    } finally {
      await redis.stop();
    }
    await expect(redisCommand(redis.port, 'PING')).rejects.toThrow();
  });

  it('starts a three-master cluster and a sentinel-watched primary', async () => {
    const cluster = await startRedisCluster();
    const sentinel = await startSentinel();
    const viaCluster = new Cluster(cluster.seeds.map((seed) => ({ host: '127.0.0.1', port: Number(new URL(seed).port) })));
    const viaSentinel = new Redis({ sentinels: sentinel.sentinels, name: sentinel.name });
    try {
      for (const key of ['a', 'b', 'c']) await viaCluster.set(key, key);
      expect(await viaCluster.get('c')).toBe('c');
      await viaSentinel.set('k', 'v');
      expect(await redisCommand(sentinel.primary.port, 'GET k')).toBe('v');
    } finally {
      viaCluster.disconnect();
      viaSentinel.disconnect();
      await Promise.all([cluster.stop(), sentinel.stop()]);
    }
  });
});

describe('embedded IdP', () => {
  let idp: Idp;
  let config: oidc.Configuration;
  let backchannel: Server;
  const logoutTokens: string[] = [];
  const redirectUri = 'http://127.0.0.1:1/callback';

  beforeAll(async () => {
    backchannel = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        logoutTokens.push(new URLSearchParams(body).get('logout_token') ?? '');
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((resolve) => backchannel.listen(0, '127.0.0.1', resolve));
    const { port } = backchannel.address() as AddressInfo;
    idp = await startIdp({
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      redirectUris: [redirectUri],
      postLogoutRedirectUris: ['http://127.0.0.1:1/bye'],
      backchannelLogoutUri: `http://127.0.0.1:${port}/backchannel-logout`,
    });
    config = await oidc.discovery(new URL(idp.issuer), CLIENT_ID, CLIENT_SECRET, undefined, {
      execute: [oidc.allowInsecureRequests],
    });
  });

  afterAll(async () => {
    await idp?.close();
    backchannel?.closeAllConnections();
    await new Promise((resolve) => backchannel?.close(resolve));
  });

  async function codeFlow(user = 'alice') {
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const authUrl = oidc.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      scope: 'openid profile email api',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
    });
    const callback = await authorize(authUrl, redirectUri, user);
    expect(callback.searchParams.get('iss')).toBe(idp.issuer);
    return oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state });
  }

  it('advertises iss response parameter, revocation, end session and back-channel logout', () => {
    const metadata = config.serverMetadata();
    expect(metadata.authorization_response_iss_parameter_supported).toBe(true);
    expect(metadata.revocation_endpoint).toBe(`${idp.issuer}/token/revocation`);
    expect(metadata.end_session_endpoint).toBe(`${idp.issuer}/session/end`);
    expect(metadata.backchannel_logout_supported).toBe(true);
    expect(idp.counters.discovery).toBeGreaterThanOrEqual(1);
  });

  it('runs code + PKCE: JWT access token, ID token with sid, refresh token', async () => {
    const before = idp.counters.authorizationCodeGrants;
    const tokens = await codeFlow('bob');
    const jwks = createRemoteJWKSet(new URL(`${idp.issuer}/jwks`));
    const { payload } = await jwtVerify(tokens.access_token, jwks, { issuer: idp.issuer, audience: AUDIENCE });
    expect(payload.sub).toBe('bob');
    expect(payload.scope).toBe('api');
    const idToken = decodeJwt(tokens.id_token ?? '');
    expect(idToken.sid).toEqual(expect.any(String));
    expect(idToken.email).toBe('bob@example.com');
    expect(tokens.refresh_token).toEqual(expect.any(String));
    expect(idp.counters.authorizationCodeGrants).toBe(before + 1);
    expect(idp.tokenRequests.at(-1)?.params.code_verifier).toEqual(expect.any(String));
  });

  it('rotates refresh tokens and revokes the grant when a rotated one is reused', async () => {
    const tokens = await codeFlow();
    const old = tokens.refresh_token ?? '';
    const rotated = await oidc.refreshTokenGrant(config, old);
    expect(rotated.refresh_token).toEqual(expect.any(String));
    expect(rotated.refresh_token).not.toBe(old);

    await expect(oidc.refreshTokenGrant(config, old)).rejects.toMatchObject({ error: 'invalid_grant' });
    await expect(oidc.refreshTokenGrant(config, rotated.refresh_token ?? '')).rejects.toMatchObject({
      error: 'invalid_grant',
    });
    expect(idp.tokenRequests.filter((r) => r.grantType === 'refresh_token').length).toBe(idp.counters.refreshGrants);
  });

  it('injects token endpoint faults', async () => {
    const tokenEndpoint = config.serverMetadata().token_endpoint ?? '';
    const form = { method: 'POST', body: new URLSearchParams({ grant_type: 'client_credentials' }) };
    try {
      idp.faults.token = 'http503';
      expect((await fetch(tokenEndpoint, form)).status).toBe(503);
      idp.faults.token = 'bare400';
      const bare = await fetch(tokenEndpoint, form);
      expect([bare.status, await bare.text()]).toEqual([400, '']);
      idp.faults.token = 'reset';
      await expect(fetch(tokenEndpoint, form)).rejects.toThrow();
    } finally {
      idp.faults.token = 'none';
    }
    const cc = await oidc.clientCredentialsGrant(config, { scope: 'api' });
    expect(decodeJwt(cc.access_token).aud).toBe(AUDIENCE);
  });

  it('sends a back-channel logout token carrying the session sid', async () => {
    const verifier = oidc.randomPKCECodeVerifier();
    const jar = new CookieJar();
    let url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      scope: 'openid',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
    });
    while (!url.href.startsWith(redirectUri)) {
      const res = await fetchWithJar(url, jar);
      await res.body?.cancel();
      url = new URL(res.headers.get('location') ?? '', url);
      if (url.pathname.startsWith('/interaction/')) url.search = '?login=carol&password=demo';
    }
    const tokens = await oidc.authorizationCodeGrant(config, url, { pkceCodeVerifier: verifier });
    const sent = idp.logoutTokensSent;
    const end = oidc.buildEndSessionUrl(config, { id_token_hint: tokens.id_token ?? '' });
    const result = await submitIdpLogout(end.href, jar);
    // Without post_logout_redirect_uri the IdP redirects to its own success page.
    expect(result).toEqual({ status: 303, location: `${idp.issuer}/session/end/success` });
    expect(idp.logoutTokensSent).toBe(sent + 1);
    const logoutToken = decodeJwt(logoutTokens.at(-1) ?? '');
    expect(logoutToken.sid).toBe(decodeJwt(tokens.id_token ?? '').sid);
    expect(logoutToken.events).toHaveProperty(['http://schemas.openid.net/event/backchannel-logout']);
  });
});

describe('upstream and login helpers against a minimal gateway', () => {
  let idp: Idp;
  let upstream: Upstream;
  let gateway: Server;
  let gatewayUrl: string;
  const sessions = new Map<string, string>();

  beforeAll(async () => {
    gateway = createServer();
    await new Promise<void>((resolve) => gateway.listen(0, '127.0.0.1', resolve));
    gatewayUrl = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`;
    idp = await startIdp({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, redirectUris: [`${gatewayUrl}/auth/callback`] });
    upstream = await startUpstream({ issuer: idp.issuer, jwksUri: `${idp.issuer}/jwks`, audience: AUDIENCE });
    const config = await oidc.discovery(new URL(idp.issuer), CLIENT_ID, CLIENT_SECRET, undefined, {
      execute: [oidc.allowInsecureRequests],
    });
    // Just enough of a BFF to exercise login(): a login cookie carrying the PKCE verifier, and
    // a session cookie (while the login cookie is cleared) once the code is exchanged.
    gateway.on('request', (req, res) => {
      const url = new URL(req.url ?? '/', gatewayUrl);
      void (async () => {
        if (url.pathname === '/auth/login') {
          const verifier = oidc.randomPKCECodeVerifier();
          const location = oidc.buildAuthorizationUrl(config, {
            redirect_uri: `${gatewayUrl}/auth/callback`,
            scope: 'openid api',
            code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
            code_challenge_method: 'S256',
          });
          res.writeHead(302, { location: location.href, 'set-cookie': `bff-login=${verifier}; Path=/auth; HttpOnly` }).end();
          return;
        }
        const verifier = /bff-login=([^;]+)/.exec(req.headers.cookie ?? '')?.[1] ?? '';
        const tokens = await oidc.authorizationCodeGrant(config, url, { pkceCodeVerifier: verifier });
        sessions.set('s1', tokens.access_token);
        res
          .writeHead(302, {
            location: '/app',
            'set-cookie': ['bff-login=; Path=/auth; Max-Age=0', 'bff-session=s1; Path=/; HttpOnly; SameSite=Lax'],
          })
          .end();
      })().catch((err: unknown) => res.writeHead(500).end(String(err)));
    });
  });

  afterAll(async () => {
    await upstream?.close();
    await idp?.close();
    gateway?.closeAllConnections();
    await new Promise((resolve) => gateway?.close(resolve));
  });

  it('logs in through the IdP and returns the session cookie, not the cleared login cookie', async () => {
    const result = await login(gatewayUrl, { user: 'dave' });
    expect(result.cookie).toBe('bff-session=s1');
    expect(result.setCookie).toContain('HttpOnly');
    expect(result.location).toBe('/app');
    expect(result.jar.get(`${gatewayUrl}/auth/callback`, 'bff-login')).toBeUndefined();
    expect(decodeJwt(sessions.get('s1') ?? '').sub).toBe('dave');
  });

  it('can stop before the callback so tests can tamper with it', async () => {
    const pending = await loginUpToCallback(gatewayUrl);
    const callback = new URL(pending.callbackUrl);
    expect(callback.pathname).toBe('/auth/callback');
    expect(callback.searchParams.get('code')).toEqual(expect.any(String));
    expect(callback.searchParams.get('iss')).toBe(idp.issuer);
    expect(pending.gatewayCookieHeader).toMatch(/^bff-login=/);
  });

  it('verifies a real access token and rejects garbage and revoked ones', async () => {
    await login(gatewayUrl);
    const token = sessions.get('s1') ?? '';
    const ok = await fetch(`${upstream.url}/api/protected`, { headers: { authorization: `Bearer ${token}` } });
    expect(ok.status).toBe(200);
    expect(upstream.requests.at(-1)?.auth).toMatchObject({ ok: true, claims: { aud: AUDIENCE } });

    const bad = await fetch(`${upstream.url}/protected`, { headers: { authorization: 'Bearer not.a.jwt' } });
    expect(bad.status).toBe(401);
    expect(bad.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"');
    expect(upstream.requests.at(-1)?.auth?.ok).toBe(false);

    upstream.rejectTokens.add(token);
    const revoked = await fetch(`${upstream.url}/protected`, { headers: { authorization: `Bearer ${token}` } });
    expect(revoked.status).toBe(401);
  });

  it('echoes WebSocket messages and records the upgrade', async () => {
    const ws = new WebSocket(`${upstream.url.replace('http', 'ws')}/api/ws`, { headers: { 'x-probe': '1' } });
    const reply = await new Promise<string>((resolve, reject) => {
      ws.once('open', () => ws.send('ping'));
      ws.once('message', (data: Buffer) => resolve(data.toString()));
      ws.once('error', reject);
    });
    ws.close();
    expect(reply).toBe('ping');
    expect(upstream.requests.some((r) => r.url === '/api/ws' && r.headers['x-probe'] === '1')).toBe(true);
  });
});
