/**
 * The configuration, stated once: one zod schema whose input side is the YAML file (exported
 * as JSON Schema, `config/schema.json`, for editors) and whose output side is the runtime shape
 * the rest of the gateway reads (`GatewayConfig` is inferred from it). Renames and derivations
 * (`timeout` -> `timeoutMs`, `dpop` -> `dpopKey`, cookie names from publicUrl) are transforms
 * next to the field they come from, so each key and each rule has one home.
 *
 * Objects are strict, so unknown keys are errors; zod collects every problem in one pass, so
 * `check` reports them all at once. Rules live as close to their field as possible (a
 * section-level rule runs as soon as that section is valid); the one rule spanning sections
 * (cookie prefix vs publicUrl) runs in the final transform, once the whole file is valid.
 */
import { z } from 'zod';
import { parsePrivateKey } from '../util/private-key.ts';
import { allowSchema, claimHeadersSchema, forwardAuthSchema, identitySchema, routeAssertionSchema } from '../authz/config.ts';
import { identityConfigProblems } from '../authz/config-rules.ts';
import { parseDuration } from './duration.ts';

const DURATION_MESSAGE = 'must be a duration such as 500ms, 30s, 15m, 2h, 7d or a number of seconds';

const durationInput = z.union([z.string(), z.number()], { error: DURATION_MESSAGE });

function toMs(value: string | number, ctx: z.RefinementCtx): number {
  const ms = parseDuration(value);
  if (ms !== undefined) return ms;
  ctx.addIssue({ code: 'custom', message: DURATION_MESSAGE });
  return z.NEVER;
}

/** A duration in milliseconds, `fallback` when the key is absent. */
const duration = (fallback: string) => durationInput.default(fallback).transform(toMs);

/** A duration whose default depends on other keys: undefined when the key is absent. */
const optionalDuration = durationInput.optional().transform((value, ctx) => (value === undefined ? undefined : toMs(value, ctx)));

function tryUrl(value: string): URL | undefined {
  try {
    return new URL(value);
  } catch {
    return undefined;
  }
}

const httpUrl = z.string({ error: 'must be a URL' }).refine(
  (value) => {
    const url = tryUrl(value);
    return url?.protocol === 'http:' || url?.protocol === 'https:';
  },
  { message: 'must be a URL', abort: true },
);

/** Hosts that may use plain http (development and tests). */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * Whether cookies for this origin are `Secure`: https, and http://localhost too, because
 * browsers honour Secure cookies there (but not on 127.0.0.1 or [::1]).
 */
export function isSecureCookieOrigin(origin: string): boolean {
  const url = new URL(origin);
  return url.protocol === 'https:' || url.hostname === 'localhost';
}

/**
 * The issuer and the public origin carry authorization codes and cookies: https, except on
 * loopback. A field-level rule (not a cross-check) so it is reported with every other problem.
 */
const secureUrl = httpUrl.refine((value) => {
  const url = tryUrl(value);
  return !!url && (url.protocol === 'https:' || isLoopbackHost(url.hostname));
}, 'must be https (http is allowed only for localhost, 127.0.0.0/8 and [::1])');

/** The public origin, without a trailing slash: `https://app.example.com`. */
const publicUrl = secureUrl
  .refine((value) => {
    const url = tryUrl(value);
    return !!url && url.pathname === '/' && !url.search && !url.hash && !url.username && !url.password;
  }, 'must be an origin only (no path, query, fragment or credentials)')
  .transform((value) => new URL(value).origin);

const hostPort = (defaults: { host: string; port: number }) =>
  z.strictObject({
    host: z.string().min(1).default(defaults.host),
    port: z.coerce.number({ error: 'must be a port number' }).int().min(0).max(65535).default(defaults.port),
  });

/** At least 32 characters and not trivially guessable (e.g. one character repeated). */
const cookieSecret = z
  .string({ error: 'must be a string of at least 32 characters' })
  .min(32, { message: 'must be at least 32 characters', abort: true })
  .refine((value) => new Set(value).size >= 8, 'is too weak: use a random value (e.g. `openssl rand -base64 48`)');

/** Base64 or base64url text as bytes; undefined when it is neither. */
function decodeBase64(text: string): Buffer | undefined {
  const trimmed = text.trim();
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed)) return undefined;
  return Buffer.from(trimmed.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
}

