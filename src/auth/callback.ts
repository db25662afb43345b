/**
 * GET /auth/callback — completes the login (docs/http-interface.md#get-authcallback). Rules, in order:
 * - `code`, `state`, `iss`, `error` each appear at most once;
 * - `state` matches a pending transaction in this browser's login cookie (login CSRF), and is
 *   claimed once in the store, so a replayed callback fails even with the cookie copied;
 * - an IdP `error=` for a known transaction goes back to the app: 302 to returnTo with
 *   `error=<code>` appended (a token-charset code only; any other becomes `unknown_error`), and
 *   the browser's session, if any, is left as it was (docs/frontend.md#errors);
 * - openid-client checks RFC 9207 `iss` (when advertised) before redeeming the code, then PKCE
 *   and the ID token's iss, aud, azp, sub, exp, iat, nonce; IdpClient checks its signature
 *   against the JWKS with the asymmetric allowlist (oidc/client.ts);
 * - when the login asked for `acr_values`/`max_age`, the ID token's `acr`/`auth_time` must meet
 *   them (step-up.ts), else 302 to returnTo with `error=unmet_authentication_requirements`, the
 *   existing session again untouched;
 * - a brand-new session id, then 302 to returnTo. The browser's previous session is ended: the
 *   one its cookie names, if the cookie came along, and the one named in the login transaction
 *   (with SameSite=Strict the cookie stays behind on the IdP's cross-site redirect).
 * The login cookie is cleared on every outcome (one `Set-Cookie` line for it, set first).
 * Responses are `no-store`, `no-referrer`: the URL carries a code.
 */
import type { FastifyInstance } from 'fastify';
import type { IncomingHttpHeaders } from 'node:http';
import type { GatewayConfig } from '../config/load.ts';
import { errorDetail, GatewayError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { IdpClient } from '../oidc/client.ts';
import { IdpError } from '../oidc/idp-error.ts';
import { refreshLifetimeMs, tokensFromResponse } from '../oidc/tokens.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { SessionCookie } from '../session/cookie.ts';
import type { RequestSessions } from '../session/request-session.ts';
import type { LoadedSession, Sessions } from '../session/sessions.ts';
import type { SessionEnding } from './end-session.ts';
import type { LoginTransactions } from './login-transactions.ts';
import { hasDuplicates, queryOf } from './query.ts';
import { withError } from './return-to-error.ts';
import { unmetRequirement } from './step-up.ts';
import { userAgentSummary } from './user-agent.ts';

/** Claims that describe the login mechanics rather than the user. */
const NON_USER_CLAIMS = new Set(['nonce', 'at_hash', 'c_hash', 's_hash', 'sid']);

function userClaims(claims: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(claims).filter(([name]) => !NON_USER_CLAIMS.has(name)));
}

export interface CallbackDeps {
  config: GatewayConfig;
  cookie: SessionCookie;
  idp: IdpClient;
  sessions: Sessions;
  requestSessions: RequestSessions;
  ending: SessionEnding;
  transactions: LoginTransactions;
  metrics: Metrics;
  log: Logger;
  now: () => number;
}

