/**
 * GET /auth/user (x-csrf) — who is logged in: `sub`, the ID-token/userinfo claims, the
 * session's expiry times and the logout URL. Never a token: the SPA has no use for one.
 */
import type { FastifyInstance } from 'fastify';
import type { GatewayContext } from '../context.ts';
import { GatewayError } from '../errors.ts';
import { cookieMaxAge, sessionFromHeaders } from '../session/request-session.ts';
import { passesCsrf } from './csrf.ts';

export function logoutUrlFor(ctx: GatewayContext, logoutSid: string): string {
  return `${ctx.config.publicUrl}/auth/logout?sid=${encodeURIComponent(logoutSid)}`;
}

export function registerUser(app: FastifyInstance, ctx: GatewayContext): void {
  app.get('/auth/user', async (request, reply) => {
    reply.header('cache-control', 'no-store');
    if (!passesCsrf(request.headers, ctx.config)) throw new GatewayError('csrf_required');
    const session = await sessionFromHeaders(ctx, request.headers);
    if (!session) throw new GatewayError('unauthenticated');
    await ctx.sessions.touch(session);
    // Signed by a retired secret: hand out a cookie signed by the current one.
    if (session.renewCookie) reply.header('set-cookie', ctx.cookie.sessionSetCookie(session.id, cookieMaxAge(ctx, session)));
    const { record } = session;
    return {
      sub: record.sub,
      claims: record.claims,
      session: {
        expiresAt: new Date(record.absoluteExpiresAt).toISOString(),
        idleExpiresAt: new Date(ctx.sessions.idleExpiresAt(record)).toISOString(),
      },
      logoutUrl: logoutUrlFor(ctx, record.logoutSid),
    };
  });
}
