/**
 * The session behind a request's cookie: one store read. Ended sessions (idle or absolute
 * timeout) are removed by `Sessions.load` and counted here as `timeout` logouts.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { GatewayContext } from '../context.ts';
import type { LoadedSession } from './sessions.ts';

export interface RequestSession extends LoadedSession {
  /** The cookie was signed by a retired secret: send a re-signed one. */
  renewCookie: boolean;
  id: string;
}

export async function sessionFromHeaders(ctx: GatewayContext, headers: IncomingHttpHeaders): Promise<RequestSession | undefined> {
  const cookie = ctx.cookie.read(headers.cookie);
  if (!cookie) return undefined;
  const result = await ctx.sessions.load(cookie.id);
  if (result.state === 'ended') ctx.metrics.logouts.inc({ kind: 'timeout' });
  if (result.state !== 'active') return undefined;
  return { id: cookie.id, handle: result.handle, record: result.record, sealed: result.sealed, renewCookie: cookie.renew };
}

/** Seconds the session cookie should live: until the absolute timeout. */
export function cookieMaxAge(ctx: GatewayContext, session: LoadedSession): number {
  return Math.max(0, Math.floor((session.record.absoluteExpiresAt - ctx.now()) / 1000));
}
