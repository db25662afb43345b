/**
 * Which token a request carries upstream, per route mode (contract sections 3, 5, 7):
 *   user      the session's access token, refreshed first when it is about to expire;
 *   optional  the same when there is a session, nothing otherwise;
 *   client    the gateway's own client-credentials token for the route (no session needed);
 *   none      nothing.
 * `retry` answers the upstream's 401 invalid_token with a newer token (one refresh, shared
 * with every concurrent request of the session); `tokens` lists everything that must never be
 * echoed back to the browser.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { RouteConfig } from '../config/load.ts';
import type { GatewayContext } from '../context.ts';
import { GatewayError } from '../errors.ts';
import { sessionFromHeaders, type RequestSession } from '../session/request-session.ts';
import type { SessionRecord } from '../session/sessions.ts';

export interface Credentials {
  accessToken: string | undefined;
  session: RequestSession | undefined;
  /** A newer token after an upstream rejection, or undefined when there is nothing to retry. */
  retry(): Promise<string | undefined>;
  tokens(): string[];
}

function recordTokens(record: SessionRecord): string[] {
  const { accessToken, refreshToken, idToken } = record.tokens;
  return [accessToken, refreshToken, idToken].filter((token): token is string => typeof token === 'string' && token.length > 0);
}

const NONE: Credentials = { accessToken: undefined, session: undefined, retry: async () => undefined, tokens: () => [] };

export async function credentialsFor(ctx: GatewayContext, route: RouteConfig, headers: IncomingHttpHeaders): Promise<Credentials> {
  if (route.token === 'none') return NONE;
  if (route.token === 'client') {
    const used = new Set<string>([await ctx.clientTokens.tokenFor(route)]);
    const credentials: Credentials = {
      accessToken: [...used][0],
      session: undefined,
      async retry() {
        ctx.clientTokens.invalidate(route, credentials.accessToken as string);
        credentials.accessToken = await ctx.clientTokens.tokenFor(route);
        used.add(credentials.accessToken);
        return credentials.accessToken;
      },
      tokens: () => [...used],
    };
    return credentials;
  }
  const session = await sessionFromHeaders(ctx, headers);
  if (!session) {
    if (route.token === 'user') throw new GatewayError('unauthenticated');
    return NONE;
  }
  let record = await ctx.refresher.ensureFresh(session);
  await ctx.sessions.touch(session).catch(() => {});
  const seen = new Set(recordTokens(record));
  const credentials: Credentials = {
    accessToken: record.tokens.accessToken,
    session,
    async retry() {
      record = await ctx.refresher.refreshAfterRejection(session, record.tokens.accessToken);
      for (const token of recordTokens(record)) seen.add(token);
      credentials.accessToken = record.tokens.accessToken;
      return credentials.accessToken;
    },
    tokens: () => [...seen],
  };
  return credentials;
}
