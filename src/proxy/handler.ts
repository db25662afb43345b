/**
 * Every request that is not an /auth endpoint: the proxy's data flow, in order.
 *
 *   normalise path -> match route -> method rule -> CSRF (token routes) -> session (one store
 *   read) -> fresh token (refresh/ when needed) -> forward -> [401 use_dpop_nonce: replay once
 *   with the nonce] -> [401 invalid_token: refresh once, replay once] -> header hygiene + body
 *   scrubbing -> browser
 *
 * Bodies stream through untouched, except when a replay may be needed: then a body of at most
 * 1 MiB with a declared length is buffered first (contract section 5). The fastify reply is
 * hijacked before forwarding, so everything after that point writes the raw response itself.
 */
import type { IncomingMessage } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { RouteConfig } from '../config/load.ts';
import type { GatewayContext } from '../context.ts';
import { GatewayError, isGatewayError, writeRawError } from '../errors.ts';
import { passesCsrf } from '../auth/csrf.ts';
import { cookieMaxAge } from '../session/request-session.ts';
import { authHeaders, credentialsFor } from './credentials.ts';
import type { Forwarder } from './forward.ts';
import { browserProtocol, TOKEN_RESPONSE_HEADERS, upstreamRequestHeaders } from './headers.ts';
import { respond } from './respond.ts';
import { normalisePath, upstreamUrl, type RouteTable } from './routes.ts';

export const REPLAY_BODY_LIMIT = 1024 * 1024;
const INVALID_TOKEN = /\b(?:bearer|dpop)\b[^,]*?\berror\s*=\s*"?invalid_token"?/i;
// RFC 9449 section 9: the resource server wants a nonce in the proof.
const USE_DPOP_NONCE = /\bdpop\b[^,]*?\berror\s*=\s*"?use_dpop_nonce"?/i;
const SCRUBBABLE_ENCODINGS = new Set(['gzip', 'x-gzip', 'deflate', 'br', 'identity']);

export interface ProxyDeps {
  ctx: GatewayContext;
  routes: RouteTable;
  forwarder: Forwarder;
}

/** Splits `request.url` into path and raw query (without the `?`). */
export function splitUrl(url: string): { path: string; query: string } {
  const index = url.indexOf('?');
  return index === -1 ? { path: url, query: '' } : { path: url.slice(0, index), query: url.slice(index + 1) };
}

/** Resolves the route for a raw URL, or throws the contract error. */
export function resolveRoute(routes: RouteTable, rawUrl: string): { route: RouteConfig; path: string; query: string } {
  const { path: rawPath, query } = splitUrl(rawUrl);
  const normalised = normalisePath(rawPath);
  if (!normalised.ok) throw new GatewayError('invalid_request', { message: 'The request path is not acceptable.', detail: normalised.reason });
  const route = routes.match(normalised.path);
  if (!route) throw new GatewayError('not_found');
  return { route, path: normalised.path, query };
}

function hasBody(headers: IncomingMessage['headers']): boolean {
  return headers['transfer-encoding'] !== undefined || (headers['content-length'] !== undefined && headers['content-length'] !== '0');
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Only encodings the scrubber can decode may be offered upstream when a body will be scrubbed. */
function scrubbableAcceptEncoding(value: string | string[] | undefined): string | undefined {
  const kept = [value]
    .flat()
    .join(',')
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part && SCRUBBABLE_ENCODINGS.has(part.split(';')[0]?.trim().toLowerCase() ?? ''));
  return kept.length > 0 ? kept.join(', ') : undefined;
}