/** Exactly 32 bytes, base64 or base64url: the AES-256-GCM key, decoded once here. */
const encryptionKey = z.string({ error: 'must be 32 bytes, base64-encoded' }).transform((value, ctx) => {
  const key = decodeBase64(value);
  if (key?.length === 32) return key;
  ctx.addIssue({ code: 'custom', message: 'must be 32 bytes, base64-encoded (e.g. `openssl rand -base64 32`)' });
  return z.NEVER;
});

const oneOrMany = <T extends z.ZodType>(item: T, error: string) =>
  z
    .union([item, z.array(item).min(1, 'must list at least one value')], { error })
    .transform((value) => (Array.isArray(value) ? value : [value]) as z.output<T>[]);

const relativePath = z
  .string()
  .refine((value) => /^\/(?![/\\])/.test(value) && !/[\s\\]/.test(value), 'must be a relative path starting with a single /');

const routePath = z
  .string()
  .refine(
    (value) => value.startsWith('/') && !value.includes('//') && !/[?#\s\\]/.test(value) && !/(^|\/)\.\.?(\/|$)/.test(value),
    'must be a path such as /api',
  )
  .transform((value) => (value.length > 1 ? value.replace(/\/+$/, '') : value));

const headerName = z.string().regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, 'must be a header name');

/** An `acr` value: printable, no space (a space separates values in `acr_values`). */
const acrValue = z.string().regex(/^[\x21-\x7e]{1,256}$/, 'must be an acr value without spaces');

/** A route's step-up requirement; `maxAge` becomes whole seconds, as `max_age` and `auth_time` count. */
const requirementSchema = z
  .strictObject({ acr: z.array(acrValue).min(1, 'must list at least one value').optional(), maxAge: optionalDuration })
  .refine((require) => require.acr !== undefined || require.maxAge !== undefined, 'must set acr, maxAge or both')
  .transform(({ acr, maxAge }): { acr?: string[]; maxAgeS?: number } => ({
    ...(acr ? { acr } : {}),
    ...(maxAge === undefined ? {} : { maxAgeS: Math.floor(maxAge / 1000) }),
  }));

/** Login parameters the browser may pass to GET /auth/login (docs/frontend.md). */
export const LOGIN_PARAMS = ['prompt', 'max_age', 'acr_values', 'login_hint', 'ui_locales'] as const;

const routeSchema = z
  .strictObject({
    path: routePath,
    upstream: httpUrl.refine((value) => {
      const url = tryUrl(value);
      return !!url && !url.search && !url.hash && !url.username && !url.password;
    }, 'must not carry a query, fragment or credentials'),
    token: z.enum(['user', 'optional', 'none', 'client'], { error: 'must be one of user, optional, none, client' }).default('user'),
    stripPrefix: z.boolean().default(false),
    timeout: duration('30s'),
    methods: z
      .array(z.string().regex(/^[A-Za-z]+$/, 'must be an HTTP method'))
      .min(1)
      .transform((list) => list.map((method) => method.toUpperCase()))
      .optional(),
    // For `token: client` routes and per-route tokens: the scope and resource (RFC 8707).
    scopes: z.array(z.string().min(1)).optional(),
    audience: z.string().min(1).optional(),
    // Who may use the route and what the upstream learns about the user (docs/authorization.md).
    allow: allowSchema.optional(),
    claimHeaders: claimHeadersSchema.optional(),
    identityAssertion: routeAssertionSchema,
    forwardAuthToken: z.boolean().optional(),
    // Step-up: the session's login must have one of these `acr` values and/or be this recent.
    require: requirementSchema.optional(),
  })
  .transform(({ upstream, timeout, ...route }) => ({ ...route, upstream: new URL(upstream), timeoutMs: timeout }));

/** A positive whole number (bytes, counts). */
const positiveInt = (fallback: number) =>
  z
    .number({ error: 'must be a positive whole number' })
    .int('must be a positive whole number')
    .positive('must be a positive whole number')
    .default(fallback);

/** Node's timers hold at most 2^31-1 ms; a longer deadline would silently fire after 1 ms. */
const MAX_TIMER_MS = 24 * 86_400_000;

/**
 * Deadlines and caps that keep one slow or greedy client from holding the gateway's
 * connections, memory or upstream sockets. Durations are checked against each other here:
 * Node refuses a headers deadline longer than the whole-request deadline.
 */
