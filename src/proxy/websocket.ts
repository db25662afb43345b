/**
 * WebSocket upgrades (contract section 6): proxied on `none` routes as they are, and on
 * `user`/`optional` routes with the session's access token. Browsers cannot add the CSRF
 * header to a WebSocket handshake, but they always send `Origin`, so on token routes the
 * handshake must come from the public origin (cross-site WebSocket hijacking is the threat).
 * `token: client` routes carry the gateway's client-credentials token, as over HTTP. A DPoP-bound
 * token comes with a proof for `GET` and the ws URL in its http(s) form.
 */
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { GatewayContext } from '../context.ts';
import { GatewayError, isGatewayError, rawHttpError } from '../errors.ts';
import { authHeaders, credentialsFor } from './credentials.ts';
import { createProxyServer } from 'http-proxy-3';
import { browserResponseHeaders, TOKEN_RESPONSE_HEADERS, upstreamRequestHeaders, type ResponseHeaderOptions } from './headers.ts';
import { resolveRoute } from './handler.ts';
import { upstreamUrl, type RouteTable } from './routes.ts';

interface HandshakeRules extends ResponseHeaderOptions {
  tokenRoute: boolean;
}

/**
 * The upstream's answer to the handshake gets the same hygiene as any response (contract
 * sections 4 and 6): token headers, headers carrying a session token and Set-Cookie for the
 * gateway's cookies are dropped from a 101. A refusal (any non-101 answer) on a token route is
 * not relayed at all — its body could echo the token, and a browser's WebSocket API cannot read
 * it anyway — the browser gets the gateway's 502 instead.
 */
function guardHandshake(proxyReq: ClientRequest, socket: Duplex, rules: HandshakeRules): void {
  proxyReq.prependListener('upgrade', (proxyRes: IncomingMessage) => {
    const kept = browserResponseHeaders(proxyRes.headers, rules);
    // The handshake's own hop-by-hop headers are what makes it a handshake.
    kept.connection = 'Upgrade';
    if (proxyRes.headers.upgrade) kept.upgrade = proxyRes.headers.upgrade;
    proxyRes.headers = kept as IncomingMessage['headers'];
  });
  proxyReq.prependListener('response', (proxyRes: IncomingMessage) => {
    if (!rules.tokenRoute) {
      proxyRes.headers = browserResponseHeaders(proxyRes.headers, rules) as IncomingMessage['headers'];
      return;
    }
    proxyRes.resume();
    // Once the socket is ended, whatever the proxy library still tries to relay is refused.
    socket.end(rawHttpError(new GatewayError('bad_gateway', { detail: `upstream refused the WebSocket upgrade with ${proxyRes.statusCode}` })));
  });
}

/** Interim raw tunnel (http-proxy-3), kept only until the WebSocket relay replaces it. */
class Tunnels {
  private readonly proxy = createProxyServer({ ignorePath: true, xfwd: false, changeOrigin: true });
  private readonly guards = new WeakMap<IncomingMessage, (proxyReq: ClientRequest) => void>();
  private readonly open = new Set<Duplex>();
  constructor() {
    this.proxy.on('proxyReqWs', (proxyReq, req) => this.guards.get(req)?.(proxyReq));
    this.proxy.on('error', () => {});
  }
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, target: { url: URL; headers: Record<string, string | string[]>; guard: (proxyReq: ClientRequest) => void }): void {
    this.open.add(socket);
    socket.once('close', () => this.open.delete(socket));
    this.guards.set(req, target.guard);
    req.headers = target.headers as IncomingMessage['headers'];
    const wsUrl = new URL(target.url);
    wsUrl.protocol = wsUrl.protocol === 'https:' ? 'wss:' : 'ws:';
    this.proxy.ws(req, socket, head, { target: wsUrl.href }, () => socket.destroy());
  }
  closeAll(): void {
    for (const socket of this.open) socket.destroy();
    this.open.clear();
  }
}

export function createUpgradeHandler(ctx: GatewayContext, routes: RouteTable) {
  const forwarder = new Tunnels();
  const gatewayCookies = new Set([ctx.cookie.name, ctx.cookie.loginName]);
  const dropNames = new Set([...TOKEN_RESPONSE_HEADERS, ...ctx.config.scrub.responseHeaders]);
  const handle = async (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> => {
    socket.on('error', () => socket.destroy());
    try {
      const { route, path, query } = resolveRoute(routes, req.url ?? '/');
      if (route.token !== 'none' && req.headers.origin !== ctx.config.publicUrl) throw new GatewayError('csrf_required');
      const target = upstreamUrl(route, path, query);
      const credentials = await credentialsFor(ctx, route, req.headers);
      const auth = await authHeaders(ctx, credentials, 'GET', target);
      const headers = upstreamRequestHeaders(req.headers, {
        trustProxy: ctx.config.trustProxy,
        removeCookies: gatewayCookies,
        remoteAddress: req.socket.remoteAddress,
        publicUrl: new URL(ctx.config.publicUrl),
        tokenRoute: route.token !== 'none',
        authorization: auth.authorization,
        keepUpgrade: true,
      });
      if (route.token !== 'none') delete headers.dpop;
      if (auth.dpop) headers.dpop = auth.dpop;
      const guard = (proxyReq: ClientRequest) => guardHandshake(proxyReq, socket, { dropNames, gatewayCookies, tokens: credentials.tokens(), tokenRoute: route.token !== 'none' });
      forwarder.upgrade(req, socket, head, { url: target, headers, guard });
    } catch (err) {
      socket.end(rawHttpError(isGatewayError(err) ? err : new GatewayError('bad_gateway', { detail: (err as Error).message })));
    }
  };
  return { handle, closeAll: () => forwarder.closeAll() };
}
