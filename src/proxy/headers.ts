/**
 * Header hygiene both ways.
 *
 * Requests: hop-by-hop headers and those nominated by `Connection` are removed, and so are the
 * framing headers (`Content-Length`, `Transfer-Encoding`), `Expect` and `Host`: the forwarder
 * sets framing and `Host` itself, so `Connection` nominating them changes nothing. Forwarding
 * headers are the gateway's own, built from `publicUrl` and what it observed: `X-Forwarded-Host`
 * is publicUrl's host, `X-Forwarded-Proto` its scheme (never the client's `Host` or claims),
 * `X-Forwarded-For` the peer — after the chain a trusted front (`trustProxy`) sent. Client-sent
 * `Forwarded`, `X-Real-IP`, `X-Forwarded-Host/-Prefix/-Port/...` never pass, trusted or not, and
 * neither do the other client-address, scheme, host and URL claims stacks commonly trust
 * (`True-Client-IP`, `CF-Connecting-IP`, `X-Original-URL`, `Front-End-Https`, ... see
 * CLIENT_CLAIMED) nor method overrides (`X-HTTP-Method-Override`, ...), which would bypass a
 * route's `methods`. Other identity headers (`X-Access-Token`, `X-Auth-Request-*`,
 * `X-Amzn-Oidc-*`, `X-User`, ...) never come from a browser; underscore spellings of any of them (`X_Forwarded_For`,
 * `x_access_token`), which some upstream stacks fold into the real name, are dropped; the
 * gateway's cookies are cut from `Cookie`; on token routes the browser's `Authorization` never
 * passes.
 *
 * Responses: hop-by-hop and nominated headers, the built-in list of token-carrying headers,
 * the operator's `scrub.responseHeaders`, any header whose value contains one of the session's
 * tokens, and `Set-Cookie` for the gateway's own cookie names are dropped.
 */
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { withoutCookies } from '../session/cookie.ts';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'proxy-authorization',
  'proxy-authenticate',
]);

/** Set by the forwarder from the request it accepted, never copied from the client. */
const FRAMING = new Set(['content-length', 'transfer-encoding', 'expect', 'host']);

const FORWARDING = new Set([
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
  'x-forwarded-prefix',
  'x-real-ip',
]);

/**
 * What frameworks, servers and CDNs commonly trust as the client's address, scheme, host or URL
 * when it comes from "their" front: client IPs (Akamai, Cloudflare, Fastly, Rack, ...), scheme
 * flags (`Front-End-Https`, `X-Url-Scheme`), host and URL overrides (`X-Host`, IIS/Symfony
 * `X-Original-URL`/`X-Rewrite-URL`, nginx `X-Original-URI`). The gateway is that front, and it
 * sets none of them, so none may pass.
 */
const CLIENT_CLAIMED = [
  'x-forwarded',
  'true-client-ip',
  'x-client-ip',
  'client-ip',
  'cf-connecting-ip',
  'fastly-client-ip',
  'x-cluster-client-ip',
  'x-original-forwarded-for',
  'x-remote-ip',
  'x-remote-addr',
  'x-originating-ip',
  'front-end-https',
  'x-url-scheme',
  'x-scheme',
  'x-host',
  'x-original-host',
  'x-original-url',
  'x-rewrite-url',
  'x-original-uri',
  'x-original-method',
];
/** Method overrides: not identity, but they would let a request bypass a route's `methods` rule. */
const METHOD_OVERRIDES = ['x-http-method-override', 'x-http-method', 'x-method-override'];

/**
 * Request headers only the gateway decides: framing, hop-by-hop, credentials, forwarding and the
 * client/scheme/host/URL and method claims other stacks trust. A route's `claimHeaders` may not
 * name one of them (src/authz/config.ts): a claim must never stand in for what they carry.
 */
