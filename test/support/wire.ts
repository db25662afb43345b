/**
 * A raw HTTP/1.1 connection for tests that look at bytes: requests are written exactly as given
 * (any framing, any header, a body trickled or never sent), and responses are parsed from the
 * bytes the server wrote, one after another on the same socket. The parser is strict on purpose:
 * an answer whose framing does not match its bytes leaves garbage in front of the next status
 * line, and the next `next()` fails instead of guessing.
 *
 * `until` (from time.ts, re-exported here) is the bounded wait used with it: poll a condition,
 * fail with a description when it does not come true in time.
 */
import { connect, type Socket } from 'node:net';

export interface WireResponse {
  status: number;
  /** Status line and header lines exactly as received (latin1), without the blank line. */
  head: string;
  /** Header fields in order, names as sent. */
  fields: Array<[string, string]>;
  /** The body as framed: content-length bytes, de-chunked chunks, or everything up to close. */
  body: Buffer;
  framing: 'none' | 'content-length' | 'chunked' | 'close';
  /** Values of a header (case-insensitive), in order. */
  all(name: string): string[];
  /** The first value of a header, or undefined. */
  get(name: string): string | undefined;
}

const CRLF2 = Buffer.from('\r\n\r\n');

export class Wire {
  readonly socket: Socket;
  private buffer = Buffer.alloc(0);
  private ended = false;
  private wake: (() => void) | undefined;
  readonly closed: Promise<void>;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.wake?.();
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.ended = true;
        this.wake?.();
        resolve();
      }),
    );
  }

  /** Connects to 127.0.0.1:`port`, optionally from another loopback address (e.g. 127.0.0.2). */
  static open(port: number, options: { localAddress?: string } = {}): Promise<Wire> {
    return new Promise((resolve, reject) => {
      const socket = connect({ port, host: '127.0.0.1', ...(options.localAddress ? { localAddress: options.localAddress } : {}) });
      socket.once('connect', () => resolve(new Wire(socket)));
      socket.once('error', reject);
    });
  }

  get isClosed(): boolean {
    return this.ended;
  }

  /** Bytes received and not yet consumed by `next()`. */
  get unread(): Buffer {
    return this.buffer;
  }

  write(data: string | Buffer): void {
    this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Resolves true once the server has closed the connection, false if it is still open after `timeoutMs`. */
  async waitClosed(timeoutMs: number): Promise<boolean> {
    if (this.ended) return true;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    const result = await Promise.race([this.closed.then(() => true), expired]);
    clearTimeout(timer);
    return result;
  }

  /**
   * The next response on the connection (interim 1xx answers are responses too). `method` is the
   * request's method (a HEAD answer has no body whatever its headers say).
   */
  async next(options: { method?: string; timeoutMs?: number } = {}): Promise<WireResponse> {
    const deadline = Date.now() + (options.timeoutMs ?? 10_000);
    for (;;) {
      const parsed = this.parse(options.method ?? 'GET');
      if (parsed) return parsed;
      if (this.ended)
        throw new Error(
          `connection closed before a complete response; received ${JSON.stringify(this.buffer.toString('latin1').slice(0, 300))}`,
        );
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(
          `no complete response within the time allowed; received ${JSON.stringify(this.buffer.toString('latin1').slice(0, 300))}`,
        );
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  private parse(method: string): WireResponse | undefined {
    const end = this.buffer.indexOf(CRLF2);
    if (end === -1) return undefined;
    const head = this.buffer.subarray(0, end).toString('latin1');
    const [statusLine = '', ...lines] = head.split('\r\n');
    const match = /^HTTP\/1\.1 (\d{3})(?: [^\r\n]*)?$/.exec(statusLine);
    if (!match) throw new Error(`not a status line: ${JSON.stringify(statusLine)} (bytes left over from the previous answer?)`);
    const status = Number(match[1]);
    const fields = lines.map((line): [string, string] => {
      const colon = line.indexOf(':');
      if (colon <= 0) throw new Error(`malformed header line ${JSON.stringify(line)}`);
      return [line.slice(0, colon), line.slice(colon + 1).trim()];
    });
    const all = (name: string) => fields.filter(([key]) => key.toLowerCase() === name.toLowerCase()).map(([, value]) => value);
    const get = (name: string) => all(name)[0];
    const start = end + 4;
    const done = (body: Buffer, consumed: number, framing: WireResponse['framing']): WireResponse => {
      this.buffer = this.buffer.subarray(consumed);
      return { status, head, fields, body, framing, all, get };
    };

    if (method === 'HEAD' || (status >= 100 && status < 200) || status === 204 || status === 304)
      return done(Buffer.alloc(0), start, 'none');
    const te = all('transfer-encoding').join(',').toLowerCase();
    if (te) {
      if (te.trim() !== 'chunked') throw new Error(`unexpected transfer-encoding ${te}`);
      const chunks: Buffer[] = [];
      let at = start;
      for (;;) {
        const lineEnd = this.buffer.indexOf('\r\n', at);
        if (lineEnd === -1) return undefined;
        const sizeText = this.buffer.subarray(at, lineEnd).toString('latin1');
        if (!/^[0-9a-fA-F]+$/.test(sizeText)) throw new Error(`bad chunk size line ${JSON.stringify(sizeText)}`);
        const size = parseInt(sizeText, 16);
        if (size === 0) {
          // No trailers expected: the last chunk is followed by one empty line.
          if (this.buffer.length < lineEnd + 4) return undefined;
          if (this.buffer.subarray(lineEnd + 2, lineEnd + 4).toString('latin1') !== '\r\n')
            throw new Error('trailers or garbage after the last chunk');
          return done(Buffer.concat(chunks), lineEnd + 4, 'chunked');
        }
        if (this.buffer.length < lineEnd + 2 + size + 2) return undefined;
        chunks.push(this.buffer.subarray(lineEnd + 2, lineEnd + 2 + size));
        if (this.buffer.subarray(lineEnd + 2 + size, lineEnd + 4 + size).toString('latin1') !== '\r\n')
          throw new Error('chunk not followed by CRLF');
        at = lineEnd + 4 + size;
      }
    }
    const lengths = all('content-length');
    if (lengths.length > 0) {
      if (lengths.length > 1 || !/^\d+$/.test(lengths[0] as string)) throw new Error(`bad content-length ${JSON.stringify(lengths)}`);
      const length = Number(lengths[0]);
      if (this.buffer.length < start + length) return undefined;
      return done(Buffer.from(this.buffer.subarray(start, start + length)), start + length, 'content-length');
    }
    if (!this.ended) return undefined;
    return done(Buffer.from(this.buffer.subarray(start)), this.buffer.length, 'close');
  }
}

/** Serialises a request: request line, `host`, the given header lines (in order), blank line, body. */
export function requestBytes(
  method: string,
  target: string,
  headers: Array<[string, string]> | Record<string, string>,
  body: string | Buffer = '',
): Buffer {
  const list = Array.isArray(headers) ? headers : Object.entries(headers);
  const hasHost = list.some(([name]) => name.toLowerCase() === 'host');
  const lines = [
    `${method} ${target} HTTP/1.1`,
    ...(hasHost ? [] : ['host: 127.0.0.1']),
    ...list.map(([name, value]) => `${name}: ${value}`),
  ];
  return Buffer.concat([
    Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'),
    typeof body === 'string' ? Buffer.from(body, 'latin1') : body,
  ]);
}

/** The error code of a gateway JSON error body, or undefined. */
export function errorCode(response: WireResponse): string | undefined {
  try {
    return (JSON.parse(response.body.toString('utf8')) as { error?: string }).error;
  } catch {
    return undefined;
  }
}

export { until } from './time.ts';
