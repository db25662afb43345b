/**
 * Step-up on proxied requests (docs/frontend.md#step-up), in two places:
 * - before forwarding (a pipeline step, after the session is known): a route's `require`
 *   (acr values, max age) that the session's login does not meet is a 401 step_up_required,
 *   and the upstream is not contacted;
 * - after the upstream answered 401 with an RFC 9470 challenge
 *   (`Bearer error="insufficient_user_authentication"`): the same 401 step_up_required, with
 *   the acr values / max age the upstream asked for, instead of the upstream's opaque 401.
 * `returnTo` in the answer's `loginUrl` is the request's own path and query.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { GatewayConfig, RouteConfig } from '../config/load.ts';
import type { GatewayError } from '../errors.ts';
import type { ProxyStep } from '../proxy/pipeline.ts';
import type { SessionRecord } from '../session/sessions.ts';
import { stepUpChallenge } from './bearer-challenge.ts';
import { requirementFromChallenge, stepUpRequired, unmetRequirement } from './step-up.ts';

/** The step-up error when `route.require` is not met by the session's login; undefined when it is (or the route has none). */
export function routeStepUp(
  route: RouteConfig,
  record: SessionRecord | undefined,
  requestUrl: string,
  now: number,
): GatewayError | undefined {
  if (!route.require || !record) return undefined;
  const unmet = unmetRequirement(record.claims, route.require, now);
  return unmet && stepUpRequired(unmet, requestUrl, `route ${route.path} requires a stronger or more recent login`);
}

/** The step-up error for an upstream 401 carrying an RFC 9470 challenge; undefined for any other answer. */
export function upstreamStepUp(oidc: GatewayConfig['oidc'], headers: IncomingHttpHeaders, requestUrl: string): GatewayError | undefined {
  const challenge = stepUpChallenge(headers['www-authenticate']);
  const required = challenge && requirementFromChallenge(challenge, oidc.acrValues);
  return required && stepUpRequired(required, requestUrl, 'upstream asked for a stronger or more recent login (RFC 9470)');
}

/** The proxy pipeline step that applies `routes[].require` (see proxy/pipeline.ts). */
export function stepUpStep(now: () => number): ProxyStep {
  return {
    name: 'step-up',
    onCredentials(exchange) {
      if (!exchange.route?.require) return;
      const error = routeStepUp(exchange.route, exchange.credentials?.session?.record, exchange.req.url ?? '/', now());
      if (error) throw error;
    },
  };
}