export function isGatewayOwnedRequestHeader(name: string): boolean {
  return (
    FRAMING.has(name) ||
    HOP_BY_HOP.has(name) ||
    FORWARDING.has(name) ||
    name.startsWith('x-forwarded-') ||
    CLIENT_CLAIMED.includes(name) ||
    METHOD_OVERRIDES.includes(name) ||
    GATEWAY_CREDENTIALS.has(name)
  );
}

/** What carries credentials or a body's type: set by the gateway, or by the browser on purpose. */
const GATEWAY_CREDENTIALS = new Set(['cookie', 'authorization', 'proxy-authorization', 'dpop', 'content-type']);

/** Headers some upstreams treat as identity (or routing); nobody but the gateway may set them. */
const IDENTITY_PREFIXES = ['x-forwarded-', 'x-auth-request-', 'x-amzn-oidc-'];
const IDENTITY = new Set([
  ...FORWARDING,
  ...CLIENT_CLAIMED,
  ...METHOD_OVERRIDES,
  'authorization',
  'x-access-token',
  'x-id-token',
  'x-refresh-token',
  'x-real-ip',
  'x-user',
  'x-email',
]);

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

const NONE_NOMINATED: ReadonlySet<string> = new Set();

function nominated(headers: IncomingHttpHeaders): ReadonlySet<string> {
  const value = headers.connection;
  if (value === undefined) return NONE_NOMINATED;
  const names = new Set<string>();
  for (const part of [value].flat()) {
    for (const name of (part ?? '').split(',')) if (name.trim()) names.add(name.trim().toLowerCase());
  }
  return names;
}

function isIdentityName(name: string): boolean {
  return IDENTITY.has(name) || IDENTITY_PREFIXES.some((prefix) => name.startsWith(prefix));
}

/**
 * What the request rules do with a header name, whatever its value or the route: pass it,
 * drop it (framing, hop-by-hop, identity, also in its underscore spelling), or decide by the
 * route (`authorization`) or by `trustProxy` (`traceparent`, `tracestate`).
 */
const RequestName = { Pass: 0, Drop: 1, Authorization: 2, Trace: 3 } as const;
type RequestName = (typeof RequestName)[keyof typeof RequestName];

function classifyRequestName(name: string): RequestName {
  if (FRAMING.has(name) || HOP_BY_HOP.has(name)) return RequestName.Drop;
  if (name.includes('_') && isIdentityName(name.replace(/_/g, '-'))) return RequestName.Drop;
  if (name === 'authorization') return RequestName.Authorization;
  if (isIdentityName(name)) return RequestName.Drop;
  if (name === 'traceparent' || name === 'tracestate') return RequestName.Trace;
  return RequestName.Pass;
}

/**
 * Header names seen so far and their class: browsers send the same few dozen names, so each
 * costs one lookup instead of set and prefix checks. Bounded: names beyond it are classified
 * each time.
 */
const requestNameClasses = new Map<string, RequestName>();
const REQUEST_NAMES_KEPT = 2_000;
/** Longer names (no real header is) are classified each time: junk cannot fill the table. */
const REQUEST_NAME_KEPT_LENGTH = 48;

function requestNameClass(name: string): RequestName {
  let found = requestNameClasses.get(name);
  if (found === undefined) {
    found = classifyRequestName(name);
    if (requestNameClasses.size < REQUEST_NAMES_KEPT && name.length <= REQUEST_NAME_KEPT_LENGTH) requestNameClasses.set(name, found);
  }
  return found;
}

export interface RequestHeaderOptions {
  trustProxy: boolean;
  removeCookies: ReadonlySet<string>;
  remoteAddress: string | undefined;
  /** The origin browsers use: the only source of X-Forwarded-Host and -Proto. */
  publicUrl: URL;
  tokenRoute: boolean;
  authorization?: string;
  keepUpgrade?: boolean;
}

