/**
 * GET /auth/login?returnTo=/path — starts the authorization-code flow (docs/http-interface.md#get-authlogin):
 * PKCE S256, `state`, `nonce`, the transaction sealed into the Lax login cookie, 302 to the IdP.
 * Allow-listed login parameters (`prompt`, `max_age`, `acr_values`, ...) are validated and passed
 * on (login-params.ts); what was asked of `acr`/`max_age` is remembered for the callback to verify.
 * A session the browser already has is named in the transaction, so the callback can end it
 * even though the Strict session cookie does not come back with the IdP's cross-site redirect.
 */
import type { FastifyInstance } from 'fastify';
import type { GatewayConfig } from '../config/load.ts';
import { GatewayError } from '../errors.ts';
import { newLoginChecks, type IdpClient } from '../oidc/client.ts';
import { IdpError } from '../oidc/idp-error.ts';
import type { SessionCookie } from '../session/cookie.ts';
import type { RequestSessions } from '../session/request-session.ts';
import { LOGIN_TTL_MS, type LoginTransactions } from './login-transactions.ts';
import { safeReturnTo } from './return-to.ts';
import { loginParamsFrom } from './login-params.ts';
import { queryOf, singleQueryValue } from './query.ts';

export interface LoginDeps {
  /** False while the session store is known to be down (its connection state): refuse at once. */
  storeReachable?: () => boolean;
  oidc: GatewayConfig['oidc'];
  idp: IdpClient;
  cookie: SessionCookie;
  requestSessions: RequestSessions;
  transactions: LoginTransactions;
  now: () => number;
}

export function registerLogin(
  app: FastifyInstance,
  { storeReachable, oidc, idp, cookie, requestSessions, transactions, now }: LoginDeps,
): void {
  app.get('/auth/login', async (request, reply) => {
    // The callback could not store the session: say so now, not after the user has logged in.
    if (storeReachable?.() === false) throw new GatewayError('session_store_unavailable', { detail: 'session store unreachable' });
    const raw = singleQueryValue(request.url, 'returnTo');
    const returnTo = raw === null ? undefined : safeReturnTo(raw);
    if (returnTo === undefined) throw new GatewayError('invalid_return_to');
    const loginParams = loginParamsFrom(queryOf(request.url), oidc);

    const { state, nonce, codeVerifier, codeChallenge } = await newLoginChecks();
    const url = await idp
      .authorizationUrl({ state, nonce, codeChallenge, loginParams: loginParams as Record<string, string> })
      .catch((err: unknown) => {
        const reason = err instanceof IdpError ? err.reason : String(err);
        throw new GatewayError('idp_unavailable', { detail: `authorization request: ${reason}`, cause: err });
      });

    // Best effort: a store hiccup must not stop a login, it only leaves the old session to time out.
    const previous = await requestSessions.fromHeaders(request.headers).catch(() => undefined);
    const pending = transactions.read(cookie.readRaw(request.headers.cookie, cookie.loginName));
    const asked = {
      ...(loginParams.acr_values ? { acrValues: loginParams.acr_values.split(' ') } : {}),
      ...(loginParams.max_age ? { maxAge: Number(loginParams.max_age) } : {}),
    };
    const value = transactions.add(pending, {
      state,
      nonce,
      codeVerifier,
      returnTo,
      createdAt: now(),
      previousHandle: previous?.handle,
      ...asked,
    });
    return reply
      .header('set-cookie', cookie.loginSetCookie(value, LOGIN_TTL_MS / 1000))
      .header('cache-control', 'no-store')
      .header('referrer-policy', 'no-referrer')
      .redirect(url.href, 302);
  });
}
