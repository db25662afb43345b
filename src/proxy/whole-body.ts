/**
 * A small scrubbed answer, whole: its body collected, decoded in one call if compressed,
 * redacted, then sent with its exact `content-length` in one socket write together with the
 * status line and headers (a streamed one costs a chunked framing and a second write for its
 * end).
 */
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { GatewayError } from '../errors.ts';
import type { BodySink, UpstreamResponse } from './forward.ts';
import { type BodyEncoding, decodeWhole, decoderFor, type Redactor } from './scrub.ts';
import { BrowserSink } from './stream-sink.ts';

/**
 * A scrubbed answer that declares at most this many bytes is read whole, redacted, and sent
 * with its new `content-length` in one write, headers included (a streamed one costs a
 * chunked framing and a second write for its end). As much as a stream holds anyway.
 */
export const WHOLE_BODY_BYTES = 16 * 1024;
/** Such a body, compressed, is decoded in one call up to this size; one that grows more streams. */
const WHOLE_DECODED_BYTES = 256 * 1024;

/** The status line and headers of an answer, until they are sent. */
export interface Head {
  res: ServerResponse;
  status: number;
  message: string | undefined;
  headers: OutgoingHttpHeaders;
}

export function sendHead({ res, status, message, headers }: Head): void {
  res.writeHead(status, message, headers);
}

/**
 * A small scrubbed body (a declared length of at most WHOLE_BODY_BYTES): collected, decoded in
 * one call, redacted, then the head and the body go out together with the exact length. One
 * that decodes to more than WHOLE_DECODED_BYTES goes the streaming way after all; one that
 * does not decode as its encoding says is answered 502 (nothing was sent yet).
 */
export class WholeBodySink implements BodySink {
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
