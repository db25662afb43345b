/**
 * An upstream for tests of the proxy hop itself: it records every request the moment its
 * headers arrive (a request whose body never comes is still seen), knows which requests are
 * still open (neither answered nor closed), and offers the answers the hop has to get right:
 *
 * - `/hang`: never answers; the request stays open until the gateway closes it.
 * - `/bodyless?status=200|204|304`: headers only, `content-encoding: gzip`, an ETag and a
 *   token-carrying header (for hygiene); a 200 says the content-length its GET would have.
 * - `/etag`: 200 with a gzip body and an ETag; 304 (gzip-labelled, no body) when `If-None-Match`
 *   names that ETag.
 * - `/typed?type=<content type|none>&encoding=gzip|br`: a body of that type that carries the
 *   request's bearer token, built the way such a body really looks (`typedBody`); the types of
 *   `ENCODED_BODIES` carry it encoded (base64 inside grpc-web-text, `\/` in JSON).
 * - anything else: JSON echo of method, url, headers (raw names) and body length.
 *
 * `?id=` on any request names it, so a test can wait for that request to arrive or to close.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { bearerOf } from './upstream.ts';

export interface HopRequest {
  id: string | undefined;
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  /** Header names and values exactly as received, flattened pairs. */
  rawHeaders: string[];
  /** Set when the request has been answered or its connection closed. */
  closed: boolean;
  /** The connection closed before the answer was complete. */
  aborted: boolean;
  /** Body bytes received so far. */
  bodyBytes: number;
  peer: string | undefined;
}

export interface HopUpstream {
  url: string;
  port: number;
  requests: HopRequest[];
  /** Requests neither answered nor closed yet. */
  open(): HopRequest[];
  /** TCP connections currently open to this server. */
  connections(): number;
  /** The most connections open at once since the start or the last `resetPeak()`. */
  peakConnections(): number;
  resetPeak(): void;
  byId(id: string): HopRequest | undefined;
  close(): Promise<void>;
}

export const ETAG = '"v1-hop"';
/** The length a HEAD answer of `/bodyless` announces (that of the GET it describes). */
export const ANNOUNCED_LENGTH = 1234;

/** Content types the scrubbing tests cover with the token as it is; `none` means no content-type header. */
export const TYPED_BODIES = [
  'application/octet-stream',
  'application/jwt',
  'application/x-protobuf',
  'application/msgpack',
  'multipart/form-data',
  'text/csv',
  'image/png',
  'none',
] as const;

/**
 * Content types whose body carries the token only encoded, as real senders write it:
 * `application/grpc-web-text` is base64 of the binary gRPC frames (the token is in a protobuf
 * string inside the message frame, so its bytes appear nowhere in the body as sent), and
 * `application/json` escapes `/` as `\/` (legal JSON, what PHP's json_encode and others emit),
 * which changes any token with a `/` in it. A scrubber that matches the token's bytes finds
 * neither.
 */
export const ENCODED_BODIES = ['application/grpc-web-text', 'application/json'] as const;
export type TypedBody = (typeof TYPED_BODIES)[number] | (typeof ENCODED_BODIES)[number];

/** The trailer frame every grpc-web-text answer ends with. */
export const GRPC_TRAILER = 'grpc-status:0\r\n';

/**
 * A grpc-web-text body: base64 of a message frame (flag 0, 32-bit length, a protobuf message
 * whose field 1 is `token` and field 2 the varint 150) followed by the trailer frame (flag 0x80).
 * `prefix` bytes in front of the token move it across base64's 3-byte groups.
 */
