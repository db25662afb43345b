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
 * A scrubbed body that declares at most 16 KiB (most API answers) is read whole first, decoded
 * in one call if compressed, redacted, and sent with its exact `content-length` in one socket
 * write together with the status line and headers. A larger or undeclared one streams, chunked,
 * and pieces written in one turn of the event loop go out in one write (the socket is corked
 * until the next tick).
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Transform } from 'node:stream';
import { GatewayError } from '../errors.ts';
import type { BodySink, UpstreamResponse } from './forward.ts';
import { browserResponseHeaders, type ResponseHeaderOptions } from './headers.ts';
import { bodyEncoding, type BodyEncoding, decodeWhole, decoderFor, Redactor } from './scrub.ts';

/** The gateway's settings for every answer (one object, built once). */
export interface RespondOptions {
  /** `scrub.bodies`. */
  scrub: boolean;
  /** Longest a browser may take no bytes while some are waiting for it (`limits.sendIdleTimeout`). */
  sendIdleTimeoutMs: number;
}

/** What one answer is checked against: the header rules and the tokens its request carried. */
export interface AnswerRules extends ResponseHeaderOptions {
  /** Set-Cookie lines of the gateway's own to add (a re-signed session cookie). */
  extraCookies: readonly string[];
}

/**
 * Whether a response to `method` with `status` carries a body (RFC 9110 section 6.4.1); a
 * declared `content-length: 0` says it has none either.
 */
export function hasResponseBody(method: string, status: number, headers?: IncomingHttpHeaders): boolean {
  return method !== 'HEAD' && status >= 200 && status !== 204 && status !== 205 && status !== 304 && headers?.['content-length'] !== '0';
}

/**
 * A scrubbed answer that declares at most this many bytes is read whole, redacted, and sent
 * with its new `content-length` in one write, headers included (a streamed one costs a
 * chunked framing and a second write for its end). As much as a stream holds anyway.
 */
const WHOLE_BODY_BYTES = 16 * 1024;
/** Such a body, compressed, is decoded in one call up to this size; one that grows more streams. */
const WHOLE_DECODED_BYTES = 256 * 1024;

/**
 * Relays `upstream` to the browser. `failed` answers an error while nothing has been sent yet
 * (a small body that does not decode, or breaks off before its end): the caller's error path,
 * which logs it, records it and closes the connection when the request is not complete.
 */
export function respond(
  res: ServerResponse,
  method: string,
  upstream: UpstreamResponse,
  rules: AnswerRules,
  options: RespondOptions,
  failed: (error: GatewayError) => void,
): void {
  const headers = browserResponseHeaders(upstream.headers, rules);
  if (rules.extraCookies.length > 0) headers['set-cookie'] = [...[headers['set-cookie'] ?? []].flat().map(String), ...rules.extraCookies];
  if (upstream.statusCode === 205) headers['content-length'] = '0';
  const head: Head = { res, status: upstream.statusCode, message: upstream.statusMessage || undefined, headers };
  if (!hasResponseBody(method, upstream.statusCode, upstream.headers)) {
    sendHead(head);
    upstream.relay(bodylessSink(res));
    return;
  }
  if (!options.scrub || rules.tokens.length === 0) {
    sendHead(head);
    upstream.relay(new BrowserSink(res, upstream, null, undefined, options.sendIdleTimeoutMs));
    return;
  }
  const encoding = bodyEncoding(upstream.headers['content-encoding']);
  if (encoding === undefined) {
    upstream.discard();
    throw new GatewayError('bad_gateway', {
      detail: `upstream body encoding ${String(upstream.headers['content-encoding'])} cannot be inspected for tokens`,
    });
  }
  // The body is sent decoded, and redaction may change its length.
  if (encoding !== 'identity') delete headers['content-encoding'];
  delete headers['content-length'];
  const redactor = new Redactor(rules.tokens);
  const declared = Number(upstream.headers['content-length']);
  if (declared > 0 && declared <= WHOLE_BODY_BYTES) {
    upstream.relay(new WholeBodySink(head, upstream, encoding, redactor, options.sendIdleTimeoutMs, failed));
    return;
  }
  sendHead(head);
  upstream.relay(new BrowserSink(res, upstream, decoderFor(encoding), redactor, options.sendIdleTimeoutMs));
}

/** The status line and headers of an answer, until they are sent. */
interface Head {
  res: ServerResponse;
  status: number;
  message: string | undefined;
  headers: OutgoingHttpHeaders;
}

function sendHead({ res, status, message, headers }: Head): void {
  res.writeHead(status, message, headers);
}

/**
 * A small scrubbed body (a declared length of at most WHOLE_BODY_BYTES): collected, decoded in
 * one call, redacted, then the head and the body go out together with the exact length. One
 * that decodes to more than WHOLE_DECODED_BYTES goes the streaming way after all; one that
 * does not decode as its encoding says is answered 502 (nothing was sent yet).
 */
class WholeBodySink implements BodySink {
  private readonly pieces: Buffer[] = [];
  private length = 0;

  constructor(
    private readonly head: Head,
    private readonly upstream: UpstreamResponse,
    private readonly encoding: BodyEncoding,
    private readonly redactor: Redactor,
    private readonly idleMs: number,
    private readonly failed: (error: GatewayError) => void,
  ) {}

  data(chunk: Buffer): boolean {
    // Bounded: undici reads no more than the declared length.
    this.pieces.push(chunk);
    this.length += chunk.length;
    return true;
  }

  end(): void {
    const { res } = this.head;
    const body = this.pieces.length === 1 ? (this.pieces[0] as Buffer) : Buffer.concat(this.pieces, this.length);
    let plain = body;
    if (this.encoding !== 'identity') {
      let decoded: Buffer | undefined;
      try {
        decoded = decodeWhole(this.encoding, body, WHOLE_DECODED_BYTES);
      } catch (error) {
        this.failed(new GatewayError('bad_gateway', { detail: `upstream body is not valid ${this.encoding}`, cause: error }));
        return;
      }
      if (decoded === undefined) {
        sendHead(this.head);
        const sink = new BrowserSink(res, this.upstream, decoderFor(this.encoding), this.redactor, this.idleMs);
        sink.data(body);
        sink.end();
        return;
      }
      plain = decoded;
    }
    const out = [...this.redactor.write(plain), ...this.redactor.end()];
    const whole = out.length === 1 ? (out[0] as Buffer) : Buffer.concat(out);
    this.head.headers['content-length'] = String(whole.length);
    sendHead(this.head);
    res.end(whole);
    // Written at once in the common case (finished right here). A browser that does not take
    // it all must within the deadline, like a stream's reader.
    if (!res.writableFinished) {
      const idle = setTimeout(() => {
        if (!res.writableFinished) res.destroy();
      }, this.idleMs);
      res.once('close', () => clearTimeout(idle));
    }
  }

  fail(error: Error): void {
    // Nothing is out yet: the browser gets the gateway's 502 (or nothing, if it is gone).
    const code = (error as NodeJS.ErrnoException).code ?? error.message;
    this.failed(new GatewayError('bad_gateway', { detail: `upstream body broke off: ${code}`, cause: error }));
  }
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
    // 'drain' that false promised when the socket takes them at once (nodejs/node#60432; the
    // 24.22.3 this project tests has the fix, nodejs/node#64038): the relay, paused until
    // 'drain', hung. A corked socket measures its own
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
