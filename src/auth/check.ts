/**
 * Forward-auth (docs/authorization.md#forward-auth): `GET /auth/check` (`forwardAuth.path`)
 * answers an ingress — nginx `auth_request`, Traefik `forwardAuth`, Envoy `ext_authz` (HTTP) —
 * whether the browser's request may pass:
 *   200  a valid session and the route's `allow` rules pass; the route's claim headers and
 *        assertion as response headers (for the ingress to copy upstream) and, on routes with
 *        `forwardAuthToken`, `Authorization: Bearer <token>` (fresh: refreshed single-flight,
 *        like a proxied request);
 *   401  `unauthenticated` (no session) or `session_expired`; 403 `forbidden` (rules, a path
 *        the gateway would refuse, or a missing `forwardAuth.secret`).
 * Which route applies comes from the original request: `X-Original-URI`/`X-Original-Method`
 * (nginx) or `X-Forwarded-Uri`/`X-Forwarded-Method` (Traefik) only with `trustProxy` — anyone
 * else could name a laxer route — else a path after the check path (`/auth/check/api/x`, as
 * Envoy's `path_prefix` sends it), else `/`. A path no route matches needs a session only.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { IdentitySession, RouteIdentity } from '../authz/route-identity.ts';
import type { GatewayConfig, RouteConfig } from '../config/load.ts';
import { GatewayError, isGatewayError } from '../errors.ts';
import type { CredentialSource } from '../proxy/credentials.ts';
import { resolveRoute, type RouteTable } from '../proxy/routes.ts';
import type { RequestSessions } from '../session/request-session.ts';
import type { Sessions } from '../session/sessions.ts';
import { sameSecret } from '../util/same-secret.ts';
import { routeStepUp } from './step-up-step.ts';

/** The header an ingress adds with `forwardAuth.secret`. */
export const FORWARD_AUTH_SECRET_HEADER = 'x-forward-auth-secret';

// HEAD comes with GET (fastify exposes it for every GET route).
const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

export interface CheckDeps {
  config: GatewayConfig;
  identity: RouteIdentity;
  routes: RouteTable;
  credentials: CredentialSource;
  requestSessions: RequestSessions;
  sessions: Sessions;
  now: () => number;
}

function single(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}

/** The original request's URI, as the ingress reports it (only when it is trusted). */
export function originalUri(request: Pick<FastifyRequest, 'headers' | 'url'>, checkPath: string, trustProxy: boolean): string {
  if (trustProxy) {
    const reported = single(request.headers['x-original-uri']) ?? single(request.headers['x-forwarded-uri']);
    if (reported) return reported;
  }
  const url = request.url;
  return url.startsWith(`${checkPath}/`) ? url.slice(checkPath.length) : '/';
}

function routeFor(routes: RouteTable, uri: string): RouteConfig | undefined {
  try {
    return resolveRoute(routes, uri).route;
  } catch (err) {
    if (isGatewayError(err) && err.code === 'not_found') return undefined;
    // A path the proxy would refuse is refused here too, as 403: an ingress treats anything but
    // 2xx, 401 and 403 as its own failure.
    throw new GatewayError('forbidden', { detail: `forward-auth: ${isGatewayError(err) ? err.detail : 'bad path'}` });
  }
}

export function registerForwardAuth(app: FastifyInstance, deps: CheckDeps): void {
  const { config, identity, routes, credentials, requestSessions, sessions, now } = deps;
  const { path, secret } = config.forwardAuth;

  const check = async (request: FastifyRequest) => {
    if (secret !== undefined && !sameSecret(secret, single(request.headers[FORWARD_AUTH_SECRET_HEADER]))) {
      throw new GatewayError('forbidden', { detail: 'forward-auth request without the forwardAuth.secret header' });
    }
    // The headers of the check request are the browser's, copied by the ingress: its own
    // identity headers never count.
    identity.names.strip(request.headers);
    const uri = originalUri(request, path, config.trustProxy);
    const route = routeFor(routes, uri);
    let session: IdentitySession | undefined;
    let accessToken: string | undefined;
    if (route && (route.token === 'user' || route.token === 'optional')) {
      const carried = await credentials.for(route, request.headers);
      session = carried.session;
      accessToken = carried.accessToken;
    } else {
      const found = await requestSessions.fromHeaders(request.headers);
      if (found) await sessions.touch(found).catch(() => {});
      session = found;
      if (found && route?.token === 'client' && route.forwardAuthToken)
        accessToken = (await credentials.for(route, request.headers)).accessToken;
    }
    if (!session) throw new GatewayError('unauthenticated');
    if (!route) return {};
    identity.authorize(route, session);
    // A route's step-up requirement holds behind an ingress as it does through the proxy.
    const stepUp = routeStepUp(route, session.record, uri, now());
    if (stepUp) throw stepUp;
    const headers = await identity.headers(route, session);
    if (route.forwardAuthToken && accessToken !== undefined) headers.authorization = `Bearer ${accessToken}`;
    return headers;
  };

  const handler = async (request: FastifyRequest, reply: import('fastify').FastifyReply) => {
    const headers = await check(request);
    for (const [name, value] of Object.entries(headers)) reply.header(name, value);
    return reply.code(200).send({ status: 'ok' });
  };
  app.route({ method: [...METHODS], url: path, handler });
  app.route({ method: [...METHODS], url: `${path}/*`, handler });
}
