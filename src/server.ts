/**
 * The HTTP side of the gateway: fastify apps wired onto services that services.ts already built.
 * `createGateway(services)` makes the public app (and the admin app when configured), which
 * never listen by themselves (tests build apps; only the CLI listens); `buildGateway(config,
 * deps)` builds the services first. Plugins are wired in flow order: request guards -> /auth
 * endpoints -> proxy scope (everything else) -> error mapping. Each adapter gets only the
 * services it uses.
 *
 * Proxied requests do not go through fastify: the public HTTP server hands a request to fastify
 * only when its path starts with the first segment of a fastify route (`/auth`), and serves
 * everything else with the raw proxy pipeline (src/proxy/pipeline.ts), which applies the same
 * listener rules itself (drain, refused methods, URL length, one access line and one
 * `bff_requests_total` per request). `app.inject` and anything the dispatch is unsure about
 * (an encoded path, a method fastify does not route) still reach the proxy through fastify's
 * catch-all route, so both doors lead to the same handler.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import formbody from '@fastify/formbody';
import type { GatewayConfig } from './config/load.ts';
import type { Logger } from './log.ts';
import { errorAnswerOf, errorLogFields, GatewayError, SECURITY_HEADERS, rawHttpError, writeRawError } from './errors.ts';
import { sendError, setErrorHandlers } from './listener/error-handlers.ts';
import { accessLogger, maskUrl } from './log.ts';
import { buildAdminApp } from './ops/health.ts';
import { buildServices, type ServiceDeps, type Services } from './services.ts';
import { registerLogin } from './auth/login.ts';
import { registerCallback } from './auth/callback.ts';
import { registerUser } from './auth/user.ts';
import { registerLogout } from './auth/logout.ts';
import { registerBackchannel } from './auth/backchannel.ts';
import { registerForwardAuth } from './auth/check.ts';
import { registerJwks } from './authz/jwks-route.ts';
import { identityStep } from './authz/proxy-step.ts';
import { upgradeGuard } from './authz/upgrade-guard.ts';
import { registerSelfSessions } from './auth/self-sessions.ts';
import { stepUpStep } from './auth/step-up-step.ts';
import { Forwarder } from './proxy/forward.ts';
import { createProxyHandler } from './proxy/handler.ts';
import { newExchange, type ProxyStep } from './proxy/pipeline.ts';
import { RouteTable } from './proxy/routes.ts';
import { createUpgradeHandler } from './proxy/websocket.ts';
import { bodyIdleGuard, listenerDeadlines } from './listener/deadlines.ts';
import { Drain } from './listener/drain.ts';
import { answerExpectationFailed } from './listener/expectation.ts';
import { clientAddress } from './proxy/client-limit.ts';
import { requestIdStep, tracedRouteOf, upstreamSpanStep } from './telemetry/proxy-steps.ts';
import { assignRequestId, requestIdFor } from './telemetry/request-id.ts';
import { endServerSpan, startServerSpan, tracingOn, withServerSpan } from './telemetry/tracing.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The matched route's path, for the request metric (set by the proxy's fastify door). */
    bffRoute: string | undefined;
  }
}

export type GatewayDeps = ServiceDeps;

export interface Gateway {
  app: FastifyInstance;
  admin: FastifyInstance | undefined;
  /** The services the apps run on (tests look at sessions, metrics, the IdP client). */
  services: Services;
  /** Starts IdP discovery in the background (retried until it succeeds). */
  start(): void;
  close(): Promise<void>;
}
const MAX_URL_LENGTH = 8192;

const REFUSED_METHODS = new Set(['TRACE', 'TRACK', 'CONNECT']);

/** The routes the proxy itself registers on fastify (the catch-all), as opposed to the gateway's own endpoints. */
const PROXY_ROUTES = new Set(['/', '/*']);

/** Seconds a client refused during shutdown should wait: another instance can answer at once. */
const SHUTDOWN_RETRY_AFTER = '1';

