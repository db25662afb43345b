/**
 * Loading a configuration file: read, interpolate `${VAR}`, parse YAML, validate, derive the
 * runtime shape, freeze. Every problem is reported with its YAML path
 * (`routes[1].upstream: must be a URL`) and all of them at once.
 */
import { readFile } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { interpolateEnv } from './interpolate.ts';
import { crossChecks, isLoopbackHost, rawConfigSchema, type RawConfig } from './schema.ts';

export type TokenMode = 'user' | 'optional' | 'none' | 'client';

export interface RouteConfig {
  readonly path: string;
  readonly upstream: URL;
  readonly token: TokenMode;
  readonly stripPrefix: boolean;
  readonly timeoutMs: number;
  readonly methods?: readonly string[];
  /** For `token: client` routes: the scope and resource (RFC 8707) of the client-credentials token. */
  readonly scopes?: readonly string[];
  readonly audience?: string;
}

export interface RedisConfig {
  readonly url?: string;
  readonly cluster?: readonly string[];
  readonly sentinel?: { readonly name: string; readonly nodes: readonly string[]; readonly password?: string };
  readonly keyPrefix: string;
  readonly commandTimeoutMs: number;
}

export interface LimitsConfig {
  /** The request line and headers must arrive within this. */
  readonly headersTimeoutMs: number;
  /** The whole request, body included. */
  readonly requestTimeoutMs: number;
  /** Longest silence between two pieces of a request body. */
  readonly bodyIdleTimeoutMs: number;
  /** Idle client connections are closed after this. */
  readonly keepAliveTimeoutMs: number;
  /** Request-body bytes buffered at once (401-replay buffers), all requests together. */
  readonly maxBufferedBytes: number;
  /** Proxied requests in flight at once per client address. */
  readonly perClientRequests: number;
  /** Connections per upstream origin and pool. */
  readonly upstreamConnections: number;
}

export interface GatewayConfig {
  readonly listen: { readonly host: string; readonly port: number };
  /** The public origin, without a trailing slash: `https://app.example.com`. */
  readonly publicUrl: string;
  readonly trustProxy: boolean;
  readonly shutdownGraceMs: number;
  readonly limits: LimitsConfig;
  readonly admin?: { readonly host: string; readonly port: number; readonly token?: string };
  readonly oidc: {
    readonly issuer: string;
    readonly clientId: string;
    readonly clientSecret?: string;
    readonly clientAuth: 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt' | 'auto';
    readonly privateKey?: string;
    readonly scopes: readonly string[];
    readonly authParams: Readonly<Record<string, string>>;
    readonly postLogoutRedirect: string;
    readonly timeoutMs: number;
    readonly par: boolean;
    /** The DPoP signing key (PEM or JWK) when `oidc.dpop` is on: `dpop.key`, else `privateKey`. */
    readonly dpopKey?: string;
    readonly fetchUserinfo: boolean;
  };
  readonly session: {
    readonly store: 'redis' | 'memory';
    readonly redis: RedisConfig;
    readonly cookieName: string;
    /** The login-transaction cookie's name, derived from the same Secure rule. */
    readonly loginCookieName: string;
    readonly secureCookie: boolean;
    readonly sameSite: 'strict' | 'lax';
    readonly secrets: readonly string[];
    readonly encryptionKeys: readonly Buffer[];
    readonly idleTimeoutMs: number;
    readonly absoluteTimeoutMs: number;
  };
  readonly tokens: { readonly refreshBeforeExpiryMs: number; readonly retryOn401: boolean };
  readonly csrf: { readonly header: string };
  readonly scrub: { readonly responseHeaders: readonly string[]; readonly bodies: boolean };
  readonly routes: readonly RouteConfig[];
}

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** `['routes', 1, 'upstream']` -> `routes[1].upstream` */
export function formatPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((out, key) => {
    if (typeof key === 'number') return `${out}[${key}]`;
    return out ? `${out}.${String(key)}` : String(key);
  }, '');
}

type Issue = z.core.$ZodIssue;

/**
 * A failed union (e.g. "a secret or a list of secrets") reports one branch per alternative;
 * the useful one is the branch whose complaint is not merely "wrong type".
 */
function unionBranch(issue: Issue & { code: 'invalid_union' }): Issue[] {
  const branches = issue.errors ?? [];
  const specific = branches.find((branch) => branch.length > 0 && !branch.some((inner) => inner.code === 'invalid_type' && inner.path.length === 0));
  if (specific) return specific.map((inner) => ({ ...inner, path: [...issue.path, ...inner.path] }) as Issue);
  // No branch got past the type check: the union's own message says what is expected.
  const missing = issue.input === undefined || issue.input === null;
  return [{ code: 'custom', path: issue.path, message: missing ? 'is required' : issue.message } as Issue];
}

const TYPE_NAMES: Record<string, string> = { string: 'a string', number: 'a number', boolean: 'true or false', array: 'a list', object: 'a mapping' };

function typeMessage(issue: Issue & { code: 'invalid_type' }): string {
  if (issue.input === undefined || issue.input === null) return 'is required';
  // A message set on the schema (e.g. "must be a port number") beats the generic one.
  if (!issue.message.startsWith('Invalid input')) return issue.message;
  return `must be ${TYPE_NAMES[issue.expected] ?? issue.expected}`;
}

