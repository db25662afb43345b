/**
 * WebSocket upgrades (contract section 6): proxied on `none` routes as they are, and on
 * `user`/`optional` routes with the session's access token. Browsers cannot add the CSRF
 * header to a WebSocket handshake, but they always send `Origin`, so on token routes the
 * handshake must come from the public origin (cross-site WebSocket hijacking is the threat).
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { GatewayContext } from '../context.ts';
import { ERRORS, GatewayError, errorBody, isGatewayError } from '../errors.ts';
import { sessionFromHeaders } from '../session/request-session.ts';
import type { Forwarder } from './forward.ts';
import { upstreamRequestHeaders } from './headers.ts';
import { resolveRoute } from './handler.ts';
import { upstreamUrl, type RouteTable } from './routes.ts';

function refuse(socket: Duplex, error: GatewayError): void {
  const body = errorBody(error.code, error.publicMessage);
  const reason = error.code.replace(/_/g, ' ');
  socket.end(
    `HTTP/1.1 ${ERRORS[error.code].status} ${reason}\r\ncontent-type: application/json; charset=utf-8\r\ncache-control: no-store\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

export function createUpgradeHandler(ctx: GatewayContext, routes: RouteTable, forwarder: Forwarder) {
  const gatewayCookies = new Set([ctx.cookie.name, ctx.cookie.loginName]);
  return async (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> => {
    socket.on('error', () => socket.destroy());
    try {
      const { route, path, query } = resolveRoute(routes, req.url ?? '/');
      if (route.token === 'client') throw new GatewayError('not_found');
      let accessToken: string | undefined;
      if (route.token !== 'none') {
        if (req.headers.origin !== ctx.config.publicUrl) throw new GatewayError('csrf_required');
        const session = await sessionFromHeaders(ctx, req.headers);
        if (!session && route.token === 'user') throw new GatewayError('unauthenticated');
        if (session) accessToken = (await ctx.refresher.ensureFresh(session)).tokens.accessToken;
      }
      const headers = upstreamRequestHeaders(req.headers, {
        trustProxy: ctx.config.trustProxy,
        removeCookies: gatewayCookies,
        remoteAddress: req.socket.remoteAddress,
        protocol: 'http',
        tokenRoute: route.token !== 'none',
        authorization: accessToken ? `Bearer ${accessToken}` : undefined,
        keepUpgrade: true,
      });
      forwarder.upgrade(req, socket, head, { url: upstreamUrl(route, path, query), headers });
    } catch (err) {
      refuse(socket, isGatewayError(err) ? err : new GatewayError('bad_gateway', { detail: (err as Error).message }));
    }
  };
}
