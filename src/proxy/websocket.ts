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
 * Browsers cannot add the CSRF header to a WebSocket handshake, but they always send `Origin`,
 * so on token routes the handshake must come from the public origin (cross-site WebSocket
 * hijacking is the threat). The gateway's cookies are cut from `Cookie` and the browser's
 * `Authorization` and `DPoP` never pass on token routes; a DPoP-bound token comes with a proof
 * for `GET` and the ws URL in its http(s) form.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { GatewayConfig } from '../config/load.ts';
import { GatewayError, isGatewayError, rawHttpError } from '../errors.ts';
import type { SessionCookie } from '../session/cookie.ts';
import type { CredentialSource } from './credentials.ts';
import { routeStepUp } from '../auth/step-up-step.ts';
import { TOKEN_RESPONSE_HEADERS, upstreamRequestHeaders } from './headers.ts';
import { resolveRoute, upstreamUrl, type RouteTable } from './routes.ts';
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
  const gatewayCookies = new Set([cookie.name, cookie.loginName]);
  const dropNames = new Set([...TOKEN_RESPONSE_HEADERS, ...config.scrub.responseHeaders]);
  const publicUrl = new URL(config.publicUrl);
  const watch = new SessionSocketWatch(watchDeps);
  const relays = new Set<Relay>();
  const tunnels = new Set<() => void>();
  /** Browser sockets whose handshake is still in progress. */
  const pending = new Set<Duplex>();
  let closing = false;

  const handle = async (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> => {
    socket.on('error', () => socket.destroy());
    pending.add(socket);
    socket.once('close', () => pending.delete(socket));
    try {
      if (closing) throw new GatewayError('shutting_down');
      const { route, path, query } = resolveRoute(routes, req.url ?? '/');
      const tokenRoute = route.token !== 'none';
      if (tokenRoute && req.headers.origin !== config.publicUrl) throw new GatewayError('csrf_required');
      const target = upstreamUrl(route, path, query);
      const credentials = await source.for(route, req.headers);
      // A route's `require` holds for its WebSockets too (the proxy pipeline's step-up step).
      const stepUp = routeStepUp(route, credentials.session?.record, req.url ?? '/', watchDeps.now());
      if (stepUp) throw stepUp;
      const auth = await source.authHeaders(credentials, 'GET', target);
      const carriesToken = credentials.accessToken !== undefined;
      const headers = upstreamRequestHeaders(req.headers, {
        trustProxy: config.trustProxy,
        removeCookies: gatewayCookies,
        remoteAddress: req.socket.remoteAddress,
        publicUrl,
        tokenRoute,
        authorization: auth.authorization,
        keepUpgrade: !carriesToken,
      });
      if (tokenRoute) delete headers.dpop;
      if (auth.dpop) headers.dpop = auth.dpop;
      const rules = { dropNames, gatewayCookies, tokens: credentials.tokens() };
      if (closing || socket.destroyed) throw new GatewayError('shutting_down');

      if (!carriesToken) {
        tunnel({
          socket,
          head,
          target,
          headers,
          timeoutMs: route.timeoutMs,
          rules,
          refuseOtherAnswers: tokenRoute,
          onOpen: (close) => {
            pending.delete(socket);
            tunnels.add(close);
            socket.once('close', () => tunnels.delete(close));
          },
        });
        return;
      }

      const session = credentials.session;
      let watching: ReturnType<SessionSocketWatch['watch']> | undefined;
      relay({
        req,
        socket,
        head,
        target,
        headers,
        timeoutMs: route.timeoutMs,
        rules,
        redact: messageRedactor(credentials.tokens()),
        onBrowserMessage: () => watching?.activity(),
        onOpen: (opened) => {
          pending.delete(socket);
          relays.add(opened);
          if (session) watching = watch.watch(session, () => opened.close(SESSION_ENDED.code, SESSION_ENDED.reason));
          void opened.closed.then(() => {
            relays.delete(opened);
            watching?.stop();
          });
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
