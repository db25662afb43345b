/**
 * Every request that is not an /auth endpoint: the proxy's data flow, in order.
 *
 *   normalise path -> match route -> method rule -> per-client limit -> [steps: onRoute] ->
 *   CSRF (token routes) -> framing rule -> session (one store read) -> fresh token (refresh
 *   when needed) -> [steps: onCredentials] -> forward ->
 *   [401 use_dpop_nonce: replay once with the nonce] -> [401 invalid_token: refresh once,
 *   replay once] -> header hygiene + body scrubbing -> browser
 *
 * Bodies stream through untouched, except when a replay may be needed: then a body of at most
 * 1 MiB with a declared length is buffered first, within the shared buffer budget. The framing
 * rule and body deadlines are in request-body.ts. The handler works on Node's raw request and
 * response (pipeline.ts says where per-request steps plug in) and answers every failure itself
 * with the gateway's JSON error.
 */
import type { IncomingMessage } from 'node:http';
import type { GatewayConfig } from '../config/load.ts';
import { errorLogFields, GatewayError, isGatewayError, writeRawError } from '../errors.ts';
import { passesCsrf } from '../auth/csrf.ts';
import type { IdpClient } from '../oidc/client.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { SessionCookie } from '../session/cookie.ts';
import type { RequestSessions } from '../session/request-session.ts';
import { ClientLimit, clientAddress } from './client-limit.ts';
import type { CredentialSource } from './credentials.ts';
import type { Forwarder, UpstreamResponse } from './forward.ts';
import { exchangeHeaders } from './headers.ts';
import { BufferBudget, bodyWithIdleDeadline, readBody, REPLAY_BODY_LIMIT, requestFraming } from './request-body.ts';
import type { ProxyExchange, ProxyStep } from './pipeline.ts';
import { respond, type RespondOptions } from './respond.ts';
import { bodyEncoding } from './scrub.ts';
import { upstreamStepUp } from '../auth/step-up-step.ts';
import { resolveRoute, upstreamUrl, type RouteTable } from './routes.ts';

const INVALID_TOKEN = /\b(?:bearer|dpop)\b[^,]*?\berror\s*=\s*"?invalid_token"?/i;
// RFC 9449 section 9: the resource server wants a nonce in the proof.
const USE_DPOP_NONCE = /\bdpop\b[^,]*?\berror\s*=\s*"?use_dpop_nonce"?/i;
/** Methods a request may be repeated with (RFC 9110 section 9.2.2): safe to resend on a stale socket. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);
const NO_COOKIES: readonly string[] = [];

export interface ProxyDeps {
  config: GatewayConfig;
  cookie: SessionCookie;
  requestSessions: Pick<RequestSessions, 'cookieMaxAge'>;
  credentials: CredentialSource;
  /** For the DPoP key's nonces. */
  idp: IdpClient;
  metrics: Metrics;
  routes: RouteTable;
  forwarder: Forwarder;
  /** Per-request steps (pipeline.ts), in order. */
  steps?: readonly ProxyStep[];
}

/** Only encodings the scrubber can decode may be offered upstream when a body will be scrubbed. */
function scrubbableAcceptEncoding(value: string | string[] | undefined): string | undefined {
  const kept = [value]
    .flat()
    .join(',')
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part && bodyEncoding(part.split(';')[0]) !== undefined);
  return kept.length > 0 ? kept.join(', ') : undefined;
}

/**
 * Errors about the request's own bytes leave the connection in an unknown state, and so does
 * any answer given before the request body was read to its end (the rest of it would be read
 * as the next request, or Node would answer it once more): close the connection.
 */
function closesConnection(error: GatewayError, req: IncomingMessage): boolean {
  if (error.code === 'invalid_request' || error.code === 'request_timeout' || error.code === 'payload_too_large') return true;
  const { headers } = req;
  const hasBody =
    headers['transfer-encoding'] !== undefined || (headers['content-length'] !== undefined && headers['content-length'] !== '0');
  return hasBody && !req.complete;
}

/** Serves one proxied request on raw Node objects; answers every failure itself, never throws. */
export type ProxyHandler = (exchange: ProxyExchange) => Promise<void>;

