/**
 * The only file that knows the upstream HTTP client: undici's connection pools, driven through
 * `dispatch` with a handler of our own.
 *
 * Why undici and not a proxy library: the hop to the upstream is where request smuggling lives,
 * and the safe rules are ones undici enforces by construction. It never takes framing from the
 * caller's headers (`transfer-encoding`, `connection`, `keep-alive`, `upgrade`, `expect` are
 * refused as header names), it writes `content-length` or chunked framing itself, it fails a
 * request whose body is shorter or longer than its declared length (strict content length), and
 * it never reuses a connection after sending a body on a method that does not expect one. The
 * proxy library used before (http-proxy-3) piped the de-chunked body of a `GET` with no framing
 * at all and skipped its request event for `Expect: 100-continue`, so those upstream requests
 * could neither be framed nor torn down (docs/security.md, "The hop to the upstream").
 *
 * `send` forwards one request and resolves with the upstream's response *without* writing it:
 * the caller decides what reaches the browser (header hygiene, token scrubbing, or discarding a
 * 401 to replay). The route timeout covers waiting for the answer, queueing for a connection
 * included, not streaming it, so long downloads and server-sent events are not cut. Every
 * upstream request is torn down when its timeout fires, when the browser goes away before the
 * answer is complete, and when the forwarder closes — whatever headers the request carried.
 *
 * Token-carrying and plain traffic use separate pools, so even a framing bug elsewhere could
 * not put a request from a `none` route on a connection that later carries a user's token.
 */
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { Agent, type Dispatcher } from 'undici';
import { GatewayError } from '../errors.ts';

export interface ForwardTarget {
  method: string;
  url: URL;
  /** Headers as they go upstream: no hop-by-hop or framing headers (undici refuses those). */
  headers: Record<string, string | string[]>;
  /** A buffered body, the request stream itself, or nothing. */
  body: Buffer | Readable | undefined;
  /** The declared length of a streamed body; undefined sends it chunked. */
  contentLength: number | undefined;
  timeoutMs: number;
  /** Which pool: connections that carry tokens are never shared with plain traffic. */
  carriesToken: boolean;
  /** The request can be sent again: it has no body, or a buffered one, and an idempotent method. */
  resendable: boolean;
}

/** The upstream's answer: status and headers, and the body as a stream that has not started. */
export interface UpstreamResponse {
  statusCode: number;
  statusMessage: string;
  headers: IncomingHttpHeaders;
  body: Readable;
}

export interface ForwarderOptions {
  /** Connections per upstream origin, in each of the two pools. */
  connections: number;
}

/** Connection-level failures of a pooled socket the upstream closed while it sat idle. */
const STALE_SOCKET_ERRORS = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE']);

function poolOptions(options: ForwarderOptions): Agent.Options {
  return {
    connections: options.connections,
    pipelining: 1,
    // The route timeout is ours (it also covers the wait for a free connection); a response
    // body may legitimately stay open for as long as the browser wants it (SSE, downloads).
    headersTimeout: 0,
    bodyTimeout: 0,
    strictContentLength: true,
  };
}

/**
 * Streams the upstream's response body with backpressure: undici pauses reading from the
 * upstream socket while the browser is slower than the upstream.
 */
class ResponseBody extends Readable {
  constructor(private readonly controller: Dispatcher.DispatchController) {
    super();
  }

  override _read(): void {
    this.controller.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // A body nobody reads to the end (client gone, 401 discarded) frees its connection.
    if (!this.readableEnded) this.controller.abort(error ?? new Error('response body discarded'));
    callback(error);
  }
}

