/**
 * The token layer without processes, for unit tests: the memory store and the real session,
 * refresher, client-token and credential services on a manual clock, with a fake IdP
 * (fake-idp.ts). `instance()` adds another gateway instance on the same store.
 */
import { randomBytes } from 'node:crypto';
import { buildConfig, type GatewayConfig } from '../../src/config/load.ts';
import { createLogger } from '../../src/log.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { CredentialSource } from '../../src/proxy/credentials.ts';
import { ClientTokens } from '../../src/refresh/client-tokens.ts';
import { TokenRefresher } from '../../src/refresh/token-refresher.ts';
import { SessionCookie } from '../../src/session/cookie.ts';
import { MemoryStore } from '../../src/session/memory-store.ts';
import { RequestSessions } from '../../src/session/request-session.ts';
import { Sealer } from '../../src/session/seal.ts';
import { Sessions, type SessionTokens } from '../../src/session/sessions.ts';
import { FakeIdp } from './fake-idp.ts';
import { ManualClock } from './time.ts';

export const ACCESS_TTL_MS = 300_000;

export function unitConfig(extra: Record<string, unknown> = {}): GatewayConfig {
  return buildConfig({
    publicUrl: 'https://app.example.com',
    oidc: { issuer: 'https://idp.example.com', clientId: 'spa', clientSecret: 'unit-secret' },
    session: { store: 'memory', secret: 'unit-session-secret-0123456789-abcdefghij', encryptionKey: randomBytes(32).toString('base64') },
    routes: [
      { path: '/orders', upstream: 'http://orders.internal', token: 'user', audience: 'https://orders.internal', scopes: ['orders.read'] },
      { path: '/machine', upstream: 'http://machine.internal', token: 'client' },
      { path: '/maybe', upstream: 'http://api.internal', token: 'optional' },
      { path: '/api', upstream: 'http://api.internal', token: 'user' },
      { path: '/', upstream: 'http://spa.internal', token: 'none' },
    ],
    ...extra,
  });
}

export interface Instance {
  sessions: Sessions;
  requestSessions: RequestSessions;
  refresher: TokenRefresher;
  clientTokens: ClientTokens;
  credentials: CredentialSource;
  metrics: Metrics;
  /** Timeouts RequestSessions reported. */
  readonly timeouts: number;
}

export function tokenWorld(config: GatewayConfig = unitConfig()) {
  const clock = new ManualClock();
  const store = new MemoryStore(clock.now);
  const idp = new FakeIdp();
  const sealer = new Sealer(config.session.encryptionKeys);
  const cookie = new SessionCookie(config.session);
  const log = createLogger({ level: 'silent' });

  const instance = (): Instance => {
    const metrics = new Metrics();
    const sessions = new Sessions(store, sealer, config.session, clock.now);
    const refresher = new TokenRefresher({ config, store, sessions, idp, metrics, log, now: clock.now });
    const clientTokens = new ClientTokens(config, idp, clock.now);
    let timeouts = 0;
    const requestSessions = new RequestSessions(cookie, sessions, clock.now, () => (timeouts += 1));
    const credentials = new CredentialSource({ requestSessions, sessions, refresher, clientTokens, idp: { dpop: undefined } });
    return {
      sessions,
      requestSessions,
      refresher,
      clientTokens,
      credentials,
      metrics,
      get timeouts() {
        return timeouts;
      },
    };
  };

  const main = instance();
  const route = (path: string) => {
    const found = config.routes.find((r) => r.path === path);
    if (!found) throw new Error(`no route ${path}`);
    return found;
  };

  /** A stored session with tokens at-0 / rt-0 (expiring ACCESS_TTL_MS from now), and its Cookie header. */
  async function session(tokens: Partial<SessionTokens> = {}) {
    const created = await main.sessions.create({
      sub: 'alice',
      idpSid: 'idp-sid-1',
      claims: { name: 'Alice' },
      tokens: {
        accessToken: 'at-0',
        tokenType: 'bearer',
        expiresAt: clock.now() + ACCESS_TTL_MS,
        refreshToken: 'rt-0',
        idToken: 'id-0',
        ...tokens,
      },
    });
    const cookieHeader = cookie.sessionSetCookie(created.id, 3600).split(';')[0] as string;
    return { ...created, cookieHeader };
  }

  async function refreshes(instance: Instance, result: string): Promise<number> {
    return (await instance.metrics.tokenRefresh.get()).values.find((v) => v.labels.result === result)?.value ?? 0;
  }

  return { config, clock, store, idp, cookie, main, instance, route, session, refreshes };
}
