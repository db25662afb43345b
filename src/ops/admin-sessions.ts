/**
 * Session administration over HTTP on the admin listener — off unless `admin.token` is set,
 * and then every call needs `Authorization: Bearer <admin.token>` (compared in constant time).
 *   GET  /sessions?sub=|sid=|handle=      list (no selector: all sessions)
 *   POST /sessions/revoke {sub|sid|handle|all: true}
 * Revoking does what a logout does: the session leaves the shared store (every instance) and
 * its tokens are revoked at the IdP. Answers carry store handles and subjects, never tokens.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { SessionEnding } from '../auth/end-session.ts';
import { isSelective, selectSessions, summarize, type Selection } from '../admin/select.ts';
import { GatewayError } from '../errors.ts';
import type { IdpClient } from '../oidc/client.ts';
import type { Sessions } from '../session/sessions.ts';
import { sameSecret } from '../util/same-secret.ts';

function bearerMatches(header: string | undefined, expected: string): boolean {
  return sameSecret(expected, /^Bearer\s+(.+)$/i.exec(header ?? '')?.[1]?.trim());
}

function selectionFrom(input: unknown): Selection {
  const source = (input && typeof input === 'object' ? input : {}) as Record<string, unknown>;
  const text = (value: unknown) => (typeof value === 'string' && value.length > 0 ? value : undefined);
  return { sub: text(source.sub), sid: text(source.sid), handle: text(source.handle), all: source.all === true || source.all === 'true' };
}

export interface AdminSessionsDeps {
  sessions: Pick<Sessions, 'findBy' | 'all'>;
  ending: SessionEnding;
  /** Whether the IdP can revoke tokens (reported in the answer). */
  idp: Pick<IdpClient, 'canRevoke'>;
}

export function registerAdminSessions(app: FastifyInstance, { sessions: store, ending, idp }: AdminSessionsDeps, token: string): void {
  app.register(async (scope) => {
    scope.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
      reply.header('cache-control', 'no-store');
      if (!bearerMatches(request.headers.authorization, token))
        throw new GatewayError('unauthenticated', { message: 'The admin token is missing or wrong.' });
    });
    scope.get('/sessions', async (request) => {
      const sessions = await selectSessions(store, selectionFrom(request.query));
      return { count: sessions.length, sessions: sessions.map(summarize) };
    });
    scope.post('/sessions/revoke', async (request) => {
      const selection = selectionFrom(request.body);
      if (!isSelective(selection)) throw new GatewayError('invalid_request', { message: 'Name one of sub, sid, handle, or all: true.' });
      const sessions = await selectSessions(store, selection);
      for (const session of sessions) await ending.end(session, 'admin');
      return { revoked: sessions.length, sessions: sessions.map(summarize), tokensRevoked: idp.canRevoke };
    });
  });
}
