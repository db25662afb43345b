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
 * `send` forwards one request and resolves with the upstream's response *without* its body:
 * the caller decides what reaches the browser (header hygiene, token scrubbing, or discarding a
 * 401 to replay). The body is then relayed straight from undici's data callback into a sink the
 * caller gives (respond.ts writes it to the browser), with backpressure: undici stops reading
 * the upstream socket while the sink says the browser is not taking more. A discarded body is
 * drained briefly (so a keep-alive connection survives a small 401) and otherwise aborted; its
 * errors go nowhere.
 *
 * The route timeout covers waiting for the answer, queueing for a connection included, not
 * streaming it, so long downloads and server-sent events are not cut. Queueing is the
 * gateway's own: at most `limits.upstreamConnections` requests per origin and pool are handed
 * to undici at once, the rest wait here, so a request that times out or whose browser leaves
 * while it waits is simply dropped — undici never holds a queue of requests (and their bearer
 * tokens) that nobody waits for. Every upstream request is torn down when its timeout fires,
 * when the browser goes away before the answer is complete, and when the forwarder closes —
 * whatever headers the request carried.
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
  /** Tokens the request carries: a 103 Early Hints value that contains one is not relayed. */
  secrets?: readonly string[];
}

/** Where an upstream body goes, piece by piece, from undici's callbacks. None of these may throw. */
export interface BodySink {
  /** A piece of the body; false when no more should come until `UpstreamResponse.resume()`. */
  data(chunk: Buffer): boolean;
  end(): void;
  /** The body failed (upstream reset, the exchange cancelled). */
  fail(error: Error): void;
}

/** The upstream's answer: status and headers; the body has not been read yet. */
export interface UpstreamResponse {
  statusCode: number;
  statusMessage: string;
  headers: IncomingHttpHeaders;
  /** Starts reading the body into `sink` (once). */
  relay(sink: BodySink): void;
  /** Reading was paused by `sink.data` returning false: go on. */
  resume(): void;
  /**
   * The body is not wanted (a 401 before a replay): it is drained for a moment so the
   * connection can be reused, else aborted; its errors are ignored. Never throws.
   */
  discard(): void;
}

export interface ForwarderOptions {
  /** Connections per upstream origin, in each of the two pools. */
  connections: number;
}

/** What the forwarder holds right now, for tests and diagnostics. */
export interface ForwarderStats {
  /** Requests waiting in the gateway for a free connection slot. */
  waiting: number;
  /** Requests handed to undici (connected, sent or queued inside undici). */
  dispatched: number;
  /** Requests undici itself has not started yet, over both pools and every origin. */
  undiciPending: number;
}

/** Connection-level failures of a pooled socket the upstream closed while it sat idle. */
const STALE_SOCKET_ERRORS = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE']);
/** A discarded body is read to its end only if that is quick and small; otherwise aborted. */
const DISCARD_DRAIN_MS = 1000;
const DISCARD_DRAIN_BYTES = 64 * 1024;

function poolOptions(options: ForwarderOptions): Agent.Options {
  return {
    connections: options.connections,
    pipelining: 1,
    // The route timeout is ours (it also covers the wait for a free connection); a response
    // body may legitimately stay open for as long as the browser reads it (SSE, downloads):
    // stream-sink.ts bounds a browser that stops reading (`limits.sendIdleTimeout`).
    headersTimeout: 0,
    bodyTimeout: 0,
    strictContentLength: true,
  };
}

/**
 * At most `limit` requests at once to one origin in one pool; the others wait here, in order.
 * A waiting request can be withdrawn: nothing of it remains.
 */
class Slots {
  active = 0;
  readonly waiting = new Set<() => void>();

  constructor(private readonly limit: number) {}

  /** Calls `start` now or once a slot is free; returns a withdrawal while it waits. */
  enter(start: () => void): (() => void) | undefined {
    if (this.active < this.limit) {
      this.active++;
      start();
      return undefined;
    }
    this.waiting.add(start);
    return () => this.waiting.delete(start);
  }

  /** A request is done with its connection: the slot passes to the next waiting request. */
  leave(): void {
    for (const next of this.waiting) {
      this.waiting.delete(next);
      next();
      return;
    }
    this.active--;
  }
}

/** Whether an interim header value names one of `secrets` (as is, or percent-encoded in a URL). */
function carriesSecret(value: string, secrets: readonly string[]): boolean {
  return secrets.some((secret) => secret.length > 0 && (value.includes(secret) || value.includes(encodeURIComponent(secret))));
}

