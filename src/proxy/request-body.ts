/**
 * The framing rule for request bodies, and the deadlines and budget for reading them.
 *
 * Framing is the gateway's own: what the upstream gets is derived from what Node's parser
 * accepted, never copied from the client's headers. A body has a known length (`Content-Length`)
 * or is chunked; the forwarder (undici) then writes `content-length` or chunked framing itself.
 *
 * - `Transfer-Encoding` is accepted only as exactly `chunked`: any other coding would change
 *   the meaning of the bytes the gateway forwards de-chunked.
 * - GET, HEAD, DELETE and OPTIONS have no defined body semantics, and many origins ignore a
 *   body there — even one of declared length (a "CL.0" desync): such an origin would parse the
 *   body as a second request, one the gateway never routed. Browsers never send a body on GET,
 *   HEAD or OPTIONS (fetch refuses to), so any body on them is refused (400, connection closed).
 *   APIs do use DELETE bodies: there a declared length is forwarded with that length (on a
 *   connection undici then closes), and a body of unknown length (chunked) is refused.
 * - A body must keep arriving: a pause longer than `limits.bodyIdleTimeout` between two pieces
 *   fails the request with 408, so a slow client cannot hold a connection or a buffer forever.
 * - Buffering (for a 401 replay) is bounded per request (`REPLAY_BODY_LIMIT`) and for all
 *   requests together (`limits.maxBufferedBytes`); past the shared budget the body streams and
 *   simply is not replayed.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { Transform, type Readable } from 'node:stream';
import { GatewayError } from '../errors.ts';

export const REPLAY_BODY_LIMIT = 1024 * 1024;

/** Methods whose requests have no defined body semantics (RFC 9110 sections 9.3.1, 9.3.2, 9.3.5, 9.3.7). */
const BODYLESS_METHODS = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS']);
/** Of those, the ones no browser ever sends a body with: any body is refused. */
const NO_BODY_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export type Framing = { kind: 'none' } | { kind: 'sized'; length: number } | { kind: 'chunked' };

export function requestFraming(method: string, headers: IncomingHttpHeaders): Framing {
  const transferEncoding = headers['transfer-encoding'];
  if (transferEncoding !== undefined) {
    if (transferEncoding.trim().toLowerCase() !== 'chunked') {
      throw new GatewayError('invalid_request', {
        message: 'Only chunked transfer coding is accepted.',
        detail: `transfer-encoding ${transferEncoding}`,
      });
    }
    if (BODYLESS_METHODS.has(method)) {
      const message = NO_BODY_METHODS.has(method)
        ? `A ${method} request cannot have a body.`
        : `A ${method} request body needs a Content-Length.`;
      throw new GatewayError('invalid_request', { message, detail: `chunked body on ${method}` });
    }
    return { kind: 'chunked' };
  }
  const declared = headers['content-length'];
  if (declared === undefined) return { kind: 'none' };
  // Node's parser has already refused anything but one run of digits.
  const length = Number(declared);
  if (length === 0) return { kind: 'none' };
  if (NO_BODY_METHODS.has(method)) {
    throw new GatewayError('invalid_request', {
      message: `A ${method} request cannot have a body.`,
      detail: `body of ${length} bytes on ${method}`,
    });
  }
  return { kind: 'sized', length };
}

/**
 * The request body as the upstream reads it, with the idle deadline applied: every piece that
 * passes resets the clock; after `idleMs` without one the body fails with 408 `request_timeout`
 * (answered with `Connection: close`) — unless the body is paused because the gateway itself
 * is not reading yet (waiting for a free upstream connection, or an upstream slow to take it).
 * A browser that goes away mid-body fails it too, so the upstream request is torn down.
 */
export function bodyWithIdleDeadline(req: IncomingMessage, idleMs: number): Readable {
  const timer = setTimeout(() => {
    if (req.isPaused()) {
      timer.refresh();
      return;
    }
    // The connection stays open just long enough for the 408, which closes it.
    guard.destroy(new GatewayError('request_timeout', { detail: 'request body stalled' }));
  }, idleMs);
  const guard = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      timer.refresh();
      callback(null, chunk);
    },
  });
  guard.once('close', () => clearTimeout(timer));
  // Whoever reads the body (undici, readBody) sees its error; one that is never read (the
  // request failed before it was dispatched) must not take the process down with it.
  guard.on('error', () => {});
  const onClientGone = () => {
    if (!req.complete) guard.destroy(new GatewayError('bad_gateway', { detail: 'client closed the connection' }));
  };
  if (req.destroyed) onClientGone();
  else req.once('close', onClientGone);
  req.pipe(guard);
  return guard;
}

/** The shared budget of request-body bytes held in memory at once. */
export class BufferBudget {
  private used = 0;

  constructor(private readonly limit: number) {}

  /** Reserves `bytes`; false when that would exceed the budget. */
  reserve(bytes: number): boolean {
    if (this.used + bytes > this.limit) return false;
    this.used += bytes;
    return true;
  }

  release(bytes: number): void {
    this.used -= bytes;
  }
}

/** Reads a body of declared length into memory, failing with 408 when it stalls. */
export async function readBody(req: IncomingMessage, idleMs: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of bodyWithIdleDeadline(req, idleMs)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
