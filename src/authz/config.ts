/**
 * The configuration keys of authorization and upstream identity (docs/authorization.md), as
 * zod schemas that config/schema.ts places into the file's schema:
 *   routes[].allow              who may use a route (claims of the session's user)
 *   routes[].claimHeaders       claims sent upstream as request headers
 *   routes[].identityAssertion  a signed JWT naming the user, for the upstream to verify
 *   routes[].forwardAuthToken   forward-auth answers for this route carry the access token
 *   identity.assertion          the assertion's header, keys, lifetime and claims
 *   forwardAuth                 the forward-auth endpoint for an ingress
 * Problems are reported with their YAML path, like every other key; unknown operators are
 * unknown keys of a strict object.
 */
import { isGatewayOwnedRequestHeader } from '../proxy/headers.ts';
import { z } from 'zod';
import { parseDuration } from '../config/duration.ts';
import { parsePrivateKey } from '../util/private-key.ts';

const oneOrMany = <T extends z.ZodType>(item: T, error: string) =>
  z
    .union([item, z.array(item).min(1, 'must list at least one value')], { error })
    .transform((value) => (Array.isArray(value) ? value : [value]) as z.output<T>[]);

const scalar = z.union([z.string(), z.number(), z.boolean()]);

const domain = z
  .string()
  .regex(/^@?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$/, 'must be a domain such as example.com')
  .transform((value) => value.replace(/^@/, '').toLowerCase());

const OPERATORS = ['equals', 'contains', 'emailDomain'] as const;

/**
 * One condition: a claim and exactly one operator. `emailDomain` reads the `email` claim unless
 * `claim` names another one.
 */
const conditionSchema = z
  .strictObject({
    claim: z.string().min(1, 'must not be empty').optional(),
    equals: oneOrMany(scalar, 'must be a string, number or boolean, or a list of them').optional(),
    contains: oneOrMany(z.union([z.string(), z.number()]), 'must be a string or number, or a list of them').optional(),
    emailDomain: oneOrMany(domain, 'must be a domain such as example.com, or a list of them').optional(),
  })
  .superRefine((condition, ctx) => {
    const used = OPERATORS.filter((operator) => condition[operator] !== undefined);
    if (used.length !== 1) {
      const message = `must have exactly one operator: ${OPERATORS.join(', ')}`;
      ctx.addIssue({ code: 'custom', path: used.length > 1 ? [used[1] as string] : [], message });
    }
    if (condition.claim === undefined && condition.emailDomain === undefined) {
      ctx.addIssue({ code: 'custom', path: ['claim'], message: 'is required' });
    }
  });

/** `anyOf`: at least one condition holds; `allOf`: every one does; both: both hold. */
export const allowSchema = z
  .strictObject({
    anyOf: z.array(conditionSchema).min(1, 'must list at least one condition').optional(),
    allOf: z.array(conditionSchema).min(1, 'must list at least one condition').optional(),
  })
  .refine((allow) => allow.anyOf !== undefined || allow.allOf !== undefined, 'must set anyOf, allOf or both');

const claimHeaderName = z
  .string()
  .regex(/^[A-Za-z0-9-]+$/, 'must be a header name of letters, digits and -')
  .transform((name) => name.toLowerCase())
  .refine((name) => !isGatewayOwnedRequestHeader(name), 'is a header the gateway sets or forbids itself');

/** `{ x-user-sub: sub, x-user-email: email }`: header name -> claim name. */
export const claimHeadersSchema = z
  .record(z.string(), z.string().min(1, 'must name a claim'))
  .superRefine((headers, ctx) => {
    const seen = new Set<string>();
    for (const name of Object.keys(headers)) {
      const parsed = claimHeaderName.safeParse(name);
      if (!parsed.success)
        ctx.addIssue({ code: 'custom', path: [name], message: parsed.error.issues[0]?.message ?? 'must be a header name' });
      else if (seen.has(parsed.data))
        ctx.addIssue({ code: 'custom', path: [name], message: 'duplicates another header name (names are case-insensitive)' });
      else seen.add(parsed.data);
    }
  })
  .refine((headers) => Object.keys(headers).length > 0, 'must map at least one header')
  .transform((headers) => Object.entries(headers).map(([header, claim]) => ({ header: header.toLowerCase(), claim })));

/** `true`, or the audience and claims of this route's assertion. */
export const routeAssertionSchema = z
  .union(
    [
      z.boolean(),
      z.strictObject({
        audience: z.string().min(1, 'must not be empty').optional(),
        claims: z.array(z.string().min(1)).optional(),
      }),
    ],
    { error: 'must be true, false or { audience, claims }' },
  )
  .transform((value) => (value === false ? undefined : value === true ? {} : value))
  .optional();

const DURATION_MESSAGE = 'must be a duration such as 30s or 2m';

/** Claims the assertion sets itself: a selected claim of the same name would be ambiguous. */
const ASSERTION_OWN_CLAIMS = new Set(['iss', 'sub', 'aud', 'iat', 'exp', 'nbf', 'jti']);

const assertionKey = z.string().superRefine((text, ctx) => {
  try {
    parsePrivateKey(text, 'RS256');
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

export const identitySchema = z
  .strictObject({
    assertion: z
      .strictObject({
        header: z
          .string()
          .regex(/^[A-Za-z0-9-]+$/, 'must be a header name')
          .default('x-identity-assertion')
          .transform((name) => name.toLowerCase()),
        // The first key signs; every key is published, so a rotation adds the new key first
        // and removes the old one once assertions signed by it have expired.
        keys: oneOrMany(assertionKey, 'must be a private key (PEM or JWK), or a list of them'),
        ttl: z.union([z.string(), z.number()]).default('60s'),
        issuer: z.string().min(1, 'must not be empty').optional(),
        claims: z.array(z.string().min(1)).default([]),
        jwksPath: z
          .string()
          .regex(/^\/[A-Za-z0-9._~/-]*$/, 'must be a path such as /.well-known/jwks.json')
          .optional(),
      })
      .superRefine((assertion, ctx) => {
        const ms = parseDuration(assertion.ttl);
        if (ms === undefined) ctx.addIssue({ code: 'custom', path: ['ttl'], message: DURATION_MESSAGE });
        else if (ms < 5_000 || ms > 3_600_000) ctx.addIssue({ code: 'custom', path: ['ttl'], message: 'must be between 5s and 1h' });
        assertion.claims.forEach((claim, index) => {
          if (ASSERTION_OWN_CLAIMS.has(claim))
            ctx.addIssue({ code: 'custom', path: ['claims', index], message: 'is set by the gateway itself' });
        });
      })
      .transform(({ ttl, ...assertion }) => ({ ...assertion, ttlMs: parseDuration(ttl) as number }))
      .optional(),
  })
  .prefault({});

/** The forward-auth endpoint (docs/authorization.md#forward-auth). */
export const forwardAuthSchema = z
  .strictObject({
    enabled: z.boolean().default(true),
    path: z
      .string()
      .regex(/^\/[A-Za-z0-9._~-]+(?:\/[A-Za-z0-9._~-]+)*$/, 'must be a path such as /auth/check')
      .default('/auth/check'),
    // A shared secret the ingress adds to every check request: without it, a check never
    // hands out an access token to whoever can reach the gateway directly.
    secret: z.string().min(32, 'must be at least 32 characters').optional(),
  })
  .prefault({});