export function grpcWebTextBody(token: string, prefix = 1): Buffer {
  const t = Buffer.from(token, 'latin1');
  const message = Buffer.concat([Buffer.alloc(prefix, 0x07), Buffer.from([0x0a, ...varint(t.length)]), t, Buffer.from([0x10, 0x96, 0x01])]);
  const header = Buffer.alloc(5);
  header.writeUInt32BE(message.length, 1);
  const trailer = Buffer.from(GRPC_TRAILER, 'latin1');
  const trailerHeader = Buffer.alloc(5);
  trailerHeader[0] = 0x80;
  trailerHeader.writeUInt32BE(trailer.length, 1);
  return Buffer.from(Buffer.concat([header, message, trailerHeader, trailer]).toString('base64'), 'latin1');
}

/**
 * A body of `type` holding `token` once or twice, and the content-type header to send. The
 * parts around the token are deterministic, so the scrubbed body is known exactly:
 * `replaceAll(body, token, '[redacted]')` is what must reach the browser (length prefixes
 * inside the body still describe the token: the scrubber works on bytes, not on formats).
 */
export function typedBody(type: TypedBody, token: string): { body: Buffer; contentType: string | undefined } {
  const t = Buffer.from(token, 'latin1');
  const binary = Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 37) % 256));
  switch (type) {
    case 'application/octet-stream':
      return { body: Buffer.concat([binary, t, binary, t]), contentType: type };
    case 'application/jwt':
      return { body: t, contentType: type };
    case 'application/x-protobuf':
      // field 1 (string) = token, field 2 (varint) = 150; the length prefix is for the real token.
      return { body: Buffer.concat([Buffer.from([0x0a, ...varint(t.length)]), t, Buffer.from([0x10, 0x96, 0x01])]), contentType: type };
    case 'application/msgpack':
      // {"token": <str>}: fixmap(1), fixstr "token", str16 of the token.
      return {
        body: Buffer.concat([
          Buffer.from([0x81, 0xa5]),
          Buffer.from('token'),
          Buffer.from([0xda, (t.length >> 8) & 0xff, t.length & 0xff]),
          t,
        ]),
        contentType: type,
      };
    case 'multipart/form-data': {
      const boundary = 'hop-boundary-7MA4YWxkTrZu0gW';
      const text = `--${boundary}\r\ncontent-disposition: form-data; name="authorization"\r\n\r\nBearer ${token}\r\n--${boundary}\r\ncontent-disposition: form-data; name="blob"; filename="t.bin"\r\ncontent-type: application/octet-stream\r\n\r\n`;
      return {
        body: Buffer.concat([Buffer.from(text, 'latin1'), binary, t, Buffer.from(`\r\n--${boundary}--\r\n`)]),
        contentType: `multipart/form-data; boundary=${boundary}`,
      };
    }
    case 'text/csv':
      return {
        body: Buffer.from(`user,header\r\nalice,"Bearer ${token}"\r\nbob,${token}\r\n`, 'latin1'),
        contentType: 'text/csv; charset=utf-8',
      };
    case 'application/grpc-web-text':
      return { body: grpcWebTextBody(token), contentType: type };
    case 'application/json':
      return {
        body: Buffer.from(
          JSON.stringify({ note: 'the token with / escaped', token: '@' }).replace('"@"', `"${token.replaceAll('/', '\\/')}"`),
          'latin1',
        ),
        contentType: type,
      };
    case 'image/png': {
      const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
      const text = Buffer.concat([Buffer.from('Comment\0'), t]);
      const length = Buffer.alloc(4);
      length.writeUInt32BE(text.length);
      return {
        body: Buffer.concat([signature, length, Buffer.from('tEXt'), text, Buffer.from([0xde, 0xad, 0xbe, 0xef]), binary]),
        contentType: type,
      };
    }
    case 'none':
      return { body: Buffer.concat([binary, Buffer.from(' token='), t, binary]), contentType: undefined };
  }
}

/** `haystack` with every occurrence of `needle` replaced by `replacement`. */
export function replaceAll(haystack: Buffer, needle: string, replacement: string): Buffer {
  const pieces: Buffer[] = [];
  const search = Buffer.from(needle, 'latin1');
  let at = 0;
  for (let index = haystack.indexOf(search); index !== -1; index = haystack.indexOf(search, at)) {
    pieces.push(haystack.subarray(at, index), Buffer.from(replacement, 'latin1'));
    at = index + search.length;
  }
  pieces.push(haystack.subarray(at));
  return Buffer.concat(pieces);
}

