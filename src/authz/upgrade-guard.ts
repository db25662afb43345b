/**
 * WebSocket upgrades bypass the proxy pipeline, so the same two rules are applied to them here,
 * before the upgrade handler sees the request: the client's identity headers are removed (every
 * route), and a route with `allow` rules refuses a handshake without a session (401) or from a
 * user the rules refuse (403), with the gateway's raw JSON error. Claim headers and assertions
 * are not added to handshakes (docs/authorization.md#websockets).
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { GatewayError, isGatewayError, rawHttpError } from '../errors.ts';
import { resolveRoute, type RouteTable } from '../proxy/routes.ts';
import type { RequestSessions } from '../session/request-session.ts';
import type { RouteIdentity } from './route-identity.ts';

export interface UpgradeGuardDeps {
  identity: RouteIdentity;
  routes: RouteTable;
  requestSessions: Pick<RequestSessions, 'fromHeaders'>;
}

/** Resolves true when the upgrade may go on; otherwise it has answered and closed the socket. */
export function upgradeGuard({ identity, routes, requestSessions }: UpgradeGuardDeps) {
  return async function guard(req: IncomingMessage, socket: Duplex): Promise<boolean> {
    identity.names.strip(req.headers);
    let route: ReturnType<typeof resolveRoute>['route'];
    try {
      route = resolveRoute(routes, req.url ?? '/').route;
    } catch {
      // The upgrade handler answers unacceptable paths and unknown routes itself.
      return true;
    }
    try {
      if (identity.hasRules(route)) identity.authorize(route, await requestSessions.fromHeaders(req.headers));
      return true;
    } catch (err) {
      const error = isGatewayError(err) ? err : new GatewayError('session_store_unavailable', { cause: err });
      socket.on('error', () => socket.destroy());
      if (socket.writable) socket.end(rawHttpError(error));
      else socket.destroy();
      return false;
    }
  };
}