interface ExchangeEvents {
  response(response: UpstreamResponse): void;
  /** No answer (connection failed, request refused, cancelled before the headers). */
  failure(error: Error): void;
  earlyHints(headers: IncomingHttpHeaders): void;
  /** undici is done with the request: its connection is free (or gone). Called once. */
  finished(): void;
}

/** One upstream exchange: undici's callbacks, the body relay, and its cancellation. */
class Exchange implements Dispatcher.DispatchHandler, UpstreamResponse {
  statusCode = 0;
  statusMessage = '';
  headers: IncomingHttpHeaders = {};
  private controller: Dispatcher.DispatchController | undefined;
  private sink: BodySink | undefined;
  /** The answer's headers have arrived (the promise of `send` is resolved). */
  private answered = false;
  /** undici has finished with the request (ended or failed). */
  private done = false;
  private ended = false;
  private failed: Error | undefined;
  private cancelled: Error | undefined;
  private discarded = 0;
  private drainTimer: NodeJS.Timeout | undefined;

  constructor(private readonly events: ExchangeEvents) {}

  /** Tears the exchange down, whether it waits for a connection, for an answer, or streams one. Never throws. */
  cancel(reason: Error): void {
    if (this.done) return;
    this.cancelled ??= reason;
    this.abort(reason);
  }

  private abort(reason: Error): void {
    if (this.done || !this.controller) return;
    try {
      this.controller.abort(reason);
    } catch {
      // Already over: nothing left to tear down.
    }
  }

  relay(sink: BodySink): void {
    if (this.sink || this.discarded > 0) return;
    this.sink = sink;
    if (this.ended) sink.end();
    else if (this.failed) sink.fail(this.failed);
    else this.resume();
  }

  resume(): void {
    if (!this.done) this.controller?.resume();
  }

  discard(): void {
    if (this.done || this.sink || this.discarded > 0) return;
    this.discarded = 1;
    this.drainTimer = setTimeout(() => this.abort(new Error('discarded response body not drained in time')), DISCARD_DRAIN_MS);
    this.drainTimer.unref();
    this.resume();
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    // Cancelled before undici started it: abort before a byte is written.
    if (this.cancelled) controller.abort(this.cancelled);
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
    statusMessage?: string,
  ): void {
    if (statusCode < 200) {
      if (statusCode === 103) this.events.earlyHints(headers);
      return;
    }
    // Nothing of the body is read until the caller relays or discards it.
    controller.pause();
    this.answered = true;
    this.statusCode = statusCode;
    this.statusMessage = statusMessage ?? '';
    this.headers = headers;
    this.events.response(this);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.sink) {
      if (!this.sink.data(chunk)) controller.pause();
    } else if (this.discarded > 0) {
      this.discarded += chunk.length;
      if (this.discarded > DISCARD_DRAIN_BYTES) this.abort(new Error('discarded response body too long to drain'));
    } else controller.pause();
  }

  onResponseEnd(): void {
    if (this.done) return;
    this.done = true;
    this.ended = true;
    clearTimeout(this.drainTimer);
    this.sink?.end();
    this.events.finished();
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.drainTimer);
    // First the failure (which may start a resend), then the connection slot.
    if (!this.answered) this.events.failure(error);
    else {
      this.failed = error;
      this.sink?.fail(error);
    }
    this.events.finished();
  }
}

export class Forwarder {
  private readonly tokenPool: Agent;
  private readonly plainPool: Agent;
  private readonly slots = new Map<string, Slots>();
  private readonly limit: number;

  constructor(options: ForwarderOptions) {
    this.limit = options.connections;
    this.tokenPool = new Agent(poolOptions(options));
    this.plainPool = new Agent(poolOptions(options));
  }

  private slotsFor(carriesToken: boolean, origin: string): Slots {
    const key = carriesToken ? `t ${origin}` : `p ${origin}`;
    let slots = this.slots.get(key);
    if (!slots) {
      slots = new Slots(this.limit);
      this.slots.set(key, slots);
    }
    return slots;
  }

