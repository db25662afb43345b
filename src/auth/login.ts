/**
 * GET /auth/login?returnTo=/path — starts the authorization-code flow (contract section 3):
 * PKCE S256, `state`, `nonce`, the transaction sealed into the Lax login cookie, 302 to the IdP.
 * A session the browser already has is named in the transaction, so the callback can end it
 * even though the Strict session cookie does not come back with the IdP's cross-site redirect.
 */
import type { FastifyInstance } from 'fastify';
import * as oidc from 'openid-client';
import type { GatewayContext } from '../context.ts';
import { GatewayError } from '../errors.ts';
import { sessionFromHeaders } from '../session/request-session.ts';
import { LOGIN_TTL_MS, LoginTransactions } from './login-transactions.ts';
import { safeReturnTo } from './return-to.ts';
import { singleQueryValue } from './query.ts';

export function registerLogin(app: FastifyInstance, ctx: GatewayContext, transactions: LoginTransactions): void {
  app.get('/auth/login', async (request, reply) => {
    const raw = singleQueryValue(request.url, 'returnTo');
    const returnTo = raw === null ? undefined : safeReturnTo(raw);
    if (returnTo === undefined) throw new GatewayError('invalid_return_to');

    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const codeVerifier = oidc.randomPKCECodeVerifier();
    const url = await ctx.idp.authorizationUrl({ state, nonce, codeChallenge: await oidc.calculatePKCECodeChallenge(codeVerifier) }).catch((err: unknown) => {
      if (err instanceof GatewayError) throw err;
      throw new GatewayError('idp_unavailable', { detail: `authorization request: ${(err as Error).message}`, cause: err });
    });

    // Best effort: a store hiccup must not stop a login, it only leaves the old session to time out.
    const previous = await sessionFromHeaders(ctx, request.headers).catch(() => undefined);
    const pending = transactions.read(ctx.cookie.readRaw(request.headers.cookie, ctx.cookie.loginName));
    const value = transactions.add(pending, { state, nonce, codeVerifier, returnTo, createdAt: ctx.now(), previousHandle: previous?.handle });
    return reply
      .header('set-cookie', ctx.cookie.loginSetCookie(value, LOGIN_TTL_MS / 1000))
      .header('cache-control', 'no-store')
      .header('referrer-policy', 'no-referrer')
      .redirect(url.href, 302);
  });
}
