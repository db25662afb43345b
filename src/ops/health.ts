/**
 * The admin listener: /healthz (the process runs), /readyz (the session store answers and the
 * IdP metadata is loaded, else 503 naming what is missing; 503 `draining` once shutdown has
 * begun, while /healthz keeps answering), /metrics. Separate from the public listener so probes
 * and scrapes never mix with browser traffic. Errors and unknown paths answer in the same
 * `{"error","message"}` shape as the public listener, never with an error's private detail.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { GatewayConfig } from '../config/load.ts';
import { setErrorHandlers } from '../listener/error-handlers.ts';
import { answerExpectationFailed } from '../listener/expectation.ts';
import type { Logger } from '../log.ts';
import type { IdpClient } from '../oidc/client.ts';
import type { SessionStore } from '../session/store.ts';
import { registerAdminSessions, type AdminSessionsDeps } from './admin-sessions.ts';
import type { AssertionSigner } from '../authz/assertion.ts';
import { ADMIN_JWKS_PATHS, registerJwks } from '../authz/jwks-route.ts';
import type { Metrics } from './metrics.ts';

const PING_TIMEOUT_MS = 1000;

async function storeAnswers(store: Pick<SessionStore, 'ping'>): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), PING_TIMEOUT_MS);
  });
  const ping = store.ping().then(
    () => true,
    () => false,
  );
  const result = await Promise.race([ping, timeout]);
  clearTimeout(timer);
  return result;
}

export interface AdminDeps extends AdminSessionsDeps {
  config: GatewayConfig;
  log: Logger;
  metrics: Metrics;
  /** Readiness: the store answers a ping. */
  store: Pick<SessionStore, 'ping'>;
  /** Readiness: the IdP metadata is loaded. */
  idp: IdpClient;
}

export interface AdminOptions {
  /** True once the public listener drains: load balancers must stop sending (readyz 503). */
  draining?: () => boolean;
  /** The identity assertions' keys, published at /jwks and /.well-known/jwks.json. */
  jwks?: Pick<AssertionSigner, 'jwks'> | undefined;
}

export function buildAdminApp(deps: AdminDeps, options: AdminOptions = {}): FastifyInstance {
  const { config, log, metrics, store, idp } = deps;
  const app = Fastify({
    // Failures (a store outage on /sessions) are logged with their detail; probes and scrapes
    // are too frequent to log each request.
    loggerInstance: log.child({ listener: 'admin' }) as unknown as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
  });
  setErrorHandlers(app);
  answerExpectationFailed(app.server);
  app.get('/healthz', async (_request, reply) => reply.header('cache-control', 'no-store').send({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    reply.header('cache-control', 'no-store');
    if (options.draining?.()) return reply.code(503).send({ status: 'draining' });
    const missing: string[] = [];
    if (!(await storeAnswers(store))) missing.push('session store');
    if (!idp.ready) missing.push('identity provider metadata');
    if (missing.length > 0) return reply.code(503).send({ status: 'not_ready', missing });
    return reply.send({ status: 'ready' });
  });
  app.get('/metrics', async (_request, reply) => {
    const body = await metrics.registry.metrics();
    return reply.header('content-type', metrics.registry.contentType).send(body);
  });
  if (config.admin?.token) registerAdminSessions(app, deps, config.admin.token);
  if (options.jwks) registerJwks(app, ADMIN_JWKS_PATHS, options.jwks);
  return app;
}
