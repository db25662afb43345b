/**
 * POST /auth/backchannel-logout — the IdP tells us a user's session ended there (OIDC
 * Back-Channel Logout 1.0). Every gateway session for that `sid` (or, without `sid`, every
 * session of that `sub`) is removed from the shared store, which ends it on every instance at
 * once. 200 on success; anything else 400 invalid_request. Always `no-store` (OIDC Back-Channel
 * Logout 1.0 section 2.8).
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { GatewayError } from '../errors.ts';
import { sendError, toGatewayError } from '../listener/error-handlers.ts';
import { LogoutTokenError, type LogoutTokenVerifier } from '../oidc/logout-token.ts';
import type { Sessions } from '../session/sessions.ts';
import type { SessionEnding } from './end-session.ts';

function isFormPost(contentType: string | undefined): boolean {
  return (contentType ?? '').split(';')[0]?.trim().toLowerCase() === 'application/x-www-form-urlencoded';
}

export interface BackchannelDeps {
  logoutTokens: LogoutTokenVerifier;
  sessions: Sessions;
  ending: SessionEnding;
}

export function registerBackchannel(app: FastifyInstance, { logoutTokens, sessions: store, ending }: BackchannelDeps): void {
  // docs/http-interface.md#post-authbackchannel-logout: anything but a valid logout token is 400 invalid_request — an oversized or
  // unparsable body included (fastify would say 413/415). Server-side failures stay 5xx, so the
  // IdP knows to retry.
  const errorHandler = (err: FastifyError | GatewayError, request: FastifyRequest, reply: FastifyReply) => {
    const error = toGatewayError(err);
    sendError(
      request,
      reply,
      error.status < 500 && error.code !== 'invalid_request'
        ? new GatewayError('invalid_request', { message: 'The logout request is malformed.', detail: error.detail })
        : error,
    );
  };
  app.post('/auth/backchannel-logout', { errorHandler }, async (request, reply) => {
    reply.header('cache-control', 'no-store');
    // OIDC Back-Channel Logout 1.0 section 2.5: the token arrives as an HTML form post. Fastify would also hand us a parsed
    // JSON body; accepting it would widen what a forged request can look like.
    if (!isFormPost(request.headers['content-type'])) {
      throw new GatewayError('invalid_request', { message: 'The logout token must be posted as application/x-www-form-urlencoded.' });
    }
    const body = request.body as Record<string, unknown> | undefined;
    const token = body && typeof body === 'object' ? body.logout_token : undefined;
    if (typeof token !== 'string' || token.length === 0 || token.length > 16_384) {
      throw new GatewayError('invalid_request', { message: 'A logout_token form field is required.' });
    }
    let target: Awaited<ReturnType<typeof logoutTokens.verify>>;
    try {
      target = await logoutTokens.verify(token);
    } catch (err) {
      if (err instanceof LogoutTokenError)
        throw new GatewayError('invalid_request', { message: 'The logout token is not valid.', detail: err.message });
      throw err;
    }
    const sessions = target.sid ? await store.findBy('sid', target.sid) : await store.findBy('sub', target.sub as string);
    // With both, the spec's intent is the one IdP session: a sid match must also agree on sub.
    const matching = target.sid && target.sub ? sessions.filter((s) => s.record.sub === target.sub) : sessions;
    // The IdP already ended the grant; revoking again would only add load and latency.
    await Promise.all(matching.map((session) => ending.end(session, 'backchannel', { revoke: false })));
    request.log.info({ event: 'backchannel_logout', sessions: matching.length }, 'back-channel logout processed');
    return reply.code(200).send();
  });
}
