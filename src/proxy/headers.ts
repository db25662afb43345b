/**
 * Header hygiene both ways (contract section 6).
 *
 * Requests: hop-by-hop headers and those nominated by `Connection` are removed; client-sent
 * `X-Forwarded-*`/`Forwarded`/`X-Real-IP` are ignored unless `trustProxy`; other identity
 * headers (`X-Access-Token`, `X-Auth-Request-*`, `X-Amzn-Oidc-*`, `X-User`, ...) never come from
 * a browser; underscore spellings of any of them (`X_Forwarded_For`, `x_access_token`), which
 * some upstream stacks fold into the real name, are dropped; the gateway's cookies are cut from `Cookie`; on token routes
 * the browser's `Authorization` never passes.
 *
 * Responses: hop-by-hop and nominated headers, the built-in list of token-carrying headers,
 * the operator's `scrub.responseHeaders`, any header whose value contains one of the session's
 * tokens, and `Set-Cookie` for the gateway's own cookie names are dropped.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { withoutCookies } from '../session/cookie.ts';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-authenticate']);

const FORWARDING = new Set(['forwarded', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-forwarded-prefix', 'x-real-ip']);

/** Headers some upstreams treat as identity; nobody but the gateway may set them. */
const IDENTITY_PREFIXES = ['x-forwarded-', 'x-auth-request-', 'x-amzn-oidc-'];
const IDENTITY = new Set([...FORWARDING, 'authorization', 'x-access-token', 'x-id-token', 'x-refresh-token', 'x-real-ip', 'x-user', 'x-email']);

export const TOKEN_RESPONSE_HEADERS = [
  'authorization',
  'proxy-authorization',
  'x-access-token',
  'x-id-token',
  'x-refresh-token',
  'x-auth-request-access-token',
  'x-amzn-oidc-accesstoken',
  'x-forwarded-access-token',
];

function nominated(headers: IncomingHttpHeaders): Set<string> {
  const value = headers.connection;
  const names = new Set<string>();
  for (const part of [value].flat()) {
    for (const name of (part ?? '').split(',')) if (name.trim()) names.add(name.trim().toLowerCase());
  }
  return names;
}

function isIdentityName(name: string): boolean {
  return IDENTITY.has(name) || IDENTITY_PREFIXES.some((prefix) => name.startsWith(prefix));
}

export interface RequestHeaderOptions {
  trustProxy: boolean;
  removeCookies: ReadonlySet<string>;
  remoteAddress: string | undefined;
  /** The scheme the browser used, as far as the gateway can tell. */
  protocol: 'http' | 'https';
  tokenRoute: boolean;
  authorization?: string;
  keepUpgrade?: boolean;
}

export function upstreamRequestHeaders(incoming: IncomingHttpHeaders, options: RequestHeaderOptions): OutgoingHttpHeaders {
  const drop = nominated(incoming);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(incoming)) {
    // `Connection: Upgrade` nominates `Upgrade` itself; a WebSocket handshake needs both kept.
    if (options.keepUpgrade && (name === 'upgrade' || name === 'connection')) continue;
    if (value === undefined || drop.has(name) || HOP_BY_HOP.has(name)) continue;
    if (name.includes('_') && isIdentityName(name.replace(/_/g, '-'))) continue;
    if (FORWARDING.has(name)) {
      if (!options.trustProxy) continue;
    } else if (name !== 'authorization' && isIdentityName(name)) continue;
    if (name === 'authorization' && options.tokenRoute) continue;
    if (name === 'host') continue;
    out[name] = value;
  }
  if (options.keepUpgrade && incoming.upgrade) {
    out.connection = 'Upgrade';
    out.upgrade = incoming.upgrade;
  }
  const cookie = drop.has('cookie') ? undefined : withoutCookies(incoming.cookie, options.removeCookies);
  if (cookie === undefined) delete out.cookie;
  else out.cookie = cookie;

  const priorFor = options.trustProxy ? [incoming['x-forwarded-for']].flat().filter(Boolean).join(', ') : '';
  out['x-forwarded-for'] = [priorFor, options.remoteAddress ?? ''].filter(Boolean).join(', ');
  out['x-forwarded-proto'] = options.protocol;
  const host = options.trustProxy ? firstValue(incoming['x-forwarded-host']) ?? incoming.host : incoming.host;
  if (host) out['x-forwarded-host'] = host;
  if (options.authorization) out.authorization = options.authorization;
  return out;
}

/**
 * The scheme the browser used: what a trusted load balancer says in X-Forwarded-Proto, else
 * whether this connection itself is TLS.
 */
export function browserProtocol(headers: IncomingHttpHeaders, socket: object, trustProxy: boolean): 'http' | 'https' {
  if (trustProxy) {
    const forwarded = firstValue(headers['x-forwarded-proto'])?.toLowerCase();
    if (forwarded === 'https' || forwarded === 'http') return forwarded;
  }
  return 'encrypted' in socket ? 'https' : 'http';
}

function firstValue(value: string | string[] | undefined): string | undefined {
  const first = [value].flat()[0];
  return first?.split(',')[0]?.trim() || undefined;
}

export interface ResponseHeaderOptions {
  dropNames: ReadonlySet<string>;
  gatewayCookies: ReadonlySet<string>;
  tokens: readonly string[];
}

function setCookieName(line: string): string {
  return line.slice(0, Math.max(0, line.indexOf('='))).trim();
}

function containsToken(value: string | string[] | number, tokens: readonly string[]): boolean {
  const text = Array.isArray(value) ? value.join('\n') : String(value);
  // An empty string is in every value: it must never count as a token.
  return tokens.some((token) => token.length > 0 && text.includes(token));
}

export function browserResponseHeaders(upstream: IncomingHttpHeaders, options: ResponseHeaderOptions): OutgoingHttpHeaders {
  const drop = nominated(upstream);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(upstream)) {
    if (value === undefined || HOP_BY_HOP.has(name) || drop.has(name) || options.dropNames.has(name)) continue;
    if (name === 'set-cookie') {
      const kept = [value].flat().filter((line) => !options.gatewayCookies.has(setCookieName(line)) && !containsToken(line, options.tokens));
      if (kept.length > 0) out[name] = kept;
      continue;
    }
    if (options.tokens.length > 0 && containsToken(value, options.tokens)) continue;
    out[name] = value;
  }
  return out;
}