export function createProxyHandler({
  config,
  cookie,
  requestSessions,
  credentials: source,
  idp,
  metrics,
  routes,
  forwarder,
  steps = [],
}: ProxyDeps): ProxyHandler {
  // The same header rules as a WebSocket handshake: one place builds what goes up and comes back.
  const headerRules = exchangeHeaders({
    trustProxy: config.trustProxy,
    publicUrl: config.publicUrl,
    gatewayCookies: [cookie.name, cookie.loginName],
    scrubResponseHeaders: config.scrub.responseHeaders,
  });
  const answers: RespondOptions = { scrub: config.scrub.bodies, sendIdleTimeoutMs: config.limits.sendIdleTimeoutMs };
  const clients = new ClientLimit(config.limits.perClientRequests);
  const bufferBudget = new BufferBudget(config.limits.maxBufferedBytes);
  // Only the steps that have something to do at each stage are called at all.
  const onRoute = steps.filter((step) => step.onRoute);
  const onCredentials = steps.filter((step) => step.onCredentials);
  const onDone = steps.filter((step) => step.onDone);

  function fail(exchange: ProxyExchange, err: unknown, message: string): void {
    const { req, res } = exchange;
    // Every expected failure is a GatewayError by now (the forwarder, the refresher and the
    // request-body guards make their own); anything else is a fault of the gateway itself.
    const error = isGatewayError(err) ? err : new GatewayError('internal_error', { detail: (err as Error).message, cause: err });
    exchange.error = error;
    if (!req.destroyed || error.code !== 'bad_gateway') {
      const fields = { ...errorLogFields(error), ...(exchange.route ? { route: exchange.route.path } : {}), ...logBinding(exchange) };
      exchange.log[error.status >= 500 ? 'warn' : 'info'](fields, message);
    }
    const extra: Record<string, string> = error.code === 'session_expired' ? { 'set-cookie': cookie.sessionClearCookie() } : {};
    if (closesConnection(error, req)) extra.connection = 'close';
    if (!writeRawError(res, error, extra)) res.destroy();
  }

  return async function proxy(exchange: ProxyExchange): Promise<void> {
    const { req, res } = exchange;
    const method = req.method ?? 'GET';
    if (onDone.length > 0) res.once('close', () => runDone(onDone, exchange));
    let client: string;
    let query = '';
    try {
      const resolved = resolveRoute(routes, req.url ?? '/');
      const route = resolved.route;
      exchange.route = route;
      exchange.path = resolved.path;
      query = resolved.query;
      if (route.methods && !route.methods.includes(method)) throw new GatewayError('method_not_allowed');
      client = clientAddress(req, config.trustProxy);
      if (!clients.acquire(client))
        throw new GatewayError('too_many_requests', { detail: `client ${client} over limits.perClientRequests` });
    } catch (err) {
      fail(exchange, err, isGatewayError(err) && err.status < 500 ? 'request refused' : 'request failed');
      return;
    }
    res.once('close', () => clients.release(client));
    const route = exchange.route;
    const { path } = exchange;

    let buffered = 0;
    // The answer in hand, until it is relayed: one not relayed when the request fails is discarded.
    let upstream: UpstreamResponse | undefined;
    try {
      // Per-request steps (request ids, trace spans, cheap route rules): see pipeline.ts.
      // A step that finished synchronously costs no await (no promise, no turn of the queue).
      for (const step of onRoute) {
        const pending = step.onRoute?.(exchange);
        if (pending) await pending;
      }
      const tokenRoute = route.token !== 'none';
      if (tokenRoute && !passesCsrf(req.headers, config)) throw new GatewayError('csrf_required');
      const framing = requestFraming(method, req.headers);
      const credentials = await source.for(route, req.headers);
      exchange.credentials = credentials;
      // Per-request steps that need the session (authorization rules, identity headers).
      for (const step of onCredentials) {
        const pending = step.onCredentials?.(exchange);
        if (pending) await pending;
      }

      // A 401 can be answered with a replay only if the body can be sent twice: buffer it when
      // it is small, of declared length and fits the shared budget; anything else streams.
      const replayable = credentials.accessToken !== undefined && config.tokens.retryOn401;
      if (replayable && framing.kind === 'sized' && framing.length <= REPLAY_BODY_LIMIT && bufferBudget.reserve(framing.length))
        buffered = framing.length;
      const canReplay = replayable && (framing.kind === 'none' || buffered > 0);
      const body =
        buffered > 0
          ? await readBody(req, config.limits.bodyIdleTimeoutMs)
          : framing.kind === 'none'
            ? undefined
            : bodyWithIdleDeadline(req, config.limits.bodyIdleTimeoutMs);
      const contentLength = framing.kind === 'sized' && !Buffer.isBuffer(body) ? framing.length : undefined;

      const scrubbing = config.scrub.bodies && credentials.accessToken !== undefined;
      const target = upstreamUrl(route, path as string, query);
      const headersFor = async () => {
        const auth = await source.authHeaders(credentials, method, target);
        const headers = headerRules.request(req, { tokenRoute, auth });
        if (scrubbing) {
          const accept = scrubbableAcceptEncoding(req.headers['accept-encoding']);
          if (accept) headers['accept-encoding'] = accept;
          else delete headers['accept-encoding'];
        }
        // Headers the steps set are the gateway's own: they replace whatever the browser sent.
        for (const name in exchange.upstreamHeaders) headers[name] = exchange.upstreamHeaders[name] as string;
        return headers;
      };
      const send = async (): Promise<UpstreamResponse> => {
        const headers = await headersFor();
        const started = performance.now();
        const resendable = framing.kind === 'none' || Buffer.isBuffer(body) ? IDEMPOTENT.has(method) : false;
        return forwarder
          .send(res, {
            method,
            url: target,
            headers,
            body,
            contentLength,
            timeoutMs: route.timeoutMs,
            carriesToken: tokenRoute,
            resendable,
            secrets: credentials.tokens(),
          })
          .finally(() => {
            metrics.upstreamDuration.observe({ route: route.path }, (performance.now() - started) / 1000);
          });
      };

      upstream = await send();
      const challenge = () => String(upstream?.headers['www-authenticate'] ?? '');
      if (
        canReplay &&
        credentials.dpop &&
        upstream.statusCode === 401 &&
        USE_DPOP_NONCE.test(challenge()) &&
        idp.dpop?.rememberNonce(target, upstream.headers['dpop-nonce'])
      ) {
        upstream.discard();
        upstream = await send();
      }
      if (canReplay && upstream.statusCode === 401 && INVALID_TOKEN.test(challenge())) {
        upstream.discard();
        await credentials.retry();
        upstream = await send();
      }
      // A resource server may rotate its nonce on any answer (RFC 9449 section 9).
      if (credentials.dpop) idp.dpop?.rememberNonce(target, upstream.headers['dpop-nonce']);
      // RFC 9470: the upstream wants a stronger or fresher login; the app gets step_up_required.
      const stepUp =
        upstream.statusCode === 401 && credentials.session ? upstreamStepUp(config.oidc, upstream.headers, req.url ?? '/') : undefined;
      if (stepUp) {
        upstream.discard();
        throw stepUp;
      }
      const { session } = credentials;
      const extraCookies = session?.renewCookie ? [cookie.sessionSetCookie(session.id, requestSessions.cookieMaxAge(session))] : NO_COOKIES;
      respond(res, method, upstream, headerRules.response(credentials.tokens(), extraCookies), answers, (error) =>
        fail(exchange, error, 'proxy request failed'),
      );
    } catch (err) {
      upstream?.discard();
      fail(exchange, err, 'proxy request failed');
    } finally {
      if (buffered > 0) bufferBudget.release(buffered);
    }
  };
}

/** The `reqId` field for lines written on the shared logger (a fastify request logger binds it already). */
export function logBinding(exchange: ProxyExchange): { reqId?: string } {
  return exchange.bound ? {} : { reqId: exchange.id };
}

function runDone(onDone: readonly ProxyStep[], exchange: ProxyExchange): void {
  for (const step of onDone) {
    try {
      step.onDone?.(exchange);
    } catch {
      // A step's own failure never reaches the browser or the other steps.
    }
  }
}