/** One upstream exchange: relays undici's callbacks to the promise `send` returns. */
class Exchange implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | undefined;
  private body: ResponseBody | undefined;
  private cancelled: Error | undefined;
  started = false;

  constructor(
    private readonly onResponse: (response: UpstreamResponse) => void,
    private readonly onFailure: (error: Error) => void,
    private readonly onEarlyHints: (headers: IncomingHttpHeaders) => void,
  ) {}

  /** Tears the exchange down, whether it is queued, waiting for an answer or streaming one. */
  cancel(reason: Error): void {
    this.cancelled ??= reason;
    if (this.body) this.body.destroy(reason);
    else this.controller?.abort(reason);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    // Cancelled while it waited for a connection: abort before a byte is written.
    if (this.cancelled) controller.abort(this.cancelled);
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if (statusCode < 200) {
      if (statusCode === 103) this.onEarlyHints(headers);
      return;
    }
    this.started = true;
    this.body = new ResponseBody(controller);
    this.onResponse({ statusCode, statusMessage: statusMessage ?? '', headers, body: this.body });
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.body && !this.body.push(chunk)) controller.pause();
  }

  onResponseEnd(): void {
    this.body?.push(null);
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (this.body) this.body.destroy(error);
    else this.onFailure(error);
  }
}

export class Forwarder {
  private readonly tokenPool: Agent;
  private readonly plainPool: Agent;

  constructor(options: ForwarderOptions) {
    this.tokenPool = new Agent(poolOptions(options));
    this.plainPool = new Agent(poolOptions(options));
  }

  send(res: ServerResponse, target: ForwardTarget): Promise<UpstreamResponse> {
    return new Promise((resolve, reject) => {
      let settled = false;
      let exchange: Exchange;
      let resent = false;
      const settle = (outcome: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        outcome();
      };
      // Until the body is fully written to the browser, a browser that goes away takes the
      // upstream request with it.
      const onClientClose = () => {
        if (res.writableFinished) return;
        const gone = new GatewayError('bad_gateway', { detail: 'client closed the connection' });
        settle(() => reject(gone));
        exchange.cancel(gone);
      };
      const timer = setTimeout(() => {
        const late = new GatewayError('gateway_timeout', { detail: `no response from ${target.url.origin} within ${target.timeoutMs}ms` });
        settle(() => reject(late));
        exchange.cancel(late);
      }, target.timeoutMs);
      res.once('close', onClientClose);
      // The browser may already be gone (its request failed to parse while the session was
      // being read): nothing is sent for it, and no connection is held until the timeout.
      if (res.destroyed || (target.body instanceof Readable && target.body.destroyed)) {
        settle(() => reject(new GatewayError('bad_gateway', { detail: 'client closed the connection' })));
        return;
      }

      const attempt = () => {
        exchange = new Exchange(
          (response) => settle(() => resolve(response)),
          (error) => {
            if (settled) return;
            // A pooled keep-alive socket the upstream closed while it sat idle fails at once on
            // reuse: send once more, on another connection, when that cannot repeat a side effect.
            if (!resent && target.resendable && STALE_SOCKET_ERRORS.has((error as NodeJS.ErrnoException).code ?? '')) {
              resent = true;
              attempt();
              return;
            }
            // A body that failed on the client's side (stalled, aborted) says so itself.
            const failure = error instanceof GatewayError ? error : new GatewayError('bad_gateway', { detail: `upstream ${target.url.origin}: ${(error as NodeJS.ErrnoException).code ?? error.message}`, cause: error });
            settle(() => reject(failure));
          },
          (hints) => {
            if (!res.headersSent && typeof hints.link === 'string') res.writeEarlyHints({ link: hints.link });
          },
        );
        const headers = target.contentLength === undefined ? target.headers : { ...target.headers, 'content-length': String(target.contentLength) };
        const pool = target.carriesToken ? this.tokenPool : this.plainPool;
        try {
          pool.dispatch({ origin: target.url.origin, path: target.url.pathname + target.url.search, method: target.method, headers, body: target.body ?? null }, exchange);
        } catch (err) {
          settle(() => reject(new GatewayError('bad_gateway', { detail: `upstream request refused: ${(err as Error).message}`, cause: err })));
        }
      };
      attempt();
    });
  }

  /** Aborts every upstream request in flight and closes every pooled connection. */
  async close(): Promise<void> {
    await Promise.all([this.tokenPool.destroy(), this.plainPool.destroy()]);
  }
}