export function createProxyHandler({ ctx, routes, forwarder }: ProxyDeps) {
  const { config } = ctx;
  const dropNames = new Set([...TOKEN_RESPONSE_HEADERS, ...config.scrub.responseHeaders]);
  const gatewayCookies = new Set([ctx.cookie.name, ctx.cookie.loginName]);

  return async function proxy(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const { route, path, query } = resolveRoute(routes, request.raw.url ?? '/');
    (request as { bffRoute?: string }).bffRoute = route.path;
    if (route.methods && !route.methods.includes(request.method)) throw new GatewayError('method_not_allowed');

    const tokenRoute = route.token !== 'none';
    if (tokenRoute && !passesCsrf(request.headers, config)) throw new GatewayError('csrf_required');
    const credentials = await credentialsFor(ctx, route, request.headers);

    // A 401 can be answered with a replay only if the body can be sent twice: buffer it when
    // it is small and of declared length; anything else streams and is not replayed.
    const replayable = credentials.accessToken !== undefined && config.tokens.retryOn401;
    const contentLength = Number(request.headers['content-length'] ?? 0);
    const bufferBody = replayable && hasBody(request.headers) && request.headers['transfer-encoding'] === undefined && contentLength <= REPLAY_BODY_LIMIT;
    const canReplay = replayable && (!hasBody(request.headers) || bufferBody);
    const body = bufferBody ? await readBody(request.raw) : undefined;

    reply.hijack();
    const res = reply.raw;
    const scrubbing = config.scrub.bodies && credentials.accessToken !== undefined;
    const target = upstreamUrl(route, path, query);
    const headersFor = async () => {
      const auth = await authHeaders(ctx, credentials, request.method, target);
      const headers = upstreamRequestHeaders(request.headers, {
        trustProxy: config.trustProxy,
        removeCookies: gatewayCookies,
        remoteAddress: request.raw.socket.remoteAddress,
        protocol: browserProtocol(request.headers, request.raw.socket, config.trustProxy),
        tokenRoute,
        authorization: auth.authorization,
      });
      if (tokenRoute) delete headers.dpop;
      if (auth.dpop) headers.dpop = auth.dpop;
      if (scrubbing) {
        const accept = scrubbableAcceptEncoding(request.headers['accept-encoding']);
        if (accept) headers['accept-encoding'] = accept;
        else delete headers['accept-encoding'];
      }
      return headers;
    };
    const send = async () => {
      const headers = await headersFor();
      const started = performance.now();
      return forwarder.send(request.raw, res, { url: target, headers, timeoutMs: route.timeoutMs, body, resendable: !hasBody(request.headers) || body !== undefined }).finally(() => {
        ctx.metrics.upstreamDuration.observe({ route: route.path }, (performance.now() - started) / 1000);
      });
    };

    try {
      let upstream = await send();
      const challenge = () => String(upstream.headers['www-authenticate'] ?? '');
      if (canReplay && credentials.dpop && upstream.statusCode === 401 && USE_DPOP_NONCE.test(challenge()) && ctx.idp.dpop?.rememberNonce(target, upstream.headers['dpop-nonce'])) {
        upstream.resume();
        upstream = await send();
      }
      if (canReplay && upstream.statusCode === 401 && INVALID_TOKEN.test(challenge())) {
        upstream.resume();
        await credentials.retry();
        upstream = await send();
      }
      // A resource server may rotate its nonce on any answer (RFC 9449 section 9).
      if (credentials.dpop) ctx.idp.dpop?.rememberNonce(target, upstream.headers['dpop-nonce']);
      const { session } = credentials;
      const extraCookies = session?.renewCookie ? [ctx.cookie.sessionSetCookie(session.id, cookieMaxAge(ctx, session))] : [];
      respond(res, upstream, { dropNames, gatewayCookies, tokens: credentials.tokens(), scrub: config.scrub.bodies, extraCookies });
    } catch (err) {
      const error = isGatewayError(err) ? err : new GatewayError('bad_gateway', { detail: (err as Error).message, cause: err });
      if (error.code !== 'bad_gateway' || error.message !== 'client closed the connection') {
        request.log[error.status >= 500 ? 'warn' : 'info']({ code: error.code, detail: error.message, route: route.path }, 'proxy request failed');
      }
      const clearCookie: Record<string, string> = error.code === 'session_expired' ? { 'set-cookie': ctx.cookie.sessionClearCookie() } : {};
      if (!writeRawError(res, error, clearCookie)) res.destroy();
    }
  };
}
