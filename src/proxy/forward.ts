/**
 * The only file that knows the proxy library (http-proxy-3, the maintained, API-compatible
 * successor of http-proxy 1.18; see bench/README.md for the measurement behind the choice).
 *
 * `send` forwards one request and resolves with the upstream's response *without* writing it:
 * the caller decides what reaches the browser (header hygiene, token scrubbing, or discarding a
 * 401 to replay). Errors map to contract codes: no connection or a reset -> 502 bad_gateway;
 * no response headers within the route's timeout -> 504 gateway_timeout. The timeout covers
 * waiting for the answer, not streaming it, so long downloads and SSE are not cut.
 */
import http, { type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import https from 'node:https';
import { PassThrough, type Duplex, type Readable } from 'node:stream';
import { createProxyServer, type ProxyServer } from 'http-proxy-3';
import { GatewayError } from '../errors.ts';

export interface ForwardTarget {
  url: URL;
  headers: OutgoingHttpHeaders;
  timeoutMs: number;
  /** A buffered body to send instead of the request stream (replays need one). */
  body?: Buffer;
  /** The request can be sent again: it has no body, or a buffered one. */
  resendable: boolean;
}

const RESENDABLE_ERRORS = new Set(['ECONNRESET', 'EPIPE']);

interface Pending {
  onRequest(proxyReq: http.ClientRequest): void;
  onResponse(proxyRes: IncomingMessage): void;
}

export class Forwarder {
  private readonly proxy: ProxyServer;
  private readonly pending = new WeakMap<IncomingMessage, Pending>();
  private readonly upgraded = new Set<Duplex>();
  private readonly upgradeGuards = new WeakMap<IncomingMessage, (proxyReq: http.ClientRequest) => void>();
  private readonly httpAgent = new http.Agent({ keepAlive: true, maxSockets: 256, scheduling: 'lifo' });
  private readonly httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 256, scheduling: 'lifo' });

  constructor() {
    this.proxy = createProxyServer({ selfHandleResponse: true, ignorePath: true, xfwd: false, changeOrigin: true });
    this.proxy.on('proxyReq', (proxyReq, req) => this.pending.get(req)?.onRequest(proxyReq));
    this.proxy.on('proxyRes', (proxyRes, req) => this.pending.get(req)?.onResponse(proxyRes));
    this.proxy.on('proxyReqWs', (proxyReq, req) => this.upgradeGuards.get(req)?.(proxyReq));
    // Errors are reported per call; this listener only keeps an unexpected one from crashing.
    this.proxy.on('error', () => {});
  }

  private agentFor(url: URL): http.Agent {
    return url.protocol === 'https:' ? this.httpsAgent : this.httpAgent;
  }

  send(req: IncomingMessage, res: ServerResponse, target: ForwardTarget): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      let settled = false;
      let upstreamRequest: http.ClientRequest | undefined;
      let resent = false;
      const onClientClose = () => settle(() => reject(new GatewayError('bad_gateway', { detail: 'client closed the connection' })));
      const settle = (outcome: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        res.off('close', onClientClose);
        this.pending.delete(req);
        outcome();
      };
      const timer = setTimeout(() => {
        settle(() => reject(new GatewayError('gateway_timeout', { detail: `no response from ${target.url.origin} within ${target.timeoutMs}ms` })));
        upstreamRequest?.destroy();
      }, target.timeoutMs);
      res.once('close', onClientClose);
      req.headers = target.headers as IncomingMessage['headers'];

      const attempt = () => {
        this.pending.set(req, {
          onRequest: (proxyReq) => {
            upstreamRequest = proxyReq;
            if (settled) proxyReq.destroy();
          },
          onResponse: (proxyRes) => settle(() => resolve(proxyRes)),
        });
        const onError = (err: NodeJS.ErrnoException) => {
          if (settled) return;
          // A pooled keep-alive socket the upstream closed while it sat idle fails at once on
          // reuse: resend once when the request can be sent again (what Node's docs advise).
          if (!resent && target.resendable && upstreamRequest?.reusedSocket && RESENDABLE_ERRORS.has(err.code ?? '')) {
            resent = true;
            attempt();
            return;
          }
          settle(() => reject(new GatewayError('bad_gateway', { detail: `upstream ${target.url.origin}: ${err.code ?? err.message}`, cause: err })));
        };
        this.proxy.web(req, res, { target: target.url.href, agent: this.agentFor(target.url), buffer: target.body ? bufferStream(target.body) : undefined }, onError);
      };
      attempt();
    });
  }

  /**
   * WebSocket upgrade to `target` (headers already prepared by the caller). `guard` sees the
   * upstream request before the library attaches its own listeners, so listeners it prepends
   * run first: the handshake answer can be cleaned before it is written to the browser.
   */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, target: { url: URL; headers: OutgoingHttpHeaders; guard: (proxyReq: http.ClientRequest) => void }): void {
    this.upgraded.add(socket);
    socket.once('close', () => this.upgraded.delete(socket));
    this.upgradeGuards.set(req, target.guard);
    req.headers = target.headers as IncomingMessage['headers'];
    const wsUrl = new URL(target.url);
    wsUrl.protocol = wsUrl.protocol === 'https:' ? 'wss:' : 'ws:';
    this.proxy.ws(req, socket, head, { target: wsUrl.href, agent: this.agentFor(target.url) }, () => socket.destroy());
  }

  /**
   * WebSockets never "finish" like a request does, and an open one keeps the HTTP server's
   * close() waiting: shutdown ends them first, then lets in-flight requests drain.
   */
  closeUpgraded(): void {
    for (const socket of this.upgraded) socket.destroy();
    this.upgraded.clear();
  }

  close(): void {
    this.closeUpgraded();
    this.proxy.close();
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}

/** http-proxy pipes `buffer` into the upstream request; a PassThrough that ends after the bytes. */
function bufferStream(body: Buffer): Readable {
  const stream = new PassThrough();
  stream.end(body);
  return stream;
}
