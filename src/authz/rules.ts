/**
 * Route rules (`routes[].allow`), compiled once at start into plain predicates, so a request
 * pays one pass over a handful of claims and nothing else (docs/authorization.md#rules).
 *
 *   equals       the claim is one of the values (same type: `true` is not "true"); a list
 *                claim never equals a value, `contains` is for lists
 *   contains     the claim is a list holding one of the values; a single string claim counts
 *                as a list of one (IdPs send `roles: admin` when there is one role)
 *   emailDomain  the claim (default `email`) is an address at one of the domains, exactly
 *                (`a@sub.example.com` is not at `example.com`), case-insensitive; refused
 *                when the IdP says `email_verified: false`
 * A claim that is missing fails every operator.
 */
import { claimValue, type Claims } from './claims.ts';

export type Rule = (claims: Claims) => boolean;

/** A validated condition (config/schema.ts), as the frozen configuration holds it. */
export interface AllowCondition {
  readonly claim?: string | undefined;
  readonly equals?: readonly (string | number | boolean)[] | undefined;
  readonly contains?: readonly (string | number)[] | undefined;
  readonly emailDomain?: readonly string[] | undefined;
}

export interface AllowConfig {
  readonly anyOf?: readonly AllowCondition[] | undefined;
  readonly allOf?: readonly AllowCondition[] | undefined;
}

function listOf(value: unknown): unknown[] | undefined {
  if (Array.isArray(value)) return value;
  if (typeof value === 'string' || typeof value === 'number') return [value];
  return undefined;
}

function compileCondition(condition: AllowCondition): Rule {
  if (condition.emailDomain) {
    const name = condition.claim ?? 'email';
    const domains = new Set(condition.emailDomain);
    return (claims) => {
      const value = claimValue(claims, name);
      if (typeof value !== 'string') return false;
      if (name === 'email' && claims.email_verified === false) return false;
      const at = value.lastIndexOf('@');
      return at > 0 && domains.has(value.slice(at + 1).toLowerCase());
    };
  }
  const name = condition.claim as string;
  if (condition.contains) {
    const wanted = new Set<unknown>(condition.contains);
    return (claims) => listOf(claimValue(claims, name))?.some((item) => wanted.has(item)) ?? false;
  }
  const allowed = new Set<unknown>(condition.equals ?? []);
  return (claims) => allowed.has(claimValue(claims, name));
}

/** The route's rule, or undefined when the route has none (everyone with access passes). */
export function compileAllow(allow: AllowConfig | undefined): Rule | undefined {
  if (!allow) return undefined;
  const any = allow.anyOf?.map(compileCondition);
  const all = allow.allOf?.map(compileCondition);
  return (claims) => (any === undefined || any.some((rule) => rule(claims))) && (all === undefined || all.every((rule) => rule(claims)));
}
