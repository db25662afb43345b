/**
 * WebSocket upgrades (docs/http-interface.md#websockets). The handshake rules are the same on every route;
 * what happens after depends on whether the upgrade carries a token:
 *
 * - with a token (`user`, `optional` with a session, `client`): the gateway terminates the
 *   socket and relays messages (ws-relay.ts), replacing the tokens in whatever the upstream
 *   sends; sockets of a session are closed when the session ends, on every instance
 *   (ws-session-watch.ts);
 * - without one (`none`, `optional` without a session): a raw tunnel (ws-tunnel.ts).
 *
 * Only WebSocket upgrades are accepted (ws-handshake.ts): an h2c or any other upgrade is 400.
 *
 * Browsers cannot add the CSRF header to a WebSocket handshake, but they always send `Origin`,
 * so on token routes the handshake must come from the public origin (cross-site WebSocket
 * hijacking is the threat). The request headers are built like any proxied request's
 * (headers.ts `exchangeHeaders`): the gateway's cookies cut from `Cookie`, the browser's
 * `Authorization` and `DPoP` never passing on token routes; a DPoP-bound token comes with a
 * proof for `GET` and the ws URL in its http(s) form.
 *
 * What one client can hold: at most `limits.perClientWebSockets` sockets open at once per client
 * address (client-limit.ts; handshakes in progress count), beyond it 429 `too_many_requests`;
 * this is a count of its own, next to `limits.perClientRequests` for HTTP requests, because a
 * socket stays open for as long as the page does. A socket with no traffic for
 * `limits.webSocketIdleTimeout` is closed.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { GatewayConfig } from '../config/load.ts';
import { GatewayError, isGatewayError, rawHttpError } from '../errors.ts';
import type { SessionCookie } from '../session/cookie.ts';
import type { CredentialSource } from './credentials.ts';
import { routeStepUp } from '../auth/step-up-step.ts';
import { clientAddress, ClientLimit } from './client-limit.ts';
import { exchangeHeaders } from './headers.ts';
import { BufferBudget } from './request-body.ts';
import { resolveRoute, upstreamUrl, type RouteTable } from './routes.ts';
import { assertWebSocketHandshake, type UpstreamHandshake } from './ws-handshake.ts';
import { messageRedactor } from './ws-redact.ts';
import { relay, type Relay } from './ws-relay.ts';
import { SessionSocketWatch, type WatchDeps } from './ws-session-watch.ts';
import { tunnel } from './ws-tunnel.ts';

/** Close code and reason when the session behind a socket ends (1008: policy violation). */
export const SESSION_ENDED = { code: 1008, reason: 'session ended' } as const;
/** At shutdown: 1001 "going away", then, after this grace, whatever has not closed is cut. */
const SHUTDOWN_GRACE_MS = 1_000;