const limitsSchema = z
  .strictObject({
    /** The request line and headers must arrive within this. */
    headersTimeout: duration('10s'),
    /** The whole request, body included. */
    requestTimeout: duration('5m'),
    /** Longest silence between two pieces of a request body. */
    bodyIdleTimeout: duration('15s'),
    /** Idle client connections are closed after this. */
    keepAliveTimeout: duration('5s'),
    /** Longest time a browser may take no response bytes while the gateway has some to send. */
    sendIdleTimeout: duration('30s'),
    /** Request-body bytes buffered at once (401-replay buffers), all requests together. */
    maxBufferedBytes: positiveInt(32 * 1024 * 1024),
    /** Proxied requests in flight at once per client address. */
    perClientRequests: positiveInt(64),
    /** Connections per upstream origin and pool. */
    upstreamConnections: positiveInt(256),
    /** WebSockets open at once per client address (handshakes in progress included). */
    perClientWebSockets: positiveInt(32),
    /** A WebSocket (tunnel or relay) with no traffic either way for this long is closed. */
    webSocketIdleTimeout: duration('10m'),
  })
  .superRefine((limits, ctx) => {
    // A zero deadline would mean "none" to Node: every one of these must actually bound something.
    for (const key of ['headersTimeout', 'requestTimeout', 'bodyIdleTimeout', 'keepAliveTimeout', 'sendIdleTimeout'] as const) {
      if (limits[key] < 1) ctx.addIssue({ code: 'custom', path: [key], message: 'must be longer than 0' });
      else if (limits[key] > MAX_TIMER_MS) ctx.addIssue({ code: 'custom', path: [key], message: 'must be at most 24d' });
    }
    if (limits.webSocketIdleTimeout < 1) ctx.addIssue({ code: 'custom', path: ['webSocketIdleTimeout'], message: 'must be longer than 0' });
    else if (limits.webSocketIdleTimeout > MAX_TIMER_MS)
      ctx.addIssue({ code: 'custom', path: ['webSocketIdleTimeout'], message: 'must be at most 24d' });
    if (limits.headersTimeout > limits.requestTimeout) {
      ctx.addIssue({ code: 'custom', path: ['headersTimeout'], message: 'must not be longer than requestTimeout' });
    }
  })
  .transform((limits) => ({
    headersTimeoutMs: limits.headersTimeout,
    requestTimeoutMs: limits.requestTimeout,
    bodyIdleTimeoutMs: limits.bodyIdleTimeout,
    keepAliveTimeoutMs: limits.keepAliveTimeout,
    sendIdleTimeoutMs: limits.sendIdleTimeout,
    maxBufferedBytes: limits.maxBufferedBytes,
    perClientRequests: limits.perClientRequests,
    upstreamConnections: limits.upstreamConnections,
    perClientWebSockets: limits.perClientWebSockets,
    webSocketIdleTimeoutMs: limits.webSocketIdleTimeout,
  }));

