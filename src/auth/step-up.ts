/**
 * Step-up and freshness (docs/frontend.md#step-up): whether a session's login satisfies an
 * `acr`/`max_age` requirement, and the 401 step_up_required answer when it does not.
 *
 * The login's `acr` and `auth_time` are the ID token's claims, kept in the session record. A
 * requirement the session cannot be judged against (no `acr` claim, no `auth_time`) is unmet:
 * the next login asks for it explicitly, and then the IdP states it.
 *
 * `loginUrl` is relative and carries `acr_values`/`max_age` and the request's path as
 * `returnTo`, so an app can navigate to it as it is; bff-client replaces `returnTo` with the
 * page's own location, which is usually what a user wants to come back to.
 */
import { GatewayError } from '../errors.ts';
import type { StepUpChallenge } from './bearer-challenge.ts';
import { safeReturnTo } from './return-to.ts';

export interface AuthnRequirement {
  acr?: readonly string[];
  maxAgeS?: number;
}

/** Seconds the IdP's clock may be ahead of ours when `auth_time` is judged. */
export const AUTH_TIME_SKEW_S = 30;

/** The parts of `required` the login (its `acr` and `auth_time` claims) does not meet; undefined when all are met. */
export function unmetRequirement(
  claims: Readonly<Record<string, unknown>>,
  required: AuthnRequirement,
  nowMs: number,
): AuthnRequirement | undefined {
  const unmet: AuthnRequirement = {};
  if (required.acr && !(typeof claims.acr === 'string' && required.acr.includes(claims.acr))) unmet.acr = required.acr;
  if (required.maxAgeS !== undefined) {
    const authTime = claims.auth_time;
    const ageS = typeof authTime === 'number' && Number.isFinite(authTime) ? nowMs / 1000 - authTime : Infinity;
    if (ageS > required.maxAgeS + AUTH_TIME_SKEW_S) unmet.maxAgeS = required.maxAgeS;
  }
  return unmet.acr || unmet.maxAgeS !== undefined ? unmet : undefined;
}

/** The relative login URL that asks for `required`, coming back to `returnTo` (when it is a safe one). */
export function stepUpLoginUrl(required: AuthnRequirement, returnTo: string): string {
  const query = new URLSearchParams({ returnTo: safeReturnTo(returnTo) ?? '/' });
  if (required.acr && required.acr.length > 0) query.set('acr_values', required.acr.join(' '));
  if (required.maxAgeS !== undefined) query.set('max_age', String(required.maxAgeS));
  return `/auth/login?${query.toString().replace(/\+/g, '%20')}`;
}

export function stepUpRequired(required: AuthnRequirement, returnTo: string, detail: string): GatewayError {
  return new GatewayError('step_up_required', { detail, fields: { loginUrl: stepUpLoginUrl(required, returnTo) } });
}

/**
 * An upstream's RFC 9470 challenge as a requirement the gateway can ask for: only `acr` values
 * listed in `oidc.acrValues` are kept (a login asking for any other would be refused with 400).
 * Undefined when the challenge named only other values — the upstream's 401 then passes as it is.
 */
export function requirementFromChallenge(challenge: StepUpChallenge, allowedAcr: readonly string[]): AuthnRequirement | undefined {
  const acr = challenge.acrValues?.filter((value) => allowedAcr.includes(value));
  const required: AuthnRequirement = {};
  if (acr && acr.length > 0) required.acr = acr;
  if (challenge.maxAgeS !== undefined) required.maxAgeS = challenge.maxAgeS;
  if (required.acr || required.maxAgeS !== undefined) return required;
  // A bare challenge asks for "a better login" without saying which: a fresh one is the best we can ask for.
  return challenge.acrValues ? undefined : { maxAgeS: 0 };
}
