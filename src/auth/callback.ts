/**
 * GET /auth/callback — completes the login (contract section 3). Rules, in order:
 * - `code`, `state`, `iss`, `error` each appear at most once;
 * - `state` matches a pending transaction in this browser's login cookie (login CSRF), and is
 *   claimed once in the store, so a replayed callback fails even with the cookie copied;
 * - an IdP `error=` ends here: 400 login_failed naming the IdP's code;
 * - openid-client checks RFC 9207 `iss` (when advertised) before redeeming the code, then PKCE
 *   and the ID token's iss, aud, azp, sub, exp, iat, nonce; IdpClient checks its signature
 *   against the JWKS with the asymmetric allowlist (oidc/client.ts);
 * - a brand-new session id, then 302 to returnTo. The browser's previous session is ended: the
 *   one its cookie names, if the cookie came along, and the one named in the login transaction
 *   (with SameSite=Strict the cookie stays behind on the IdP's cross-site redirect).
 * The login cookie is cleared on every outcome. Responses are `no-store`, `no-referrer`: the
 * URL carries a code.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { GatewayContext } from '../context.ts';
import { errorDetail, GatewayError } from '../errors.ts';
import { classifyIdpFailure } from '../oidc/client.ts';
import { refreshLifetimeMs, tokensFromResponse } from '../oidc/tokens.ts';
import type { IncomingHttpHeaders } from 'node:http';
import { cookieMaxAge, sessionFromHeaders } from '../session/request-session.ts';
import type { LoadedSession } from '../session/sessions.ts';
import { endSession } from './end-session.ts';
import { LOGIN_TTL_MS, LoginTransactions } from './login-transactions.ts';
import { hasDuplicates, queryOf } from './query.ts';

/** Claims that describe the login mechanics rather than the user. */
const NON_USER_CLAIMS = new Set(['nonce', 'at_hash', 'c_hash', 's_hash', 'sid']);

function userClaims(claims: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(claims).filter(([name]) => !NON_USER_CLAIMS.has(name)));
}

function fail(ctx: GatewayContext, detail: string, message?: string, cause?: unknown): never {
  ctx.metrics.logins.inc({ result: 'failure' });
  throw new GatewayError('login_failed', { detail, message, cause });
}

export function registerCallback(app: FastifyInstance, ctx: GatewayContext, transactions: LoginTransactions): void {
  app.get('/auth/callback', async (request, reply) => {
    reply.header('cache-control', 'no-store').header('referrer-policy', 'no-referrer');
    reply.header('set-cookie', ctx.cookie.loginClearCookie());

    const params = queryOf(request.url);
    if (hasDuplicates(params, ['code', 'state', 'iss', 'error'])) fail(ctx, 'duplicated callback parameter');
    const state = params.get('state');
    if (!state) fail(ctx, 'callback without state');
    const transaction = transactions.read(ctx.cookie.readRaw(request.headers.cookie, ctx.cookie.loginName)).find((tx) => tx.state === state);
    if (!transaction) fail(ctx, 'state does not belong to this browser or has expired');
    if (!(await ctx.store.claimOnce(LoginTransactions.claimKey(state), LOGIN_TTL_MS))) fail(ctx, 'state already used');

    const idpError = params.get('error');
    if (idpError !== null) {
      const code = idpError.replace(/[^A-Za-z0-9_.-]/g, '').slice(0, 64) || 'unknown_error';
      fail(ctx, `identity provider returned error ${code}`, `The identity provider answered: ${code}.`);
    }

    const callbackUrl = new URL(`${ctx.config.publicUrl}/auth/callback`);
    callbackUrl.search = params.toString();
    let response;
    try {
      response = await ctx.idp.exchangeCode(callbackUrl, transaction);
    } catch (err) {
      // Every failed callback is 400 login_failed (contract section 3); an unreachable IdP is
      // still told apart in the message, so the user knows a retry may work.
      const failure = err instanceof GatewayError ? ({ kind: 'unavailable', detail: err.detail } as const) : classifyIdpFailure(err);
      if (failure.kind === 'unavailable') fail(ctx, `code exchange: ${failure.detail}`, 'The identity provider could not be reached; try logging in again.', err);
      fail(ctx, `code exchange failed: ${failure.kind === 'rejected' ? failure.error : failure.detail}`, undefined, err);
    }

    const idClaims = response.claims();
    if (!idClaims?.sub) fail(ctx, 'ID token without sub');
    let claims: Record<string, unknown> = { ...idClaims };
    if (ctx.config.oidc.fetchUserinfo && ctx.idp.metadata.userinfo_endpoint) {
      // Best effort: some IdPs put profile claims only in userinfo, others refuse API-audience tokens there.
      claims = { ...(await ctx.idp.userinfo(response.access_token, idClaims.sub).catch(() => ({}))), ...idClaims };
    }

    await endPreviousSessions(ctx, request.headers, transaction.previousHandle, idClaims.sub);

    const session = await ctx.sessions.create(
      {
        sub: idClaims.sub,
        idpSid: typeof idClaims.sid === 'string' ? idClaims.sid : undefined,
        claims: userClaims(claims),
        tokens: tokensFromResponse(response, ctx.now()),
      },
      refreshLifetimeMs(response),
    );
    ctx.metrics.logins.inc({ result: 'success' });
    request.log.info({ event: 'login' }, 'session created');
    return redirectWithSession(reply, ctx, session.id, cookieMaxAge(ctx, session), transaction.returnTo);
  });
}

/**
 * Ends the session(s) this browser had before the login, best effort: a failure here must not
 * fail a login whose new session is about to be created. The refresh token is revoked only when
 * the new login is another user's: the IdP may have issued the new tokens under the same grant
 * (oidc-provider reuses the grant of its own session, Keycloak ties tokens to its SSO session),
 * and revoking the old refresh token would then revoke the new session's too.
 */
async function endPreviousSessions(ctx: GatewayContext, headers: IncomingHttpHeaders, rememberedHandle: string | undefined, newSub: string): Promise<void> {
  const previous: LoadedSession[] = [];
  const visible = await sessionFromHeaders(ctx, headers).catch(() => undefined);
  if (visible) previous.push(visible);
  if (rememberedHandle && rememberedHandle !== visible?.handle) {
    const remembered = await ctx.sessions.loadHandle(rememberedHandle).catch(() => undefined);
    if (remembered?.state === 'active') previous.push(remembered);
  }
  for (const session of previous) {
    await endSession(ctx, session, 'rp', { revoke: session.record.sub !== newSub }).catch((err: unknown) => {
      ctx.log.warn({ event: 'previous_session_not_ended', detail: errorDetail(err) }, 'could not end the previous session at re-login');
    });
  }
}

function redirectWithSession(reply: FastifyReply, ctx: GatewayContext, id: string, maxAge: number, returnTo: string): FastifyReply {
  return reply
    .header('set-cookie', [ctx.cookie.loginClearCookie(), ctx.cookie.sessionSetCookie(id, maxAge)])
    .redirect(`${ctx.config.publicUrl}${returnTo}`, 302);
}