const redisUrl = z.string().refine((value) => /^rediss?:\/\//.test(value), 'must be a redis:// or rediss:// URL');

/**
 * A sentinel's address: `redis://host[:26379]`, `rediss://` for TLS to the sentinels. The
 * sentinels' credentials and the data nodes' settings have their own keys, so a URL carrying
 * them would be ambiguous.
 */
const sentinelNodeUrl = redisUrl
  .refine((value) => !!tryUrl(value)?.hostname, { message: 'must be a redis:// or rediss:// URL with a host', abort: true })
  .refine((value) => {
    const url = tryUrl(value);
    return !!url && !url.username && !url.password;
  }, 'must not carry credentials: set sentinel.username/password for the sentinels, sentinel.primary.username/password for the data nodes')
  .refine((value) => {
    const url = tryUrl(value);
    return !!url && (url.pathname === '' || url.pathname === '/') && !url.search && !url.hash;
  }, 'must not carry a database number or options: set sentinel.primary.db');

/**
 * Sentinel mode: `name`, `nodes`, `username`, `password` (and `rediss://` in the node URLs) are
 * the sentinels'; `primary` is the data nodes' side, what `url` carries in standalone mode.
 */
const sentinelSchema = z
  .strictObject({
    name: z.string().min(1, 'must not be empty'),
    nodes: z.array(sentinelNodeUrl).min(1, 'must list at least one sentinel'),
    username: z.string().min(1, 'must not be empty').optional(),
    password: z.string().optional(),
    primary: z
      .strictObject({
        username: z.string().min(1, 'must not be empty').optional(),
        password: z.string().optional(),
        db: z
          .number({ error: 'must be a database number (0, 1, ...)' })
          .int('must be a database number (0, 1, ...)')
          .min(0, 'must be a database number (0, 1, ...)')
          .default(0),
        tls: z.boolean().default(false),
      })
      .optional(),
  })
  .superRefine((sentinel, ctx) => {
    // One TLS setting covers every sentinel connection.
    const schemes = new Set(sentinel.nodes.map((node) => node.slice(0, node.indexOf(':'))));
    if (schemes.size > 1) ctx.addIssue({ code: 'custom', path: ['nodes'], message: 'must all be redis:// or all rediss://' });
    if (sentinel.primary?.username && !sentinel.primary.password)
      ctx.addIssue({ code: 'custom', path: ['primary', 'password'], message: 'is required with primary.username' });
    if (sentinel.username && !sentinel.password) ctx.addIssue({ code: 'custom', path: ['password'], message: 'is required with username' });
  });

/** Without a `redis` block the store is a local Redis. */
const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379/0';

const redisSchema = z
  .strictObject({
    url: redisUrl.optional(),
    cluster: z.array(redisUrl).min(1, 'must list at least one seed node').optional(),
    sentinel: sentinelSchema.optional(),
    keyPrefix: z.string().default('bff:'),
    commandTimeout: duration('1s'),
  })
  .refine(
    (redis) => [redis.url, redis.cluster, redis.sentinel].filter((entry) => entry !== undefined).length === 1,
    'must set exactly one of url, cluster, sentinel',
  )
  .transform(({ commandTimeout, ...redis }) => ({ ...redis, commandTimeoutMs: commandTimeout }));

/** Which key signs DPoP proofs: `dpop.key`, else (`dpop: true`) `privateKey`; none when off. */
function dpopKeyOf(oidc: { dpop: boolean | { key: string }; privateKey?: string | undefined }): string | undefined {
  if (oidc.dpop === false) return undefined;
  return oidc.dpop === true ? oidc.privateKey : oidc.dpop.key;
}

const oidcSchema = z
  .strictObject({
    issuer: secureUrl,
    clientId: z.string().min(1, 'must not be empty'),
    clientSecret: z.string().optional(),
    scopes: z.array(z.string().min(1)).default(['openid', 'profile', 'email', 'offline_access']),
    authParams: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]).transform(String)).default({}),
    postLogoutRedirect: relativePath.default('/'),
    timeout: duration('10s'),
    // Unset means `auto`: client_secret_basic, or client_secret_post when it is the only method
    // the IdP advertises (decided at discovery). Either way a client secret is needed.
    clientAuth: z.enum(['client_secret_basic', 'client_secret_post', 'private_key_jwt']).optional(),
    privateKey: z.string().optional(),
    par: z.boolean().default(false),
    // `true` signs proofs with `privateKey`; `{ key }` names a dedicated key (PEM or JWK).
    dpop: z
      .union([z.boolean(), z.strictObject({ key: z.string().min(1, 'must not be empty') })], {
        error: 'must be true, false or { key: <PEM or JWK> }',
      })
      .default(false),
    fetchUserinfo: z.boolean().default(true),
    loginParams: z.array(z.enum(LOGIN_PARAMS, { error: `must be one of ${LOGIN_PARAMS.join(', ')}` })).default([...LOGIN_PARAMS]),
    // The acr values a login may ask for (`acr_values`), and routes and upstreams may demand.
    acrValues: z.array(acrValue).default([]),
  })
  .superRefine((oidc, ctx) => {
    const keyProblem = (text: string, path: string[], use: string) => {
      try {
        parsePrivateKey(text, 'RS256');
      } catch (err) {
        ctx.addIssue({ code: 'custom', path, message: `${(err as Error).message} (needed ${use})` });
      }
    };
    // Object-level rules run as soon as this section is valid, so they are reported together
    // with problems elsewhere in the file.
    if (oidc.clientAuth === 'private_key_jwt') {
      if (!oidc.privateKey) ctx.addIssue({ code: 'custom', path: ['privateKey'], message: 'is required for private_key_jwt' });
      else keyProblem(oidc.privateKey, ['privateKey'], 'for private_key_jwt');
    } else if (!oidc.clientSecret) {
      ctx.addIssue({ code: 'custom', path: ['clientSecret'], message: 'must not be empty' });
    }
    if (oidc.dpop === true && !oidc.privateKey) {
      ctx.addIssue({
        code: 'custom',
        path: ['dpop'],
        message: 'needs a key: set dpop.key or oidc.privateKey (every instance must hold the same key)',
      });
    }
    const dpopKey = dpopKeyOf(oidc);
    // With DPoP on oidc.privateKey, a private_key_jwt key was already checked above.
    if (dpopKey && !(oidc.dpop === true && oidc.clientAuth === 'private_key_jwt'))
      keyProblem(dpopKey, oidc.dpop === true ? ['privateKey'] : ['dpop', 'key'], 'for DPoP');
  })
  .transform(({ timeout, dpop, clientAuth, ...oidc }) => ({
    ...oidc,
    clientAuth: clientAuth ?? ('auto' as const),
    timeoutMs: timeout,
    /** The DPoP signing key (PEM or JWK) when `oidc.dpop` is on. */
    dpopKey: dpopKeyOf({ dpop, privateKey: oidc.privateKey }),
  }));

