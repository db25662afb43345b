/**
 * Self-service sessions (docs/http-interface.md#get-authsessions): a user sees the sessions they
 * have open on any device and any instance (the store's `sub` index), and ends one or all others.
 *
 *   GET  /auth/sessions (x-csrf)      -> {"sessions": [{ref, current, device, createdAt, lastSeenAt, expiresAt}]}
 *   POST /auth/sessions/end (x-csrf)  {"session": "<ref>"} | {"others": true}  -> {"ended": n}
 *
 * A session is named by `ref`, an HMAC of its store handle under the store key: stable across
 * instances, but neither the cookie nor the store handle, so a leaked list opens nothing. A ref
 * is honoured only among the caller's own sessions. Ending one goes through SessionEnding: gone
 * everywhere at once, its refresh token revoked at the IdP. The current session is not ended
 * here — that is what /auth/logout is for (it also ends the IdP session).
 */
import { createHmac } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { GatewayConfig } from '../config/load.ts';
import { GatewayError } from '../errors.ts';
import type { RequestSession, RequestSessions } from '../session/request-session.ts';
import type { LoadedSession, Sessions } from '../session/sessions.ts';
import { passesCsrf } from './csrf.ts';
import type { SessionEnding } from './end-session.ts';

export interface SelfSessionsDeps {
  config: GatewayConfig;
  sessions: Sessions;
  requestSessions: RequestSessions;
  ending: SessionEnding;
}

type EndRequest = { session: string } | { others: true };

function endRequestOf(body: unknown): EndRequest {
  const fields = body && typeof body === 'object' ? (body as Record<string, unknown>) : {};
  const names = Object.keys(fields);
  if (names.length === 1 && fields.others === true) return { others: true };
  if (names.length === 1 && typeof fields.session === 'string' && /^[\w-]{1,64}$/.test(fields.session)) return { session: fields.session };
  throw new GatewayError('invalid_request', { message: 'Send {"session": "<ref>"} or {"others": true}.', detail: 'bad sessions/end body' });
}

export function registerSelfSessions(app: FastifyInstance, { config, sessions, requestSessions, ending }: SelfSessionsDeps): void {
  const refKey = config.session.encryptionKeys[0] as Buffer;
  const refOf = (handle: string) => createHmac('sha256', refKey).update(`session-ref:${handle}`).digest('base64url').slice(0, 22);

  async function current(headers: Parameters<RequestSessions['fromHeaders']>[0]): Promise<RequestSession> {
    if (!passesCsrf(headers, config)) throw new GatewayError('csrf_required');
    const session = await requestSessions.fromHeaders(headers);
    if (!session) throw new GatewayError('unauthenticated');
    return session;
  }

  const view = (session: LoadedSession, currentHandle: string) => ({
    ref: refOf(session.handle),
    current: session.handle === currentHandle,
    device: session.record.device ?? 'unknown',
    createdAt: new Date(session.record.createdAt).toISOString(),
    lastSeenAt: new Date(session.record.lastSeenAt).toISOString(),
    expiresAt: new Date(sessions.idleExpiresAt(session.record)).toISOString(),
  });

  app.get('/auth/sessions', async (request) => {
    const session = await current(request.headers);
    await sessions.touch(session);
    const mine = await sessions.findBy('sub', session.record.sub);
    const listed = mine.map((entry) => view(entry, session.handle));
    // The current one first, then the most recently used.
    listed.sort((a, b) => Number(b.current) - Number(a.current) || b.lastSeenAt.localeCompare(a.lastSeenAt));
    return { sessions: listed };
  });

  app.post('/auth/sessions/end', async (request) => {
    const session = await current(request.headers);
    const asked = endRequestOf(request.body);
    const others = (await sessions.findBy('sub', session.record.sub)).filter((entry) => entry.handle !== session.handle);
    let targets: LoadedSession[];
    if ('others' in asked) {
      targets = others;
    } else {
      if (asked.session === refOf(session.handle)) {
        throw new GatewayError('invalid_request', {
          message: 'This is the current session: log out with /auth/logout.',
          detail: 'sessions/end on the current session',
        });
      }
      targets = others.filter((entry) => refOf(entry.handle) === asked.session);
      if (targets.length === 0) throw new GatewayError('not_found', { message: 'No such session.', detail: 'sessions/end: unknown ref' });
    }
    for (const target of targets) await ending.end(target, 'rp');
    request.log.info({ event: 'sessions_ended_by_user', count: targets.length }, 'user ended own sessions');
    return { ended: targets.length };
  });
}