/** What Node's HTTP parser and deadlines report to the clientErrorHandler, as a gateway error code. */
function clientErrorCode(code: string | undefined): 'headers_too_large' | 'method_not_allowed' | 'request_timeout' | 'invalid_request' {
  if (code === 'HPE_HEADER_OVERFLOW') return 'headers_too_large';
  // An unknown method (TRACK, say) is a method we do not serve, not a malformed request.
  if (code === 'HPE_INVALID_METHOD') return 'method_not_allowed';
  // headersTimeout or requestTimeout missed: the client was too slow, the request not malformed.
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return 'request_timeout';
  return 'invalid_request';
}

export async function buildGateway(config: GatewayConfig, deps: GatewayDeps = {}): Promise<Gateway> {
  return createGateway(await buildServices(config, deps));
}

export async function createGateway(services: Services): Promise<Gateway> {
  const { config, log, now, metrics, cookie, idp, sessions, requestSessions, ending, credentials } = services;
  // One request id for both doors, decided when the request reaches the listener: a trusted
  // front's X-Request-Id or a new one (src/telemetry/request-id.ts), answered on every response.
  const { trustProxy } = config;
  // Set once the routes are registered: until then every request goes to fastify.
  let serveProxy: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  /** First path segments of the gateway's own (fastify) routes, e.g. `/auth`; methods fastify routes. */
  const fastifyPrefixes = new Set<string>();
  const fastifyMethods = new Set<string>();
  const toFastify = (req: IncomingMessage): boolean => {
    const url = req.url ?? '/';
    if (url.charCodeAt(0) !== 47 /* / */ || !fastifyMethods.has(req.method ?? '')) return true;
    const end = url.indexOf('?');
    const path = end === -1 ? url : url.slice(0, end);
    // fastify's router decodes percent-escapes before matching: let it decide those paths.
    if (path.includes('%')) return true;
    const second = path.indexOf('/', 1);
    return fastifyPrefixes.has(second === -1 ? path : path.slice(0, second));
  };
  const app: FastifyInstance = Fastify({
    genReqId: (req) => requestIdFor(req, trustProxy),
    serverFactory: (fastifyHandler, options) => {
      const dispatch = (req: IncomingMessage, res: ServerResponse) => {
        if (serveProxy === undefined || toFastify(req)) fastifyHandler(req, res);
        else serveProxy(req, res);
      };
      const server = createServer(options.http ?? {}, (req, res) => {
        assignRequestId(req, res, trustProxy);
        if (!tracingOn()) return dispatch(req, res);
        // The request's span is the current one for everything it causes (session, refresh, IdP).
        const serverTrace = startServerSpan(req.method ?? 'GET', req.url ?? '/', req.headers, trustProxy);
        res.once('close', () => endServerSpan(serverTrace, tracedRouteOf(req) ?? (req.url ?? '/').split('?')[0], res.statusCode));
        withServerSpan(serverTrace, () => dispatch(req, res));
      });
      server.keepAliveTimeout = config.limits.keepAliveTimeoutMs;
      server.requestTimeout = config.limits.requestTimeoutMs;
      // `Expect: <anything but 100-continue>`: the gateway's JSON 417, not Node's bare one.
      answerExpectationFailed(server, (req, res) => void assignRequestId(req, res, trustProxy));
      return server;
    },
    loggerInstance: log as unknown as FastifyBaseLogger,
    // One access line per request is written by the onRequest hook below (with masked URLs).
    logController: new LogController({ disableRequestLogging: true }),
    trustProxy: config.trustProxy,
    bodyLimit: 1024 * 1024,
    routerOptions: { maxParamLength: 2048 },
    // Draining answers with the gateway's own 503 (the onRequest hook), not fastify's.
    return503OnClosing: false,
    ...listenerDeadlines(config.limits),
    // Requests the HTTP parser rejects (smuggling attempts, bad chunking, oversized headers)
    // or that miss a deadline still get the gateway's JSON error, and the connection is closed.
    clientErrorHandler: (err: NodeJS.ErrnoException, socket) => {
      // Nothing more can be said on a connection whose answer has begun: a second status line
      // would be read as garbage (or as the next response) by the client.
      const answering = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent === true;
      if (err.code === 'ECONNRESET' || !socket.writable || answering) {
        socket.destroy();
        return;
      }
      // end() alone would leave the read side open (Node's HTTP sockets allow half-open), and a
      // slow client could keep trickling: close it once the answer is flushed.
      socket.end(rawHttpError(new GatewayError(clientErrorCode(err.code), { detail: err.code })), () => socket.destroy());
    },
  });
  const drain = new Drain(app.server);

  // Set before any scope is registered: encapsulated scopes copy the handlers in force when
  // they are created, so setting them later would leave /auth and the proxy on fastify's defaults.
  setErrorHandlers(app, (error, reply) => {
    if (error.code === 'session_expired') reply.header('set-cookie', cookie.sessionClearCookie());
  });
  // The matched route, for the request metric (set by the proxy handler).
  app.decorateRequest('bffRoute', undefined);
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) fastifyMethods.add(method);
    if (PROXY_ROUTES.has(route.url)) return;
    const second = route.url.indexOf('/', 1);
    fastifyPrefixes.add(second === -1 ? route.url : route.url.slice(0, second));
  });

  app.addHook('onRequest', async (request, reply) => {
    const started = performance.now();
    reply.raw.once('finish', () => {
      const route = request.bffRoute ?? request.routeOptions.url ?? 'unmatched';
      const status = reply.raw.statusCode;
      metrics.requests.inc({ route, status: `${Math.floor(status / 100)}xx` });
      const code = status >= 400 ? errorAnswerOf(reply.raw) : undefined;
      if (code) metrics.errors.inc({ code, route });
      request.log.info(
        { method: request.method, url: maskUrl(request.url), client: request.ip, status, ms: Math.round(performance.now() - started) },
        'request',
      );
    });
    if (drain.active) {
      reply.header('retry-after', SHUTDOWN_RETRY_AFTER);
      sendError(request, reply, new GatewayError('shutting_down'));
      return reply;
    }
    if (REFUSED_METHODS.has(request.method)) throw new GatewayError('method_not_allowed');
    if (request.url.length > MAX_URL_LENGTH) throw new GatewayError('uri_too_long');
  });

  await app.register(async (auth) => {
    // The gateway's own responses: never cached, never sniffed, never framed.
    auth.addHook('onSend', async (_request, reply) => {
      reply.header('cache-control', 'no-store');
      for (const [name, value] of Object.entries(SECURITY_HEADERS)) reply.header(name, value);
    });
    auth.addHook('preParsing', bodyIdleGuard(config.limits.bodyIdleTimeoutMs));
    await auth.register(formbody, { bodyLimit: 64 * 1024 });
    const { transactions } = services;
    registerLogin(auth, {
      storeReachable: () => services.store.reachable !== false,
      oidc: config.oidc,
      idp,
      cookie,
      requestSessions,
      transactions,
      now,
    });
    registerCallback(auth, { config, cookie, idp, sessions, requestSessions, ending, transactions, metrics, log, now });
    registerUser(auth, { config, cookie, sessions, requestSessions });
    registerLogout(auth, { config, cookie, idp, requestSessions, ending, handoffs: services.handoffs });
    registerBackchannel(auth, { logoutTokens: services.logoutTokens, sessions, ending });
    const { identity, assertions } = services;
    if (config.forwardAuth.enabled) {
      registerForwardAuth(auth, { config, identity, routes: new RouteTable(config.routes), credentials, requestSessions, sessions, now });
    }
    const jwksPath = config.identity.assertion?.jwksPath;
    if (assertions && jwksPath) registerJwks(auth, [jwksPath], assertions);
    registerSelfSessions(auth, { config, sessions, requestSessions, ending });
  });

  const routes = new RouteTable(config.routes);
  const forwarder = new Forwarder({ connections: config.limits.upstreamConnections });
  // Per-request steps of the proxy pipeline, in order (see src/proxy/pipeline.ts): route rules,
  // identity headers, request ids and trace spans are registered here, once.
  const proxySteps: ProxyStep[] = [stepUpStep(now)];
  // Telemetry: the request id goes upstream; the upstream hop's span only while tracing is on.
  proxySteps.push(requestIdStep);
  if (tracingOn()) proxySteps.push(upstreamSpanStep());
  // Route rules and identity headers (docs/authorization.md).
  proxySteps.push(identityStep(services.identity, requestSessions));
  const proxy = createProxyHandler({ config, cookie, requestSessions, credentials, idp, metrics, routes, forwarder, steps: proxySteps });
  await app.register(async (proxyScope) => {
    // Bodies stream to the upstream untouched: no parser may consume them.
    proxyScope.removeAllContentTypeParsers();
    proxyScope.addContentTypeParser('*', (_request, _payload, done) => done(null));
    const handler = async (request: FastifyRequest, reply: FastifyReply) => {
      reply.hijack();
      const exchange = newExchange(request.raw, reply.raw, request.id, request.log as unknown as Logger, true);
      const done = proxy(exchange);
      // The route is matched synchronously, before the handler's first await.
      request.bffRoute = exchange.route?.path;
      await done;
    };
    proxyScope.all('/', handler);
    proxyScope.all('/*', handler);
  });

  /**
   * The proxy's own door: a raw request, the listener rules fastify's onRequest hook applies on
   * the other door, then the pipeline. One access line and one metric increment per request,
   * written when the response finishes, on the shared logger (no child logger per request).
   */
  const access = accessLogger(log);
  serveProxy = (req, res) => {
    const exchange = newExchange(req, res, requestIdFor(req, trustProxy), log);
    res.once('finish', () => {
      const status = res.statusCode;
      const route = exchange.route?.path ?? '/*';
      metrics.requests.inc({ route, status: `${Math.floor(status / 100)}xx` });
      // Only error answers look further: the gateway's own (not the upstream's) carry a code.
      const code = status >= 400 ? errorAnswerOf(res) : undefined;
      if (code) metrics.errors.inc({ code, route });
      const client = clientAddress(req, trustProxy);
      access.info(
        {
          reqId: exchange.id,
          method: req.method,
          url: maskUrl(req.url),
          client,
          status,
          ms: Math.round(performance.now() - exchange.started),
        },
        'request',
      );
    });
    let refused: GatewayError | undefined;
    const headers: Record<string, string> = {};
    if (drain.active) {
      refused = new GatewayError('shutting_down');
      headers['retry-after'] = SHUTDOWN_RETRY_AFTER;
    } else if (REFUSED_METHODS.has(req.method ?? '')) refused = new GatewayError('method_not_allowed');
    else if ((req.url ?? '').length > MAX_URL_LENGTH) refused = new GatewayError('uri_too_long');
    if (refused) {
      log[refused.status >= 500 ? 'warn' : 'info'](
        { reqId: exchange.id, ...errorLogFields(refused) },
        refused.status >= 500 ? 'request failed' : 'request refused',
      );
      exchange.error = refused;
      writeRawError(res, refused, headers);
      return;
    }
    void proxy(exchange);
  };
  const watch = { session: config.session, store: services.store, sessions, requestSessions, now };
  const upgrades = createUpgradeHandler({ config, cookie, credentials, watch, routes });
  // WebSocket handshakes get the same identity-header stripping and route rules first.
  const guard = upgradeGuard({ identity: services.identity, routes, requestSessions });
  app.server.on('upgrade', (req, socket, head) => {
    // Node removes its own error listener from an upgraded socket: without one, a client that
    // resets the connection while the guard reads the session would crash the process.
    socket.on('error', () => socket.destroy());
    guard(req, socket).then(
      (pass) => (pass ? upgrades.handle(req, socket, head) : undefined),
      () => socket.destroy(),
    );
  });
  // Node hands CONNECT to a separate event; without a listener it drops the socket unanswered.
  app.server.on('connect', (_req, socket: Duplex) => {
    socket.on('error', () => socket.destroy());
    socket.end(rawHttpError(new GatewayError('method_not_allowed')));
  });

  const adminDeps = { config, log, metrics, store: services.store, idp, sessions, ending };
  const admin = config.admin ? buildAdminApp(adminDeps, { draining: () => drain.active, jwks: services.assertions }) : undefined;
  return {
    app,
    admin,
    services,
    start: () => void idp.start(),
    async close() {
      // First, so every answer from here on closes its connection and /readyz says 503.
      drain.start();
      idp.stop();
      await upgrades.closeAll();
      await app.close();
      await admin?.close();
      await forwarder.close();
      await services.close();
    },
  };
}
