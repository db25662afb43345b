/**
 * The streamed ways of an answer's body to the browser: piece by piece from undici's data
 * callback (decoded and redacted on the way when the request carried tokens), or nothing for
 * an answer without a body.
 *
 * Backpressure: when the browser's connection does not take a piece (`res.write` returns
 * false), undici stops reading the upstream until 'drain'. A browser that takes nothing for
 * `limits.sendIdleTimeout` while the gateway has bytes for it is disconnected, which aborts the
 * upstream request: a reader that stopped cannot hold an upstream connection. A slow stream
 * the browser does read (server-sent events, a long download) is never cut. Pieces written in
 * one turn of the event loop go out in one write (the socket is corked until the next tick).
 */
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Transform } from 'node:stream';
import type { BodySink, UpstreamResponse } from './forward.ts';
import type { Redactor } from './scrub.ts';

/** Whatever an answer without a body carries (nothing, or bytes a broken upstream sent) is dropped. */
export function bodylessSink(res: ServerResponse): BodySink {
  return {
    data: () => true,
    end: () => void res.end(),
    fail: () => void res.destroy(),
  };
}

export class BrowserSink implements BodySink {
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
