/**
 * RP-initiated logout (contract section 3).
 * GET /auth/logout?sid=…  — the `sid` from `logoutUrl` proves the link came from the app (a
 *   cross-site `<img src=/auth/logout>` cannot know it). 302 to the IdP's end-session endpoint
 *   (id_token_hint, client_id, post_logout_redirect_uri) or to postLogoutRedirect.
 * POST /auth/logout (x-csrf) — same effect, 200 `{"logoutUrl": …}` for SPAs that navigate
 *   themselves.
 * The id_token_hint is sent even when the ID token has expired: OIDC RP-Initiated Logout allows
 * that, and IdPs need it to find the session.
 */
import type { FastifyInstance } from 'fastify';
import type { GatewayContext } from '../context.ts';
import { GatewayError } from '../errors.ts';
import { sessionFromHeaders, type RequestSession } from '../session/request-session.ts';
import { passesCsrf } from './csrf.ts';
import { sameSecret } from '../util/same-secret.ts';
import { endSession } from './end-session.ts';
import { singleQueryValue } from './query.ts';

export function registerLogout(app: FastifyInstance, ctx: GatewayContext): void {
  const postLogoutUrl = `${ctx.config.publicUrl}${ctx.config.oidc.postLogoutRedirect}`;

  async function logout(session: RequestSession): Promise<string> {
    const idToken = session.record.tokens.idToken;
    await endSession(ctx, session, 'rp');
    return ctx.idp.endSessionUrl(idToken, postLogoutUrl) ?? postLogoutUrl;
  }

  app.get('/auth/logout', async (request, reply) => {
    reply.header('cache-control', 'no-store').header('referrer-policy', 'no-referrer');
    const session = await sessionFromHeaders(ctx, request.headers);
    if (!session) return reply.header('set-cookie', ctx.cookie.sessionClearCookie()).redirect(postLogoutUrl, 302);
    if (!sameSecret(session.record.logoutSid, singleQueryValue(request.url, 'sid'))) {
      throw new GatewayError('invalid_request', { message: 'The logout link is missing or wrong: use the logoutUrl from /auth/user.' });
    }
    const target = await logout(session);
    return reply.header('set-cookie', ctx.cookie.sessionClearCookie()).redirect(target, 302);
  });

  app.post('/auth/logout', async (request, reply) => {
    reply.header('cache-control', 'no-store');
    if (!passesCsrf(request.headers, ctx.config)) throw new GatewayError('csrf_required');
    const session = await sessionFromHeaders(ctx, request.headers);
    const target = session ? await logout(session) : postLogoutUrl;
    return reply.header('set-cookie', ctx.cookie.sessionClearCookie()).send({ logoutUrl: target });
  });
}