function varint(value: number): number[] {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest & 0x7f) | 0x80);
    rest >>>= 7;
  }
  bytes.push(rest);
  return bytes;
}

function answer(res: ServerResponse, status: number, headers: Record<string, string | number>, body?: Buffer): void {
  res.writeHead(status, headers);
  res.end(body);
}

export async function startHopUpstream(): Promise<HopUpstream> {
  const requests: HopRequest[] = [];
  const sockets = new Set<Socket>();
  let peak = 0;

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://upstream.invalid');
    const entry: HopRequest = {
      id: url.searchParams.get('id') ?? undefined,
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      closed: false,
      aborted: false,
      bodyBytes: 0,
      peer: req.socket.remoteAddress,
    };
    requests.push(entry);
    res.once('close', () => {
      entry.closed = true;
      entry.aborted = !res.writableFinished;
    });
    req.on('data', (chunk: Buffer) => (entry.bodyBytes += chunk.length));
    req.on('error', () => {});

    const path = url.pathname;
    const token = bearerOf(req.headers);
    if (path.endsWith('/hang')) return;
    req.resume();
    req.once('end', () => {
      if (path.endsWith('/bodyless')) {
        const status = Number(url.searchParams.get('status') ?? '200');
        answer(res, status, {
          'content-type': 'application/json',
          'content-encoding': 'gzip',
          etag: ETAG,
          'x-access-token': token,
          'x-hop': 'bodyless',
          ...(status === 200 ? { 'content-length': ANNOUNCED_LENGTH } : {}),
        });
        return;
      }
      if (path.endsWith('/etag')) {
        if (req.headers['if-none-match'] === ETAG) {
          answer(res, 304, {
            'content-encoding': 'gzip',
            etag: ETAG,
            'cache-control': 'max-age=0, must-revalidate',
            'x-hop': 'not-modified',
          });
        } else {
          const body = gzipSync(JSON.stringify({ version: 1, token }));
          answer(
            res,
            200,
            {
              'content-type': 'application/json',
              'content-encoding': 'gzip',
              'content-length': body.length,
              etag: ETAG,
              'cache-control': 'max-age=0, must-revalidate',
            },
            body,
          );
        }
        return;
      }
      if (path.endsWith('/typed')) {
        const { body, contentType } = typedBody((url.searchParams.get('type') ?? 'none') as TypedBody, token);
        const encoding = url.searchParams.get('encoding');
        const payload = encoding === 'gzip' ? gzipSync(body) : encoding === 'br' ? brotliCompressSync(body) : body;
        answer(
          res,
          200,
          {
            ...(contentType ? { 'content-type': contentType } : {}),
            ...(encoding ? { 'content-encoding': encoding } : {}),
            'content-length': payload.length,
          },
          payload,
        );
        return;
      }
      const text = JSON.stringify({ method: entry.method, url: entry.url, rawHeaders: entry.rawHeaders, bodyBytes: entry.bodyBytes });
      answer(res, 200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }, Buffer.from(text));
    });
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    peak = Math.max(peak, sockets.size);
    // A connection the gateway has closed (FIN or reset) is no longer one it holds, even if this
    // side has not finished closing it yet: counting it until 'close' would see an old socket
    // and its replacement at once.
    const gone = () => sockets.delete(socket);
    socket.once('end', gone);
    socket.once('error', gone);
    socket.once('close', gone);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    open: () => requests.filter((r) => !r.closed),
    connections: () => sockets.size,
    peakConnections: () => peak,
    resetPeak: () => (peak = sockets.size),
    byId: (id) => requests.find((r) => r.id === id),
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}