export function upstreamRequestHeaders(incoming: IncomingHttpHeaders, options: RequestHeaderOptions): Record<string, string | string[]> {
  const drop = nominated(incoming);
  const out: Record<string, string | string[]> = {};
  for (const name in incoming) {
    const value = incoming[name];
    // `upgrade` and `connection` are hop-by-hop: a WebSocket handshake gets them back below.
    if (value === undefined || drop.has(name)) continue;
    const kind = requestNameClass(name);
    if (kind === RequestName.Drop) continue;
    if (kind === RequestName.Authorization && options.tokenRoute) continue;
    // A browser must not pick the trace an upstream joins: only a trusted front's pass.
    if (kind === RequestName.Trace && !options.trustProxy) continue;
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
  const peer = options.remoteAddress ?? '';
  out['x-forwarded-for'] = priorFor && peer ? `${priorFor}, ${peer}` : priorFor || peer;
  out['x-forwarded-proto'] = options.publicUrl.protocol.slice(0, -1);
  out['x-forwarded-host'] = options.publicUrl.host;
  if (options.authorization) out.authorization = options.authorization;
  return out;
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
  for (const name in upstream) {
    const value = upstream[name];
    if (value === undefined || HOP_BY_HOP.has(name) || drop.has(name) || options.dropNames.has(name)) continue;
    if (name === 'set-cookie') {
      const kept = [value]
        .flat()
        .filter((line) => !options.gatewayCookies.has(setCookieName(line)) && !containsToken(line, options.tokens));
      if (kept.length > 0) out[name] = kept;
      continue;
    }
    if (options.tokens.length > 0 && containsToken(value, options.tokens)) continue;
    out[name] = value;
  }
  return out;
}

const NO_EXTRA_COOKIES: readonly string[] = [];

/** What the gateway puts on a proxied request for its credentials (credentials.ts `authHeaders`). */
export interface UpstreamAuth {
  authorization?: string;
  dpop?: string;
}

/**
 * Both directions' header rules for the proxied exchanges of one gateway, built once from its
 * configuration: what the HTTP proxy (handler.ts) and WebSocket upgrades (websocket.ts) share.
 */
export interface ExchangeHeaders {
  /** The gateway's own cookie names: cut from `Cookie`, never set by an upstream. */
  readonly gatewayCookies: ReadonlySet<string>;
  /**
   * The upstream request headers of one exchange: the hygiene above, the gateway's forwarding
   * headers, and on token routes the gateway's `Authorization` and `DPoP` proof in place of the
   * browser's (which never pass there).
   */
  request(
    req: IncomingMessage,
    exchange: { tokenRoute: boolean; auth: UpstreamAuth; keepUpgrade?: boolean },
  ): Record<string, string | string[]>;
  /** The response-header rules of an exchange that carried `tokens` (plus cookies of the gateway's own to set). */
  response(tokens: readonly string[], extraCookies?: readonly string[]): ResponseHeaderOptions & { extraCookies: readonly string[] };
}

export function exchangeHeaders(options: {
  trustProxy: boolean;
  publicUrl: string;
  gatewayCookies: readonly string[];
  scrubResponseHeaders: readonly string[];
}): ExchangeHeaders {
  const gatewayCookies: ReadonlySet<string> = new Set(options.gatewayCookies);
  const dropNames: ReadonlySet<string> = new Set([...TOKEN_RESPONSE_HEADERS, ...options.scrubResponseHeaders]);
  const publicUrl = new URL(options.publicUrl);
  return {
    gatewayCookies,
    request(req, { tokenRoute, auth, keepUpgrade }) {
      const headers = upstreamRequestHeaders(req.headers, {
        trustProxy: options.trustProxy,
        removeCookies: gatewayCookies,
        remoteAddress: req.socket.remoteAddress,
        publicUrl,
        tokenRoute,
        authorization: auth.authorization,
        keepUpgrade,
      });
      if (tokenRoute) delete headers.dpop;
      if (auth.dpop) headers.dpop = auth.dpop;
      return headers;
    },
    response: (tokens, extraCookies = NO_EXTRA_COOKIES) => ({ dropNames, gatewayCookies, tokens, extraCookies }),
  };
}
