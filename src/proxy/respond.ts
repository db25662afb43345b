/**
 * Writing an upstream response to the browser: header hygiene (headers.ts), then the body,
 * relayed from undici's data callback straight into the browser's response (no stream in
 * between). When the request carried tokens and `scrub.bodies` is on, the body — whatever its
 * content type — is decoded if compressed and run through the token redactor (scrub.ts) piece
 * by piece. A token is a long random byte string, so matching it in binary bodies
 * (octet-stream, protobuf, images) cannot hit by accident, and an upstream that echoes the
 * Authorization header into any format is covered.
 *
 * Answers that have no body — to HEAD, 1xx, 204, 205, 304, and any with a declared
 * `content-length: 0` — are relayed as they are, `content-encoding` and `content-length`
 * included: there is nothing to decode, and decoding an empty stream would fail. A 205 goes
 * out with `content-length: 0` whatever the upstream said (RFC 9110 section 15.3.6).
 *
 * Backpressure: when the browser's connection does not take a piece (`res.write` returns
 * false), undici stops reading the upstream until 'drain'. A browser that takes nothing for
 * `limits.sendIdleTimeout` while the gateway has bytes for it is disconnected, which aborts the
 * upstream request: a reader that stopped cannot hold an upstream connection. A slow stream
 * the browser does read (server-sent events, a long download) is never cut.
 *
 * Pieces written in one turn of the event loop go out in one write (the socket is corked
 * until the next tick): a short body and the chunked end marker share a packet.
 */
import type { ServerResponse } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import type { Transform } from 'node:stream';
import { GatewayError } from '../errors.ts';
import type { BodySink, UpstreamResponse } from './forward.ts';
import { browserResponseHeaders } from './headers.ts';
import { decoderFor, Redactor } from './scrub.ts';

export interface RespondOptions {
  dropNames: ReadonlySet<string>;
  gatewayCookies: ReadonlySet<string>;
  /** Tokens the request carried: never to be echoed back. */
  tokens: readonly string[];
  scrub: boolean;
  extraCookies: readonly string[];
  /** Longest a browser may take no bytes while some are waiting for it (`limits.sendIdleTimeout`). */
  sendIdleTimeoutMs: number;
}

/**
 * Whether a response to `method` with `status` carries a body (RFC 9110 section 6.4.1); a
 * declared `content-length: 0` says it has none either.
 */
export function hasResponseBody(method: string, status: number, headers?: IncomingHttpHeaders): boolean {
  return method !== 'HEAD' && status >= 200 && status !== 204 && status !== 205 && status !== 304 && headers?.['content-length'] !== '0';
}

export function respond(res: ServerResponse, method: string, upstream: UpstreamResponse, options: RespondOptions): void {
  const headers = browserResponseHeaders(upstream.headers, options);
  if (options.extraCookies.length > 0)
    headers['set-cookie'] = [...[headers['set-cookie'] ?? []].flat().map(String), ...options.extraCookies];
  const bodyless = !hasResponseBody(method, upstream.statusCode, upstream.headers);
  let decoder: Transform | null = null;
  let redactor: Redactor | undefined;
  if (options.scrub && options.tokens.length > 0 && !bodyless) {
    const found = decoderFor(upstream.headers['content-encoding']);
    if (found === undefined) {
      upstream.discard();
      throw new GatewayError('bad_gateway', {
        detail: `upstream body encoding ${String(upstream.headers['content-encoding'])} cannot be inspected for tokens`,
      });
    }
    decoder = found;
    if (decoder) delete headers['content-encoding'];
    redactor = new Redactor(options.tokens);
    delete headers['content-length'];
  }
  if (upstream.statusCode === 205) headers['content-length'] = '0';
  res.writeHead(upstream.statusCode, upstream.statusMessage || undefined, headers);
  upstream.relay(bodyless ? bodylessSink(res) : new BrowserSink(res, upstream, decoder, redactor, options.sendIdleTimeoutMs));
}

/** Whatever an answer without a body carries (nothing, or bytes a broken upstream sent) is dropped. */
function bodylessSink(res: ServerResponse): BodySink {
  return {
    data: () => true,
    end: () => void res.end(),
    fail: () => void res.destroy(),
  };
}

class BrowserSink implements BodySink {
  /** The socket corked until the next tick, while it is. */
  private corked: Socket | undefined;
  private idle: NodeJS.Timeout | undefined;
  /** Bytes handed to the decoder: an empty compressed body is not fed to it at all. */
  private decoded = 0;
  private readonly uncork = () => {
    const socket = this.corked;
    this.corked = undefined;
    socket?.uncork();
  };

  constructor(
    private readonly res: ServerResponse,
    upstream: UpstreamResponse,
    private readonly decoder: Transform | null,
    private readonly redactor: Redactor | undefined,
    private readonly idleMs: number,
  ) {
    res.on('drain', () => {
      clearTimeout(this.idle);
      this.idle = undefined;
      if (decoder) decoder.resume();
      else upstream.resume();
    });
    if (decoder) {
      decoder.on('data', (out: Buffer) => {
        if (!this.send(out)) decoder.pause();
      });
      decoder.on('drain', () => upstream.resume());
      decoder.once('end', () => this.finish());
      decoder.once('error', (error) => this.fail(error));
    }
  }

  data(chunk: Buffer): boolean {
    if (!this.decoder) return this.send(chunk);
    this.decoded += chunk.length;
    return this.decoder.write(chunk);
  }

  end(): void {
    if (this.decoder && this.decoded > 0) this.decoder.end();
    else this.finish();
  }

  fail(_error: Error): void {
    clearTimeout(this.idle);
    this.decoder?.destroy();
    // The status line is out: all the browser can learn is that the body did not complete.
    this.res.destroy();
  }

  /** Redacts and writes one piece of the (decoded) body; false when the browser is behind. */
  private send(chunk: Buffer): boolean {
    // The socket is corked, not the response. Node 22's ServerResponse.cork() holds chunked
    // pieces in a buffer of its own, write() returns false once that buffer reaches the
    // highWaterMark (64 KiB), and uncork() hands them to the socket without ever emitting the
    // 'drain' that false promised when the socket takes them at once (nodejs/node#60432, fixed
    // in Node 24): the relay, paused until 'drain', hung. A corked socket measures its own
    // buffer and emits 'drain' when that empties, which the response passes on on every Node.
    // (A pipelined response that has no socket yet is buffered by Node until it has one.)
    const socket = this.res.socket;
    if (!this.corked && socket) {
      this.corked = socket;
      socket.cork();
      process.nextTick(this.uncork);
    }
    let ok = true;
    if (this.redactor) {
      for (const piece of this.redactor.write(chunk)) ok = this.res.write(piece) && ok;
    } else ok = this.res.write(chunk);
    if (!ok) this.waiting();
    return ok;
  }

  private finish(): void {
    if (this.redactor) for (const piece of this.redactor.end()) if (!this.res.write(piece)) this.waiting();
    // Our cork is released first: end() uncorks the socket completely on its own, and the
    // pending uncork would then take away a cork of whoever writes to the socket next.
    if (this.corked) this.uncork();
    this.res.end();
  }

  /** The browser has bytes it has not taken: it must take some within the deadline. */
  private waiting(): void {
    if (this.idle) return;
    this.idle = setTimeout(() => {
      if (!this.res.writableFinished) this.res.destroy();
    }, this.idleMs);
  }
}