const DEFAULT_IDLE_TIMEOUT_MS = 2 * 3_600_000;

const sessionSchema = z
  .strictObject({
    store: z.enum(['redis', 'memory'], { error: 'must be redis or memory' }).default('redis'),
    redis: redisSchema.prefault({ url: DEFAULT_REDIS_URL }),
    cookieName: z
      .string()
      .regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, 'must be a valid cookie name')
      .optional(),
    sameSite: z.enum(['strict', 'lax'], { error: 'must be strict or lax' }).default('strict'),
    secret: oneOrMany(cookieSecret, 'must be a string of at least 32 characters, or a list of them'),
    encryptionKey: oneOrMany(encryptionKey, 'must be 32 bytes, base64-encoded, or a list of such keys'),
    // Default 2h, capped at absoluteTimeout: a default never makes an explicit setting invalid.
    idleTimeout: optionalDuration.meta({ description: 'Default 2h, or absoluteTimeout when that is shorter.' }),
    absoluteTimeout: duration('12h'),
    cache: z
      .strictObject({
        enabled: z.boolean().default(true).meta({
          description: 'Keep opened sessions in process, kept coherent across instances by the Redis change feed; off without Redis.',
        }),
        maxEntries: z.number().int().min(1).default(100_000),
        maxAge: duration('60s').meta({
          description: 'Upper bound on how long an entry is used without a store read, whatever the feed says.',
        }),
      })
      .prefault({}),
  })
  .superRefine((session, ctx) => {
    if (session.idleTimeout !== undefined && session.idleTimeout < 1000)
      ctx.addIssue({ code: 'custom', path: ['idleTimeout'], message: 'must be at least 1s' });
    if (session.absoluteTimeout < 1000) ctx.addIssue({ code: 'custom', path: ['absoluteTimeout'], message: 'must be at least 1s' });
    else if (session.idleTimeout !== undefined && session.absoluteTimeout < session.idleTimeout) {
      ctx.addIssue({ code: 'custom', path: ['absoluteTimeout'], message: 'must not be shorter than idleTimeout' });
    }
  })
  .transform(({ secret, encryptionKey: keys, idleTimeout, absoluteTimeout, cache, ...session }) => ({
    ...session,
    cache: { enabled: cache.enabled, maxEntries: cache.maxEntries, maxAgeMs: cache.maxAge },
    secrets: secret,
    encryptionKeys: keys,
    idleTimeoutMs: idleTimeout ?? Math.min(DEFAULT_IDLE_TIMEOUT_MS, absoluteTimeout),
    absoluteTimeoutMs: absoluteTimeout,
  }));

const routesSchema = z
  .array(routeSchema)
  .default([])
  .superRefine((routes, ctx) => {
    const seen = new Map<string, number>();
    routes.forEach((route, index) => {
      const earlier = seen.get(route.path);
      if (earlier !== undefined) ctx.addIssue({ code: 'custom', path: [index, 'path'], message: `duplicates routes[${earlier}].path` });
      seen.set(route.path, index);
      // A token is minted per route only for routes that carry one; on `none` the keys would
      // be silently ignored.
      if (route.token === 'none' && (route.audience !== undefined || route.scopes !== undefined)) {
        ctx.addIssue({
          code: 'custom',
          path: [index, route.audience !== undefined ? 'audience' : 'scopes'],
          message: 'has no effect on token: none routes',
        });
      }
      // Only a user route always has a session whose login can be judged.
      if (route.require && route.token !== 'user') ctx.addIssue({ code: 'custom', path: [index, 'require'], message: 'needs token: user' });
    });
  });