export interface UpgradeHandler {
  handle(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void>;
  /**
   * Shutdown: WebSockets never "finish" like a request does, and an open one keeps the HTTP
   * server's close() waiting. Refuses new upgrades and closes every open socket.
   */
  closeAll(): Promise<void>;
}

export interface UpgradeDeps {
  config: GatewayConfig;
  cookie: SessionCookie;
  credentials: CredentialSource;
  /** What keeps watching a relayed socket's session. */
  watch: WatchDeps;
  routes: RouteTable;
}

export function createUpgradeHandler({ config, cookie, credentials: source, watch: watchDeps, routes }: UpgradeDeps): UpgradeHandler {
  const headerRules = exchangeHeaders({
    trustProxy: config.trustProxy,
    publicUrl: config.publicUrl,
    gatewayCookies: [cookie.name, cookie.loginName],
    scrubResponseHeaders: config.scrub.responseHeaders,
  });
  const clients = new ClientLimit(config.limits.perClientWebSockets);
  const budget = new BufferBudget(config.limits.maxBufferedBytes);
  const watch = new SessionSocketWatch(watchDeps);
  const relays = new Set<Relay>();
  const tunnels = new Set<() => void>();
  /** Browser sockets whose handshake is still in progress. */
  const pending = new Set<Duplex>();
  let closing = false;

  /** A handshake became an open socket: no longer pending, in `open` until `gone`. */
  const opened = <T>(socket: Duplex, open: Set<T>, item: T, gone: Promise<unknown>) => {
    pending.delete(socket);
    open.add(item);
    void gone.then(() => open.delete(item));
  };

  const handle = async (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> => {
    // Gone already (during the upgrade guard): its 'close' may have passed, nothing to count or answer.
    if (socket.destroyed) return;
    socket.on('error', () => socket.destroy());
    pending.add(socket);
    socket.once('close', () => pending.delete(socket));
    try {
      if (closing) throw new GatewayError('shutting_down');
      assertWebSocketHandshake(req);
      const { route, path, query } = resolveRoute(routes, req.url ?? '/');
      // Counted from here until the browser's socket closes, whatever becomes of it.
      const client = clientAddress(req, config.trustProxy);
      if (!clients.acquire(client))
        throw new GatewayError('too_many_requests', { detail: `client ${client} over limits.perClientWebSockets` });
      socket.once('close', () => clients.release(client));
      const tokenRoute = route.token !== 'none';
      if (tokenRoute && req.headers.origin !== config.publicUrl) throw new GatewayError('csrf_required');
      const target = upstreamUrl(route, path, query);
      const credentials = await source.for(route, req.headers);
      // A route's `require` holds for its WebSockets too (the proxy pipeline's step-up step).
      const stepUp = routeStepUp(route, credentials.session?.record, req.url ?? '/', watchDeps.now());
      if (stepUp) throw stepUp;
      const auth = await source.authHeaders(credentials, 'GET', target);
      const carriesToken = credentials.accessToken !== undefined;
      const handshake: UpstreamHandshake = {
        socket,
        head,
        target,
        headers: headerRules.request(req, { tokenRoute, auth, keepUpgrade: !carriesToken }),
        timeoutMs: route.timeoutMs,
        rules: headerRules.response(credentials.tokens()),
        idleTimeoutMs: config.limits.webSocketIdleTimeoutMs,
      };
      if (closing || socket.destroyed) throw new GatewayError('shutting_down');

      if (!carriesToken) {
        tunnel({
          ...handshake,
          refuseOtherAnswers: tokenRoute,
          onOpen: (close) => opened(socket, tunnels, close, new Promise((resolve) => socket.once('close', resolve))),
        });
        return;
      }

      const session = credentials.session;
      let watching: ReturnType<SessionSocketWatch['watch']> | undefined;
      relay({
        ...handshake,
        req,
        redact: messageRedactor(credentials.tokens()),
        budget,
        onBrowserMessage: () => watching?.activity(),
        onOpen: (open) => {
          opened(socket, relays, open, open.closed);
          if (session) watching = watch.watch(session, () => open.close(SESSION_ENDED.code, SESSION_ENDED.reason));
          void open.closed.then(() => watching?.stop());
        },
      });
    } catch (err) {
      const error = isGatewayError(err) ? err : new GatewayError('bad_gateway', { detail: (err as Error).message });
      if (socket.writable) socket.end(rawHttpError(error));
      else socket.destroy();
    }
  };

  const closeAll = async (): Promise<void> => {
    closing = true;
    watch.close();
    for (const socket of pending) {
      if (socket.writable) socket.end(rawHttpError(new GatewayError('shutting_down')));
      else socket.destroy();
    }
    pending.clear();
    for (const close of tunnels) close();
    tunnels.clear();
    const open = [...relays];
    for (const opened of open) opened.close(1001, 'gateway shutting down');
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, SHUTDOWN_GRACE_MS)));
    await Promise.race([Promise.all(open.map((opened) => opened.closed)), grace]);
    clearTimeout(timer);
    for (const opened of open) opened.terminate();
  };

  return { handle, closeAll };
}
