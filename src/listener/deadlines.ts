/**
 * Deadlines on the public listener, so a slow client cannot hold a connection (and the memory
 * and upstream socket behind it) for as long as it likes:
 *   - Node enforces `headersTimeout` (request line + headers) and `requestTimeout` (the whole
 *     request, body included) and reports a miss as ERR_HTTP_REQUEST_TIMEOUT to the
 *     clientErrorHandler, which answers the gateway's JSON 408;
 *   - `keepAliveTimeout` closes idle kept-alive connections;
 *   - `bodyIdleGuard` bounds the silence between two pieces of a body on the endpoints fastify
 *     parses itself (the proxy bounds the bodies it streams on its own).
 */
import type { ServerOptions } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { LimitsConfig } from '../config/load.ts';
import { GatewayError, writeRawError } from '../errors.ts';

/**
 * Node checks the headers and request deadlines on an interval (30 s by default), so a 10 s
 * deadline could take 40 s to fire. A quarter of the shortest deadline, within [50 ms, 1 s],
 * keeps the overshoot small at the cost of one pass over open connections per tick.
 */
function checkingInterval(limits: LimitsConfig): number {
  return Math.min(1_000, Math.max(50, Math.floor(Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs) / 4)));
}

/**
 * The fastify options that carry the deadlines. `http` reaches `http.createServer`, which
 * validates the pair (headersTimeout <= requestTimeout, also checked in the configuration);
 * fastify then sets requestTimeout and keepAliveTimeout on the server from its own options.
 */
export function listenerDeadlines(limits: LimitsConfig): { http: ServerOptions; requestTimeout: number; keepAliveTimeout: number } {
  return {
    http: {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      connectionsCheckingInterval: checkingInterval(limits),
    },
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
  };
}

function declaresBody(request: FastifyRequest): boolean {
  const length = request.headers['content-length'];
  return request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * A fastify preParsing hook: the body reaches the parser through a pass-through whose timer
 * restarts with every piece. When the body goes quiet for `idleMs` the gateway answers 408
 * `request_timeout` itself and closes the connection; the half-read body never reaches the
 * parser, so the handler never runs on it.
 */
export function bodyIdleGuard(idleMs: number) {
  return async function guardBody(
    request: FastifyRequest,
    reply: FastifyReply,
    payload: NodeJS.ReadableStream,
  ): Promise<NodeJS.ReadableStream> {
    if (!declaresBody(request)) return payload;
    const stop = () => clearTimeout(timer);
    const guarded = new Transform({
      transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback) {
        timer.refresh();
        done(null, chunk);
      },
    });
    const timer = setTimeout(() => {
      payload.unpipe(guarded);
      const error = new GatewayError('request_timeout', { detail: `no request body data for ${idleMs} ms` });
      request.log.info({ code: error.code, detail: error.detail }, 'request refused');
      // `connection: close` makes Node end the connection once this answer is out: the rest of
      // the body, if it ever comes, is never read as a next request.
      writeRawError(reply.raw, error, { connection: 'close' });
    }, idleMs);
    payload.once('end', stop);
    reply.raw.once('close', stop);
    payload.pipe(guarded);
    return guarded;
  };
}