/** A `__Host-`/`__Secure-` cookie name: browsers reject it unless the cookie is Secure. */
const PREFIXED_COOKIE = /^__(?:Host|Secure)-/i;

export const configSchema = z
  .strictObject({
    listen: hostPort({ host: '0.0.0.0', port: 8080 }).prefault({}),
    publicUrl,
    trustProxy: z.boolean().default(false),
    shutdownGrace: duration('10s'),
    limits: limitsSchema.prefault({}),
    admin: hostPort({ host: '127.0.0.1', port: 9090 })
      .extend({ token: z.string().min(32, 'must be at least 32 characters').optional() })
      .optional(),
    oidc: oidcSchema,
    session: sessionSchema,
    tokens: z
      .strictObject({
        refreshBeforeExpiry: duration('30s'),
        retryOn401: z.boolean().default(true),
      })
      .prefault({})
      .transform((tokens) => ({ refreshBeforeExpiryMs: tokens.refreshBeforeExpiry, retryOn401: tokens.retryOn401 })),
    // Header names are matched case-insensitively: kept lower-case, as Node presents them.
    csrf: z
      .strictObject({
        header: z
          .string()
          .regex(/^[a-zA-Z0-9-]+$/, 'must be a header name')
          .default('x-csrf'),
      })
      .prefault({})
      .transform((csrf) => ({ header: csrf.header.toLowerCase() })),
    scrub: z
      .strictObject({
        responseHeaders: z.array(headerName).default([]),
        bodies: z.boolean().default(true),
      })
      .prefault({})
      .transform((scrub) => ({ responseHeaders: scrub.responseHeaders.map((name) => name.toLowerCase()), bodies: scrub.bodies })),
    routes: routesSchema,
    identity: identitySchema,
    forwardAuth: forwardAuthSchema,
  })
  // Runs once the whole file is otherwise valid: the session cookie's names and Secure flag
  // follow from publicUrl.
  .transform(({ shutdownGrace, session, ...config }, ctx) => {
    for (const { path, message } of identityConfigProblems(config)) ctx.addIssue({ code: 'custom', path, message });
    // A route's required acr must be one a login may ask for, or its step-up could never succeed.
    config.routes.forEach((route, index) => {
      const unknown = route.require?.acr?.find((acr) => !config.oidc.acrValues.includes(acr));
      if (unknown !== undefined)
        ctx.addIssue({ code: 'custom', path: ['routes', index, 'require', 'acr'], message: `${unknown} is not listed in oidc.acrValues` });
    });
    if (ctx.issues.length > 0) return z.NEVER;
    const secureCookie = isSecureCookieOrigin(config.publicUrl);
    if (!secureCookie && session.cookieName && PREFIXED_COOKIE.test(session.cookieName)) {
      ctx.addIssue({
        code: 'custom',
        path: ['session', 'cookieName'],
        message: 'a __Host-/__Secure- name needs a Secure cookie (publicUrl https or localhost)',
      });
      return z.NEVER;
    }
    return {
      ...config,
      shutdownGraceMs: shutdownGrace,
      session: {
        ...session,
        cookieName: session.cookieName ?? (secureCookie ? '__Host-Http-bff-session' : 'bff-session'),
        /** The login-transaction cookie's name, from the same Secure rule. */
        loginCookieName: secureCookie ? '__Host-bff-login' : 'bff-login',
        secureCookie,
      },
    };
  });

/** Arrays and plain objects read-only all the way down, as `buildConfig` freezes them. */
type DeepReadonly<T> = T extends Buffer | URL | ((...args: never[]) => unknown)
  ? T
  : T extends readonly (infer Item)[]
    ? readonly DeepReadonly<Item>[]
    : T extends object
      ? { readonly [Key in keyof T]: DeepReadonly<T[Key]> }
      : T;

/** The validated, derived configuration every module reads. */
export type GatewayConfig = DeepReadonly<z.output<typeof configSchema>>;
export type RouteConfig = GatewayConfig['routes'][number];
export type RedisConfig = GatewayConfig['session']['redis'];
export type LimitsConfig = GatewayConfig['limits'];
export type TokenMode = RouteConfig['token'];
