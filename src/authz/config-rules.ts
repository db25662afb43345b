/**
 * Rules of the authorization keys that span sections (docs/authorization.md), checked once
 * the whole file is otherwise valid and reported with their YAML paths like any other problem.
 */
import type { z } from 'zod';
import type { forwardAuthSchema, identitySchema } from './config.ts';

/** Paths the gateway serves itself: a forward-auth or JWKS path must not shadow one. */
const AUTH_ENDPOINTS = new Set([
  '/auth/login',
  '/auth/callback',
  '/auth/user',
  '/auth/logout',
  '/auth/logout/continue',
  '/auth/backchannel-logout',
]);

interface RouteKeys {
  token: string;
  claimHeaders?: ReadonlyArray<{ header: string }> | undefined;
  identityAssertion?: unknown;
  forwardAuthToken?: boolean | undefined;
}

export interface IdentityKeys {
  routes: readonly RouteKeys[];
  identity: z.output<typeof identitySchema>;
  forwardAuth: z.output<typeof forwardAuthSchema>;
  csrf: { header: string };
  oidc: { dpopKey?: string | undefined };
}

export interface Problem {
  path: (string | number)[];
  message: string;
}

export function identityConfigProblems(config: IdentityKeys): Problem[] {
  const problems: Problem[] = [];
  const assertion = config.identity.assertion;
  const reservedByGateway = new Map<string, string>([[config.csrf.header, 'csrf.header']]);
  if (assertion) reservedByGateway.set(assertion.header, 'identity.assertion.header');

  config.routes.forEach((route, index) => {
    for (const { header } of route.claimHeaders ?? []) {
      const owner = reservedByGateway.get(header);
      if (owner) problems.push({ path: ['routes', index, 'claimHeaders', header], message: `is already ${owner}` });
    }
    if (route.identityAssertion && !assertion) {
      problems.push({ path: ['routes', index, 'identityAssertion'], message: 'needs identity.assertion (its signing keys)' });
    }
    if (route.forwardAuthToken) {
      if (route.token === 'none')
        problems.push({ path: ['routes', index, 'forwardAuthToken'], message: 'has no effect on token: none routes' });
      // The ingress would forward a bare token, which a DPoP-bound token is useless without.
      else if (config.oidc.dpopKey)
        problems.push({ path: ['routes', index, 'forwardAuthToken'], message: 'cannot hand out DPoP-bound tokens (oidc.dpop)' });
      else if (!config.forwardAuth.secret)
        problems.push({ path: ['routes', index, 'forwardAuthToken'], message: 'needs forwardAuth.secret' });
      else if (!config.forwardAuth.enabled)
        problems.push({ path: ['routes', index, 'forwardAuthToken'], message: 'needs forwardAuth.enabled' });
    }
  });
  if (AUTH_ENDPOINTS.has(config.forwardAuth.path))
    problems.push({ path: ['forwardAuth', 'path'], message: 'is already a gateway endpoint' });
  if (assertion?.jwksPath && (AUTH_ENDPOINTS.has(assertion.jwksPath) || assertion.jwksPath === config.forwardAuth.path)) {
    problems.push({ path: ['identity', 'assertion', 'jwksPath'], message: 'is already a gateway endpoint' });
  }
  return problems;
}
