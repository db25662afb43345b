/**
 * RP-initiated logout.
 * GET /auth/logout?sid=…  — the `sid` from `logoutUrl` proves the link came from the app (a
 *   cross-site `<img src=/auth/logout>` cannot know it). 302 to the IdP's end-session endpoint
 *   (id_token_hint, client_id, post_logout_redirect_uri) or to postLogoutRedirect. Only for a
 *   top-level navigation, like the hand-off: page script can read the `sid` too.
 * POST /auth/logout (x-csrf) — same effect, 200 `{"logoutUrl": …}` for SPAs that navigate
 *   themselves. Page script reads that answer, so it never holds the ID token: `logoutUrl` is
 *   the one-time hand-off URL (logout-handoff.ts), or postLogoutRedirect without an end-session
 *   endpoint.
 * GET /auth/logout/continue?handoff=… — the hand-off: a top-level navigation is redirected to the
 *   end-session endpoint with the hint. A used, unknown or expired handle still lands on
 *   postLogoutRedirect (the local logout is done; the user must not hit a dead end).
 * The id_token_hint is sent even when the ID token has expired: OIDC RP-Initiated Logout allows
 * that, and IdPs need it to find the session.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { GatewayConfig } from '../config/load.ts';
import { GatewayError } from '../errors.ts';
import type { IdpClient } from '../oidc/client.ts';
import type { SessionCookie } from '../session/cookie.ts';
import type { RequestSession, RequestSessions } from '../session/request-session.ts';
import { passesCsrf } from './csrf.ts';
import { sameSecret } from '../util/same-secret.ts';
import type { SessionEnding } from './end-session.ts';
import { LOGOUT_CONTINUE_PATH, type LogoutHandoffs } from './logout-handoff.ts';
import { singleQueryValue } from './query.ts';

/**
 * A script's fetch() that follows a redirect carrying the hint (the hand-off's, or GET
 * /auth/logout's: page script can read `sid` from /auth/user) could read the final URL, and so
 * the hint, from `response.url` if the IdP answered with CORS headers. Browsers say what a
 * request is for in Sec-Fetch-*: only a top-level document navigation is redirected. Clients
 * that send no Sec-Fetch headers (older browsers) are navigations as far as we can tell.
 */
function isTopLevelNavigation(headers: IncomingHttpHeaders): boolean {
  const mode = headers['sec-fetch-mode'];
  const dest = headers['sec-fetch-dest'];
  return (mode === undefined || mode === 'navigate') && (dest === undefined || dest === 'document');
}

function notANavigation(): GatewayError {
  return new GatewayError('invalid_request', { message: 'Open the logout URL by navigating to it, not from a script.' });
}

export interface LogoutDeps {
  config: GatewayConfig;
  cookie: SessionCookie;
  idp: IdpClient;
  requestSessions: RequestSessions;
  ending: SessionEnding;
  handoffs: LogoutHandoffs;
}

export function registerLogout(app: FastifyInstance, { config, cookie, idp, requestSessions, ending, handoffs }: LogoutDeps): void {
  const postLogoutUrl = `${config.publicUrl}${config.oidc.postLogoutRedirect}`;
  const hasEndSession = () => idp.endSessionUrl(undefined, postLogoutUrl) !== undefined;

  app.get('/auth/logout', async (request, reply) => {
    reply.header('cache-control', 'no-store').header('referrer-policy', 'no-referrer');
    // Refused before the session is even read: a script's request ends nothing.
    if (!isTopLevelNavigation(request.headers)) throw notANavigation();
    const session = await requestSessions.fromHeaders(request.headers);
    if (!session) return reply.header('set-cookie', cookie.sessionClearCookie()).redirect(postLogoutUrl, 302);
    if (!sameSecret(session.record.logoutSid, singleQueryValue(request.url, 'sid'))) {
      throw new GatewayError('invalid_request', { message: 'The logout link is missing or wrong: use the logoutUrl from /auth/user.' });
    }
    const idToken = session.record.tokens.idToken;
    await ending.end(session, 'rp');
    const target = idp.endSessionUrl(idToken, postLogoutUrl) ?? postLogoutUrl;
    return reply.header('set-cookie', cookie.sessionClearCookie()).redirect(target, 302);
  });

  app.post('/auth/logout', async (request, reply) => {
    reply.header('cache-control', 'no-store');
    if (!passesCsrf(request.headers, config)) throw new GatewayError('csrf_required');
    const session = await requestSessions.fromHeaders(request.headers);
    const target = session ? await logoutForScript(session) : postLogoutUrl;
    return reply.header('set-cookie', cookie.sessionClearCookie()).send({ logoutUrl: target });
  });

  /** Ends the session; the URL to navigate to names the hand-off, never the ID token. */
  async function logoutForScript(session: RequestSession): Promise<string> {
    // The hand-off is stored first: if the store is down nothing has happened yet, and a retry works.
    const handle = hasEndSession() ? await handoffs.create(session.record.tokens.idToken) : undefined;
    await ending.end(session, 'rp');
    return handle ? `${config.publicUrl}${LOGOUT_CONTINUE_PATH}?handoff=${handle}` : postLogoutUrl;
  }

  app.get(LOGOUT_CONTINUE_PATH, async (request, reply) => {
    reply.header('cache-control', 'no-store').header('referrer-policy', 'no-referrer');
    if (!isTopLevelNavigation(request.headers)) throw notANavigation();
    const handoff = await handoffs.redeem(singleQueryValue(request.url, 'handoff'));
    const target = handoff ? (idp.endSessionUrl(handoff.idToken, postLogoutUrl) ?? postLogoutUrl) : postLogoutUrl;
    return reply.header('set-cookie', cookie.sessionClearCookie()).redirect(target, 302);
  });
}
