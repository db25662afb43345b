/**
 * The HTTP side of the gateway: fastify apps wired onto services that services.ts already built.
 * `createGateway(services)` makes the public app (and the admin app when configured), which
 * never listen by themselves (tests build apps; only the CLI listens); `buildGateway(config,
 * deps)` builds the services first. Plugins are wired in flow order: request guards -> /auth
 * endpoints -> proxy scope (everything else) -> error mapping. Each adapter gets only the
 * services it uses.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Duplex } from 'node:stream';
import formbody from '@fastify/formbody';
import type { GatewayConfig } from './config/load.ts';
import { GatewayError, SECURITY_HEADERS, rawHttpError } from './errors.ts';
import { sendError, setErrorHandlers } from './listener/error-handlers.ts';
import { maskUrl } from './log.ts';
import { buildAdminApp } from './ops/health.ts';
import { buildServices, type ServiceDeps, type Services } from './services.ts';
import { registerLogin } from './auth/login.ts';
import { registerCallback } from './auth/callback.ts';
import { registerUser } from './auth/user.ts';
import { registerLogout } from './auth/logout.ts';
import { registerBackchannel } from './auth/backchannel.ts';
import { Forwarder } from './proxy/forward.ts';
import { createProxyHandler } from './proxy/handler.ts';
import { RouteTable } from './proxy/routes.ts';
import { createUpgradeHandler } from './proxy/websocket.ts';
import { bodyIdleGuard, listenerDeadlines } from './listener/deadlines.ts';
import { Drain } from './listener/drain.ts';

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
  const app: FastifyInstance = Fastify({
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

  app.addHook('onRequest', async (request, reply) => {
    const started = performance.now();
    reply.raw.once('finish', () => {
      const route = request.bffRoute ?? request.routeOptions.url ?? 'unmatched';
      const status = reply.raw.statusCode;
      metrics.requests.inc({ route, status: `${Math.floor(status / 100)}xx` });
      request.log.info({ method: request.method, url: maskUrl(request.url), status, ms: Math.round(performance.now() - started) }, 'request');
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
    registerLogin(auth, { idp, cookie, requestSessions, transactions, now });
    registerCallback(auth, { config, cookie, idp, sessions, requestSessions, ending, transactions, metrics, log, now });
    registerUser(auth, { config, cookie, sessions, requestSessions });
    registerLogout(auth, { config, cookie, idp, requestSessions, ending, handoffs: services.handoffs });
    registerBackchannel(auth, { logoutTokens: services.logoutTokens, sessions, ending });
  });

  const routes = new RouteTable(config.routes);
  const forwarder = new Forwarder({ connections: config.limits.upstreamConnections });
  await app.register(async (proxyScope) => {
    // Bodies stream to the upstream untouched: no parser may consume them.
    proxyScope.removeAllContentTypeParsers();
    proxyScope.addContentTypeParser('*', (_request, _payload, done) => done(null));
    const handler = createProxyHandler({ config, cookie, requestSessions, credentials, idp, metrics, routes, forwarder });
    proxyScope.all('/', handler);
    proxyScope.all('/*', handler);
  });
  const watch = { session: config.session, store: services.store, sessions, requestSessions, now };
  const upgrades = createUpgradeHandler({ config, cookie, credentials, watch, routes });
  app.server.on('upgrade', (req, socket, head) => void upgrades.handle(req, socket, head));
  // Node hands CONNECT to a separate event; without a listener it drops the socket unanswered.
  app.server.on('connect', (_req, socket: Duplex) => {
    socket.on('error', () => socket.destroy());
    socket.end(rawHttpError(new GatewayError('method_not_allowed')));
  });

  const adminDeps = { config, log, metrics, store: services.store, idp, sessions, ending };
  const admin = config.admin ? buildAdminApp(adminDeps, { draining: () => drain.active }) : undefined;
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
