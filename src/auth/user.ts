/**
 * GET /auth/user (x-csrf) — who is logged in: `sub`, the ID-token/userinfo claims, how and
 * when the user authenticated (`acr`, `auth_time`: null when the IdP did not say), the
 * session's expiry times and the logout URL. Never a token: the SPA has no use for one.
 */
import type { FastifyInstance } from 'fastify';
import type { GatewayConfig } from '../config/load.ts';
import { GatewayError } from '../errors.ts';
import type { SessionCookie } from '../session/cookie.ts';
import type { RequestSessions } from '../session/request-session.ts';
import type { Sessions } from '../session/sessions.ts';
import { passesCsrf } from './csrf.ts';

function logoutUrlFor(publicUrl: string, logoutSid: string): string {
  return `${publicUrl}/auth/logout?sid=${encodeURIComponent(logoutSid)}`;
}

export interface UserDeps {
  config: GatewayConfig;
  cookie: SessionCookie;
  sessions: Sessions;
  requestSessions: RequestSessions;
}

export function registerUser(app: FastifyInstance, { config, cookie, sessions, requestSessions }: UserDeps): void {
  app.get('/auth/user', async (request, reply) => {
    reply.header('cache-control', 'no-store');
    if (!passesCsrf(request.headers, config)) throw new GatewayError('csrf_required');
    const session = await requestSessions.fromHeaders(request.headers);
    if (!session) throw new GatewayError('unauthenticated');
    await sessions.touch(session);
    // Signed by a retired secret: hand out a cookie signed by the current one.
    if (session.renewCookie) reply.header('set-cookie', cookie.sessionSetCookie(session.id, requestSessions.cookieMaxAge(session)));
    const { record } = session;
    return {
      sub: record.sub,
      claims: record.claims,
      acr: typeof record.claims.acr === 'string' ? record.claims.acr : null,
      auth_time: typeof record.claims.auth_time === 'number' ? record.claims.auth_time : null,
      session: {
        expiresAt: new Date(record.absoluteExpiresAt).toISOString(),
        idleExpiresAt: new Date(sessions.idleExpiresAt(record)).toISOString(),
      },
      logoutUrl: logoutUrlFor(config.publicUrl, record.logoutSid),
    };
  });
}