export function registerCallback(app: FastifyInstance, deps: CallbackDeps): void {
  const { config, cookie, idp, sessions, transactions, metrics } = deps;
  function fail(detail: string, message?: string, cause?: unknown): never {
    metrics.logins.inc({ result: 'failure' });
    throw new GatewayError('login_failed', { detail, message, cause });
  }

  app.get('/auth/callback', async (request, reply) => {
    reply.header('cache-control', 'no-store').header('referrer-policy', 'no-referrer');
    reply.header('set-cookie', cookie.loginClearCookie());

    const params = queryOf(request.url);
    if (hasDuplicates(params, ['code', 'state', 'iss', 'error'])) fail('duplicated callback parameter');
    const state = params.get('state');
    if (!state) fail('callback without state');
    const transaction = transactions.read(cookie.readRaw(request.headers.cookie, cookie.loginName)).find((tx) => tx.state === state);
    if (!transaction) fail('state does not belong to this browser or has expired');
    if (!(await transactions.claim(transaction.state))) fail('state already used');

    const idpError = params.get('error');
    if (idpError !== null) {
      const code = /^[A-Za-z0-9_.-]{1,64}$/.test(idpError) ? idpError : 'unknown_error';
      metrics.logins.inc({ result: 'failure' });
      request.log.info({ event: 'login_idp_error', code }, 'identity provider answered the login with an error');
      return reply.redirect(`${config.publicUrl}${withError(transaction.returnTo, code)}`, 302);
    }

    const callbackUrl = new URL(`${config.publicUrl}/auth/callback`);
    callbackUrl.search = params.toString();
    let response: Awaited<ReturnType<typeof idp.exchangeCode>>;
    try {
      response = await idp.exchangeCode(callbackUrl, transaction);
    } catch (err) {
      // Every failed callback is 400 login_failed (docs/http-interface.md#get-authcallback); an
      // unreachable IdP is still told apart in the message, so the user knows a retry may work.
      const failure = err instanceof IdpError ? err : new IdpError('unavailable', errorDetail(err), { cause: err });
      if (failure.kind === 'unavailable')
        fail(`code exchange: ${failure.message}`, 'The identity provider could not be reached; try logging in again.', err);
      fail(`code exchange failed: ${failure.reason}`, undefined, err);
    }

    const idClaims = response.claims();
    if (!idClaims?.sub) fail('ID token without sub');
    const asked = { acr: transaction.acrValues, maxAgeS: transaction.maxAge };
    if (unmetRequirement(idClaims, asked, deps.now())) {
      // The new tokens are dropped unrevoked: the IdP may have issued them under the grant the
      // browser's existing session still uses (see endPreviousSessions).
      metrics.logins.inc({ result: 'failure' });
      request.log.info(
        { event: 'login_requirements_unmet', acr: String(idClaims.acr ?? ''), authTime: idClaims.auth_time ?? null },
        'login does not meet the requested acr/max_age',
      );
      return reply.redirect(`${config.publicUrl}${withError(transaction.returnTo, 'unmet_authentication_requirements')}`, 302);
    }
    let claims: Record<string, unknown> = { ...idClaims };
    if (config.oidc.fetchUserinfo && idp.metadata.userinfo_endpoint) {
      // Best effort: some IdPs put profile claims only in userinfo, others refuse API-audience tokens there.
      claims = { ...(await idp.userinfo(response.access_token, idClaims.sub).catch(() => ({}))), ...idClaims };
    }

    await endPreviousSessions(deps, request.headers, transaction.previousHandle, idClaims.sub);

    const session = await sessions.create(
      {
        sub: idClaims.sub,
        idpSid: typeof idClaims.sid === 'string' ? idClaims.sid : undefined,
        claims: userClaims(claims),
        tokens: tokensFromResponse(response, deps.now()),
        device: userAgentSummary(request.headers['user-agent']),
      },
      refreshLifetimeMs(response),
    );
    metrics.logins.inc({ result: 'success' });
    request.log.info({ event: 'login' }, 'session created');
    // The login cookie's deletion is already on the reply (set first, for every outcome).
    const sessionCookie = cookie.sessionSetCookie(session.id, deps.requestSessions.cookieMaxAge(session));
    return reply.header('set-cookie', sessionCookie).redirect(`${config.publicUrl}${transaction.returnTo}`, 302);
  });
}

/**
 * Ends the session(s) this browser had before the login, best effort: a failure here must not
 * fail a login whose new session is about to be created. The refresh token is revoked only when
 * the new login is another user's: the IdP may have issued the new tokens under the same grant
 * (oidc-provider reuses the grant of its own session, Keycloak ties tokens to its SSO session),
 * and revoking the old refresh token would then revoke the new session's too.
 */
async function endPreviousSessions(
  deps: CallbackDeps,
  headers: IncomingHttpHeaders,
  rememberedHandle: string | undefined,
  newSub: string,
): Promise<void> {
  const previous: LoadedSession[] = [];
  const visible = await deps.requestSessions.fromHeaders(headers).catch(() => undefined);
  if (visible) previous.push(visible);
  if (rememberedHandle && rememberedHandle !== visible?.handle) {
    const remembered = await deps.sessions.loadHandle(rememberedHandle).catch(() => undefined);
    if (remembered?.state === 'active') previous.push(remembered);
  }
  for (const session of previous) {
    await deps.ending.end(session, 'rp', { revoke: session.record.sub !== newSub }).catch((err: unknown) => {
      deps.log.warn({ event: 'previous_session_not_ended', detail: errorDetail(err) }, 'could not end the previous session at re-login');
    });
  }
}
