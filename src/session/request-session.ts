/**
 * The session behind a request's cookie: one store read. Sessions past their idle or absolute
 * timeout are counted here as `timeout` logouts: those found expired (removed by
 * `Sessions.load`) and those the store already forgot by TTL (`Sessions.markEnded`).
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { GatewayContext } from '../context.ts';
import { Sessions, type LoadedSession } from './sessions.ts';

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
  else if (result.state === 'none' && (await ctx.sessions.markEnded(Sessions.handleOf(cookie.id)))) ctx.metrics.logouts.inc({ kind: 'timeout' });
  if (result.state !== 'active') return undefined;
  return { id: cookie.id, handle: result.handle, record: result.record, sealed: result.sealed, renewCookie: cookie.renew };
}

/** Seconds the session cookie should live: until the absolute timeout. */
export function cookieMaxAge(ctx: GatewayContext, session: LoadedSession): number {
  return Math.max(0, Math.floor((session.record.absoluteExpiresAt - ctx.now()) / 1000));
}
