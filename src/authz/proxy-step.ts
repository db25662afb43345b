/**
 * Authorization and upstream identity as a step of the proxy pipeline (src/proxy/pipeline.ts):
 *   onRoute        the client's own identity headers (every spelling) are removed from the
 *                  request, on every route, before anything reads or forwards them;
 *   onCredentials  the route's `allow` rules (401 without a session, 403 `forbidden`), then the
 *                  claim headers and the assertion, which the pipeline sets on the upstream
 *                  request. `none` and `client` routes read the session only when the route
 *                  has rules or identity headers.
 * Nothing here runs before the route is known, and the upstream is never contacted for a user
 * the rules refuse.
 */
import type { ProxyStep } from '../proxy/pipeline.ts';
import type { RequestSessions } from '../session/request-session.ts';
import type { IdentitySession, RouteIdentity } from './route-identity.ts';

export function identityStep(identity: RouteIdentity, requestSessions: Pick<RequestSessions, 'fromHeaders'>): ProxyStep {
  return {
    name: 'authorization',
    onRoute(exchange) {
      identity.names.strip(exchange.req.headers);
    },
    onCredentials(exchange) {
      const route = exchange.route;
      // Synchronous when the route has no rules and no identity headers: nothing to wait for.
      if (!route || !identity.usesSession(route)) return;
      return (async () => {
        let session: IdentitySession | undefined = exchange.credentials?.session;
        if (!session && (route.token === 'none' || route.token === 'client'))
          session = await requestSessions.fromHeaders(exchange.req.headers);
        identity.authorize(route, session);
        Object.assign(exchange.upstreamHeaders, await identity.headers(route, session));
      })();
    },
  };
}
