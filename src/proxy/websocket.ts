/**
 * WebSocket upgrades (contract section 6): proxied on `none` routes as they are, and on
 * `user`/`optional` routes with the session's access token. Browsers cannot add the CSRF
 * header to a WebSocket handshake, but they always send `Origin`, so on token routes the
 * handshake must come from the public origin (cross-site WebSocket hijacking is the threat).
 * `token: client` routes carry the gateway's client-credentials token, as over HTTP. A DPoP-bound
 * token comes with a proof for `GET` and the ws URL in its http(s) form.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { GatewayContext } from '../context.ts';
import { GatewayError, isGatewayError, rawHttpError } from '../errors.ts';
import { authHeaders, credentialsFor } from './credentials.ts';
import type { Forwarder } from './forward.ts';
import { browserProtocol, upstreamRequestHeaders } from './headers.ts';
import { resolveRoute } from './handler.ts';
import { upstreamUrl, type RouteTable } from './routes.ts';

export function createUpgradeHandler(ctx: GatewayContext, routes: RouteTable, forwarder: Forwarder) {
  const gatewayCookies = new Set([ctx.cookie.name, ctx.cookie.loginName]);
  return async (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> => {
    socket.on('error', () => socket.destroy());
    try {
      const { route, path, query } = resolveRoute(routes, req.url ?? '/');
      if (route.token !== 'none' && req.headers.origin !== ctx.config.publicUrl) throw new GatewayError('csrf_required');
      const target = upstreamUrl(route, path, query);
      const auth = await authHeaders(ctx, await credentialsFor(ctx, route, req.headers), 'GET', target);
      const headers = upstreamRequestHeaders(req.headers, {
        trustProxy: ctx.config.trustProxy,
        removeCookies: gatewayCookies,
        remoteAddress: req.socket.remoteAddress,
        protocol: browserProtocol(req.headers, req.socket, ctx.config.trustProxy),
        tokenRoute: route.token !== 'none',
        authorization: auth.authorization,
        keepUpgrade: true,
      });
      if (route.token !== 'none') delete headers.dpop;
      if (auth.dpop) headers.dpop = auth.dpop;
      forwarder.upgrade(req, socket, head, { url: target, headers });
    } catch (err) {
      socket.end(rawHttpError(isGatewayError(err) ? err : new GatewayError('bad_gateway', { detail: (err as Error).message })));
    }
  };
}
