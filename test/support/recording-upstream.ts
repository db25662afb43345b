/**
 * An upstream that keeps the raw bytes of every TCP connection it accepts, for tests that must
 * know what actually went over the wire to the origin, not what a parser made of it.
 *
 * A `net` server accepts each connection and hands it to a `node:http` server (default parser,
 * default strictness: what a typical Node origin would parse). The bytes are tapped on the same
 * socket the parser reads, so `bytes` and `requests` describe one and the same stream. Every
 * request is answered with a small JSON echo carrying a sequence number, also sent as the
 * `x-upstream-seq` header: a client can tell an answer that came from here from one the gateway
 * wrote itself, and which request it answers.
 */
import { createServer as createHttpServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';

export const SEQ_HEADER = 'x-upstream-seq';

export interface RecordedRequest {
  /** Which connection it was parsed from (index into `connections`). */
  connection: number;
  /** 0 for the first request parsed on its connection, 1 for the next, ... */
  index: number;
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  /** Header lines as parsed, names as sent: duplicates and order are kept. */
  rawHeaders: string[];
  /** Set once the whole body has arrived; undefined while the parser still waits for it. */
  body?: Buffer;
  /** The sequence number of the answer, once answered. */
  seq?: number;
}

export interface RecordedConnection {
  id: number;
  /** Every byte received, in order. */
  chunks: Buffer[];
  /** Requests whose head the parser accepted on this connection. */
  requests: RecordedRequest[];
  /** Parse errors: the parser refused the bytes (the connection is then closed). */
  parseErrors: string[];
  closed: boolean;
}

export interface RecordingUpstream {
  url: string;
  port: number;
  connections: RecordedConnection[];
  /** All requests in the order their heads were parsed. */
  requests: RecordedRequest[];
  /** Bytes of one connection as latin1 text (every byte maps to one character). */
  text(connection: RecordedConnection): string;
  /** Counters that change whenever anything arrives, for waiting until the wire is quiet. */
  activity(): number;
  /** Ends every open connection from the upstream side (the gateway must open new ones). */
  dropConnections(): void;
  close(): Promise<void>;
}

export interface EchoAnswer {
  seq: number;
  connection: number;
  index: number;
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  /** The request body as latin1. */
  body: string;
}

export async function startRecordingUpstream(): Promise<RecordingUpstream> {
  const connections: RecordedConnection[] = [];
  const requests: RecordedRequest[] = [];
  const sockets = new Map<Socket, RecordedConnection>();
  let seq = 0;
  let events = 0;

  const answer = (res: ServerResponse, recorded: RecordedRequest) => {
    recorded.seq = ++seq;
    const echo: EchoAnswer = {
      seq: recorded.seq,
      connection: recorded.connection,
      index: recorded.index,
      method: recorded.method,
      url: recorded.url,
      headers: recorded.headers,
      body: (recorded.body ?? Buffer.alloc(0)).toString('latin1'),
    };
    const text = JSON.stringify(echo);
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      [SEQ_HEADER]: String(recorded.seq),
    });
    res.end(text);
  };

  const http = createHttpServer((req, res) => {
    const connection = sockets.get(req.socket) as RecordedConnection;
    const recorded: RecordedRequest = {
      connection: connection.id,
      index: connection.requests.length,
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      rawHeaders: req.rawHeaders,
    };
    connection.requests.push(recorded);
    requests.push(recorded);
    events++;
    const body: Buffer[] = [];
    req.on('data', (chunk: Buffer) => body.push(chunk));
    req.once('end', () => {
      recorded.body = Buffer.concat(body);
      events++;
      answer(res, recorded);
    });
  });
  // Pooled connections sit idle between test cases: the upstream must not be the one closing them.
  http.keepAliveTimeout = 60_000;
  http.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const connection = sockets.get(socket);
    if (connection && err.code !== 'ECONNRESET') connection.parseErrors.push(err.code ?? err.message);
    events++;
    // No sequence header: whoever reads this knows it was not an answer to a parsed request.
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });

  const net = createNetServer((socket) => {
    const connection: RecordedConnection = { id: connections.length, chunks: [], requests: [], parseErrors: [], closed: false };
    connections.push(connection);
    sockets.set(socket, connection);
    socket.once('close', () => {
      sockets.delete(socket);
      connection.closed = true;
      events++;
    });
    http.emit('connection', socket);
    // Added after the http server took the socket: a 'data' listener makes Node's http server
    // read through JS instead of consuming the handle natively, so this tap sees every byte the
    // parser sees, in the same order.
    socket.on('data', (chunk: Buffer) => {
      connection.chunks.push(chunk);
      events++;
    });
  });
  await new Promise<void>((resolve) => net.listen(0, '127.0.0.1', resolve));
  const port = (net.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    connections,
    requests,
    text: (connection) => Buffer.concat(connection.chunks).toString('latin1'),
    activity: () => events,
    dropConnections() {
      for (const socket of sockets.keys()) socket.destroy();
    },
    async close() {
      for (const socket of sockets.keys()) socket.destroy();
      await new Promise<void>((resolve) => net.close(() => resolve()));
    },
  };
}