function zodProblems(issues: readonly Issue[]): string[] {
  const problems: string[] = [];
  for (const issue of issues) {
    if (issue.code === 'invalid_union') {
      problems.push(...zodProblems(unionBranch(issue)));
      continue;
    }
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) problems.push(`${formatPath([...issue.path, key])}: unknown key`);
      continue;
    }
    const path = formatPath(issue.path) || '(root)';
    const message = issue.code === 'invalid_type' ? typeMessage(issue) : issue.message;
    problems.push(`${path}: ${message}`);
  }
  return problems;
}

function decodeKey(text: string): Buffer {
  return Buffer.from(text.trim().replace(/-/g, '+').replace(/_/g, '/'), 'base64');
}

function derive(raw: RawConfig): GatewayConfig {
  const publicUrl = new URL(raw.publicUrl);
  // Browsers honour Secure cookies on http://localhost, so the contract asks for them there too.
  const secureCookie = publicUrl.protocol === 'https:' || publicUrl.hostname === 'localhost';
  const redis = raw.session.redis ?? { keyPrefix: 'bff:', commandTimeout: 1000 };
  const hasTarget = redis.url !== undefined || redis.cluster !== undefined || redis.sentinel !== undefined;
  return {
    listen: raw.listen,
    publicUrl: publicUrl.origin,
    trustProxy: raw.trustProxy,
    shutdownGraceMs: raw.shutdownGrace,
    limits: {
      headersTimeoutMs: raw.limits.headersTimeout,
      requestTimeoutMs: raw.limits.requestTimeout,
      bodyIdleTimeoutMs: raw.limits.bodyIdleTimeout,
      keepAliveTimeoutMs: raw.limits.keepAliveTimeout,
      maxBufferedBytes: raw.limits.maxBufferedBytes,
      perClientRequests: raw.limits.perClientRequests,
      upstreamConnections: raw.limits.upstreamConnections,
    },
    admin: raw.admin,
    oidc: {
      issuer: raw.oidc.issuer,
      clientId: raw.oidc.clientId,
      clientSecret: raw.oidc.clientSecret,
      clientAuth: raw.oidc.clientAuth ?? 'auto',
      privateKey: raw.oidc.privateKey,
      scopes: raw.oidc.scopes,
      authParams: raw.oidc.authParams,
      postLogoutRedirect: raw.oidc.postLogoutRedirect,
      timeoutMs: raw.oidc.timeout,
      par: raw.oidc.par,
      dpopKey: raw.oidc.dpop === false ? undefined : raw.oidc.dpop === true ? raw.oidc.privateKey : raw.oidc.dpop.key,
      fetchUserinfo: raw.oidc.fetchUserinfo,
    },
    session: {
      store: raw.session.store,
      redis: {
        url: hasTarget ? redis.url : 'redis://127.0.0.1:6379/0',
        cluster: redis.cluster,
        sentinel: redis.sentinel,
        keyPrefix: redis.keyPrefix,
        commandTimeoutMs: redis.commandTimeout,
      },
      cookieName: raw.session.cookieName ?? (secureCookie ? '__Host-Http-bff-session' : 'bff-session'),
      loginCookieName: secureCookie ? '__Host-bff-login' : 'bff-login',
      secureCookie,
      sameSite: raw.session.sameSite,
      secrets: raw.session.secret,
      encryptionKeys: raw.session.encryptionKey.map(decodeKey),
      idleTimeoutMs: raw.session.idleTimeout,
      absoluteTimeoutMs: raw.session.absoluteTimeout,
    },
    tokens: { refreshBeforeExpiryMs: raw.tokens.refreshBeforeExpiry, retryOn401: raw.tokens.retryOn401 },
    csrf: { header: raw.csrf.header.toLowerCase() },
    scrub: { responseHeaders: raw.scrub.responseHeaders.map((h) => h.toLowerCase()), bodies: raw.scrub.bodies },
    routes: raw.routes.map((route) => ({
      path: route.path,
      upstream: new URL(route.upstream),
      token: route.token,
      stripPrefix: route.stripPrefix,
      timeoutMs: route.timeout,
      methods: route.methods,
      scopes: route.scopes,
      audience: route.audience,
    })),
  };
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Buffer.isBuffer(value) && !(value instanceof URL) && !Object.isFrozen(value)) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

/** Validates an already-parsed configuration object. Throws ConfigError with every problem. */
export function buildConfig(input: unknown, missingVariables: readonly string[] = []): GatewayConfig {
  // `reportInput` lets a problem tell "missing" from "wrong type"; inputs are never printed.
  const parsed = rawConfigSchema.safeParse(input ?? {}, { reportInput: true });
  const problems = parsed.success ? crossChecks(parsed.data).map((i) => `${formatPath(i.path)}: ${i.message}`) : zodProblems(parsed.error.issues);
  if (problems.length > 0) {
    for (const name of missingVariables) problems.push(`environment variable ${name} is not set (referenced as \${${name}})`);
    throw new ConfigError(problems);
  }
  return deepFreeze(derive((parsed as { data: RawConfig }).data));
}

/** Parses YAML text (after `${VAR}` interpolation) into a validated configuration. */
export function parseConfigText(text: string, env: NodeJS.ProcessEnv = process.env): GatewayConfig {
  const { text: interpolated, missing } = interpolateEnv(text, env);
  const document = parseDocument(interpolated, { prettyErrors: true, uniqueKeys: true });
  if (document.errors.length > 0) {
    throw new ConfigError(document.errors.map((err) => `YAML: ${err.message.split('\n')[0]}`));
  }
  return buildConfig(document.toJS(), missing);
}

export async function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): Promise<GatewayConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`${file}: cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
  return parseConfigText(text, env);
}

export { isLoopbackHost };