  send(res: ServerResponse, target: ForwardTarget): Promise<UpstreamResponse> {
    return new Promise((resolve, reject) => {
      let settled = false;
      let exchange: Exchange | undefined;
      let withdraw: (() => void) | undefined;
      let resent = false;
      const settle = (outcome: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        outcome();
      };
      const cancel = (reason: Error) => {
        withdraw?.();
        withdraw = undefined;
        exchange?.cancel(reason);
      };
      // Until the body is fully written to the browser, a browser that goes away takes the
      // upstream request with it (or its place in the queue).
      const onClientClose = () => {
        if (res.writableFinished) return;
        const gone = new GatewayError('bad_gateway', { detail: 'client closed the connection' });
        settle(() => reject(gone));
        cancel(gone);
      };
      const timer = setTimeout(() => {
        const late = new GatewayError('gateway_timeout', { detail: `no response from ${target.url.origin} within ${target.timeoutMs}ms` });
        settle(() => reject(late));
        cancel(late);
      }, target.timeoutMs);
      // The browser may already be gone (its request failed to parse while the session was
      // being read): nothing is sent for it, and no connection is held until the timeout.
      if (res.destroyed || (target.body instanceof Readable && target.body.destroyed)) {
        settle(() => reject(new GatewayError('bad_gateway', { detail: 'client closed the connection' })));
        return;
      }
      res.once('close', onClientClose);

      const slots = this.slotsFor(target.carriesToken, target.url.origin);
      const pool = target.carriesToken ? this.tokenPool : this.plainPool;
      const headers =
        target.contentLength === undefined ? target.headers : { ...target.headers, 'content-length': String(target.contentLength) };
      const secrets = target.secrets ?? [];
      const attempt = () => {
        const current: Exchange = new Exchange({
          response: (response) => settle(() => resolve(response)),
          failure: (error) => {
            if (settled) return;
            // A pooled keep-alive socket the upstream closed while it sat idle fails at once on
            // reuse: send once more, on another connection, when that cannot repeat a side effect.
            if (!resent && target.resendable && STALE_SOCKET_ERRORS.has((error as NodeJS.ErrnoException).code ?? '')) {
              resent = true;
              attempt();
              return;
            }
            // A body that failed on the client's side (stalled, aborted) says so itself.
            const failure =
              error instanceof GatewayError
                ? error
                : new GatewayError('bad_gateway', {
                    detail: `upstream ${target.url.origin}: ${(error as NodeJS.ErrnoException).code ?? error.message}`,
                    cause: error,
                  });
            settle(() => reject(failure));
          },
          earlyHints: (hints) => {
            if (res.headersSent) return;
            // A hint is written before the answer's hygiene runs: one that names a token goes nowhere.
            const links = [hints.link ?? []].flat().filter((link) => !carriesSecret(link, secrets));
            if (links.length > 0) res.writeEarlyHints({ link: links.length === 1 ? (links[0] as string) : links });
          },
          // The slot is released once undici has let go of the connection (and not for an
          // attempt that was superseded by a resend).
          finished: () => {
            if (exchange === current) process.nextTick(() => slots.leave());
          },
        });
        exchange = current;
        try {
          pool.dispatch(
            {
              origin: target.url.origin,
              path: target.url.pathname + target.url.search,
              method: target.method,
              headers,
              body: target.body ?? null,
            },
            current,
          );
        } catch (err) {
          exchange = undefined;
          slots.leave();
          settle(() =>
            reject(new GatewayError('bad_gateway', { detail: `upstream request refused: ${(err as Error).message}`, cause: err })),
          );
        }
      };
      withdraw = slots.enter(() => {
        withdraw = undefined;
        if (settled) slots.leave();
        else attempt();
      });
    });
  }

  stats(): ForwarderStats {
    let waiting = 0;
    let dispatched = 0;
    for (const slots of this.slots.values()) {
      waiting += slots.waiting.size;
      dispatched += slots.active;
    }
    let undiciPending = 0;
    for (const pool of [this.tokenPool, this.plainPool])
      for (const stats of Object.values(pool.stats)) undiciPending += (stats as { pending?: number }).pending ?? 0;
    return { waiting, dispatched, undiciPending };
  }

  /** Aborts every upstream request in flight and closes every pooled connection. */
  async close(): Promise<void> {
    await Promise.all([this.tokenPool.destroy(), this.plainPool.destroy()]);
    // Requests still waiting for a slot are started against the closed pools, which fail them.
    for (const slots of this.slots.values()) {
      for (const start of [...slots.waiting]) {
        if (!slots.waiting.delete(start)) continue;
        slots.active++;
        start();
      }
    }
  }
}
