/**
 * A whole deployment for one test file: a real IdP (oidc-provider), a real upstream that
 * verifies the bearer JWT, optionally a real redis-server, and one or more gateways built with
 * `buildGateway` and listening on loopback. Configuration goes through the same validation as
 * YAML files (`buildConfig`), so tests exercise the real defaults.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { startIdp, type Idp, type IdpOptions } from '../../fixtures/idp/idp.ts';
import { buildConfig, type GatewayConfig } from '../../src/config/load.ts';
import { createLogger } from '../../src/log.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { buildGateway, type Gateway, type GatewayDeps } from '../../src/server.ts';
import { startRedis, type RedisInstance } from './redis.ts';
import { startUpstream, type Upstream } from './upstream.ts';

export const CLIENT_ID = 'spa-bff';
export const CLIENT_SECRET = 'test-client-secret-0123456789abcdef';
export const SESSION_SECRET = 'test-session-secret-0123456789-abcdefghijklmnop';
export const SESSION_KEY = randomBytes(32).toString('base64');

/** The `oidc` block every test gateway uses with the fixture IdP (fixtures/idp). */
export function testOidcConfig(issuer: string): Record<string, unknown> {
  return { issuer, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, scopes: ['openid', 'profile', 'email', 'api'], timeout: '3s' };
}

export interface WorldOptions {
  store?: 'memory' | 'redis';
  instances?: number;
  idp?: Partial<IdpOptions>;
  /** Deep-merged over the default raw configuration. */
  config?: Record<string, unknown>;
  host?: '127.0.0.1' | 'localhost';
  /**
   * Puts something in front of the IdP (e.g. test/support/hostile-idp.ts): called once the IdP
   * runs, resolves with the issuer URL the gateways are configured with.
   */
  issuerFor?: (idp: Idp) => Promise<string>;
  /** Replaces the default routes; receives the running upstream so routes can point at it. */
  routes?: (upstream: Upstream) => Array<Record<string, unknown>>;
}

export interface RunningGateway {
  url: string;
  port: number;
  gateway: Gateway;
  config: GatewayConfig;
  /** Every JSON log line this gateway wrote. */
  logs: string[];
}

export interface World {
  idp: Idp;
  upstream: Upstream;
  redis?: RedisInstance;
  gateways: RunningGateway[];
  /** The first gateway's public URL. */
  url: string;
  gateway: RunningGateway;
  /** The raw (pre-validation) configuration object the gateways were built from. */
  rawConfig(index?: number): Record<string, unknown>;
  startGateway(deps?: GatewayDeps, overrides?: Record<string, unknown>): Promise<RunningGateway>;
  close(): Promise<void>;
}

export function deepMerge(base: Record<string, unknown>, extra: Record<string, unknown> | undefined): Record<string, unknown> {
  if (!extra) return base;
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(extra)) {
    const current = out[key];
    out[key] =
      value && typeof value === 'object' && !Array.isArray(value) && current && typeof current === 'object' && !Array.isArray(current)
        ? deepMerge(current as Record<string, unknown>, value as Record<string, unknown>)
        : value;
  }
  return out;
}

export function logCapture(): { lines: string[]; stream: Writable } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  return { lines, stream };
}

/** A loopback port held by a placeholder listener until `release`. */
async function reservePort(): Promise<{ port: number; release(): Promise<void> }> {
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  const { port } = holder.address() as AddressInfo;
  let released: Promise<void> | undefined;
  return { port, release: () => (released ??= new Promise((resolve) => holder.close(() => resolve()))) };
}

export async function startWorld(options: WorldOptions = {}): Promise<World> {
  const host = options.host ?? '127.0.0.1';
  const count = options.instances ?? 1;
  // Held until each gateway listens: the public origin is registered at the IdP before that,
  // and a port merely found free could be taken meanwhile (EADDRINUSE under parallel tests).
  const reserved = await Promise.all(Array.from({ length: count }, () => reservePort()));
  const ports = reserved.map((reservation) => reservation.port);
  // All instances share one public origin (as behind a load balancer): the first port's.
  const publicUrl = `http://${host}:${ports[0]}`;
  const redis = options.store === 'redis' ? await startRedis() : undefined;
  const idp = await startIdp({
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    redirectUris: [`${publicUrl}/auth/callback`],
    postLogoutRedirectUris: [`${publicUrl}/`, `${publicUrl}/bye`],
    backchannelLogoutUri: `${publicUrl}/auth/backchannel-logout`,
    accessTokenTtl: 300,
    ...options.idp,
  });
  const upstream = await startUpstream({ issuer: idp.issuer, jwksUri: `${idp.issuer}/jwks` });
  const gatewayIssuer = options.issuerFor ? await options.issuerFor(idp) : idp.issuer;

  const raw = (overrides?: Record<string, unknown>) =>
    deepMerge(
      deepMerge(
        {
          listen: { host: '127.0.0.1', port: ports[0] },
          publicUrl,
          oidc: testOidcConfig(gatewayIssuer),
          session: {
            store: options.store ?? 'memory',
            ...(redis ? { redis: { url: redis.url } } : {}),
            secret: SESSION_SECRET,
            encryptionKey: SESSION_KEY,
          },
          routes: options.routes?.(upstream) ?? [
            { path: '/api', upstream: upstream.url, token: 'user' },
            { path: '/maybe', upstream: upstream.url, token: 'optional' },
            { path: '/', upstream: upstream.url, token: 'none' },
          ],
        },
        options.config,
      ),
      overrides,
    );

  const gateways: RunningGateway[] = [];
  const startGateway = async (deps: GatewayDeps = {}, overrides?: Record<string, unknown>, port = 0): Promise<RunningGateway> => {
    const config = buildConfig(raw(overrides));
    const capture = logCapture();
    const gateway = await buildGateway(config, {
      log: createLogger({ level: 'debug', destination: capture.stream }),
      metrics: new Metrics(),
      ...deps,
    });
    await reserved.find((reservation) => reservation.port === port && port !== 0)?.release();
    await gateway.app.listen({ host, port });
    gateway.start();
    await gateway.services.idp.start();
    const address = gateway.app.server.address();
    const actualPort = typeof address === 'object' && address ? address.port : port;
    const running = { url: `http://${host}:${actualPort}`, port: actualPort, gateway, config, logs: capture.lines };
    gateways.push(running);
    return running;
  };
  for (const port of ports) await startGateway({}, undefined, port);
  const first = gateways[0] as RunningGateway;

  return {
    idp,
    upstream,
    redis,
    gateways,
    url: publicUrl,
    gateway: first,
    rawConfig: () => raw(),
    startGateway: (deps, overrides) => startGateway(deps, overrides),
    async close() {
      await Promise.all(gateways.map((g) => g.gateway.close().catch(() => {})));
      await upstream.close();
      await idp.close();
      await redis?.stop();
      await Promise.all(reserved.map((reservation) => reservation.release()));
    },
  };
}

/** Headers an SPA sends on API calls: the session cookie and the CSRF header. */
export function apiHeaders(cookieHeader: string, extra: Record<string, string> = {}): Record<string, string> {
  return { cookie: cookieHeader, 'x-csrf': '1', ...extra };
}

/** Status of an API call with the session cookie and CSRF header (the body is discarded). */
export async function apiStatus(base: string, path: string, cookieHeader: string): Promise<number> {
  const res = await fetch(`${base}${path}`, { headers: apiHeaders(cookieHeader) });
  await res.body?.cancel();
  return res.status;
}
