/**
 * The response side of the hop against upstreams that misbehave on purpose (a raw TCP server
 * that writes exactly the bytes a case needs) and browsers that misbehave (raw sockets):
 * - a 401 the gateway discards (refresh and replay) whose body then fails or never ends, and a
 *   browser that leaves during the replay: no uncaught error, every upstream request released;
 * - a browser that stops reading a large body: its connection is closed and the upstream
 *   request aborted after `limits.sendIdleTimeout`, while a slow stream the browser does read
 *   (server-sent events) runs far past that deadline;
 * - an answer given before the request body was read (the upstream resets mid-upload) closes
 *   the browser's connection;
 * - empty compressed bodies (`Content-Length: 0`) and 205 on a token route;
 * - 103 Early Hints: a hint that carries the session's token is not relayed.
 */
import { gzipSync } from 'node:zlib';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { login, type LoginResult } from '../support/login.ts';
import { errorCode, requestBytes, until, Wire } from '../support/wire.ts';
import { startWorld, type World } from '../support/world.ts';

interface HostileRequest {
  path: string;
  headers: Record<string, string>;
  socket: Socket;
  closed: boolean;
}

type Behaviour = (request: HostileRequest, index: number) => void;

/** A raw HTTP/1.1 upstream: each request (one per connection) is handed to the behaviour of its path. */
function startHostile(): Promise<{ server: Server; url: string; requests: HostileRequest[]; on: Map<string, Behaviour> }> {
  const requests: HostileRequest[] = [];
  const on = new Map<string, Behaviour>();
  const server = createServer((socket) => {
    let buffer = Buffer.alloc(0);
    let seen = false;
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      if (seen) return;
      buffer = Buffer.concat([buffer, chunk]);
      const end = buffer.indexOf('\r\n\r\n');
      if (end === -1) return;
      seen = true;
      const [line = '', ...fields] = buffer.subarray(0, end).toString('latin1').split('\r\n');
      const headers: Record<string, string> = {};
      for (const field of fields) {
        const colon = field.indexOf(':');
        headers[field.slice(0, colon).toLowerCase()] = field.slice(colon + 1).trim();
      }
      const path = (line.split(' ')[1] ?? '/').split('?')[0] as string;
      const request: HostileRequest = { path, headers, socket, closed: false };
      socket.once('close', () => (request.closed = true));
      requests.push(request);
      const name = path.split('/').pop() as string;
      const behaviour = on.get(name);
      const index = requests.filter((r) => r.path === path).length - 1;
      if (behaviour) behaviour(request, index);
      else socket.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok');
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({ server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, requests, on }),
    ),
  );
}

const tokenOf = (request: HostileRequest) => (request.headers.authorization ?? '').replace(/^Bearer /, '');

let world: World;
let hostile: Awaited<ReturnType<typeof startHostile>>;
let session: LoginResult;
/** Errors no one handled while a test ran: any of them would have ended a gateway process. */
const uncaught: unknown[] = [];
const record = (err: unknown) => uncaught.push(err);

let bulk: HttpServer;
/** Upstream requests of the bulk server: closed yet? */
const bulkClosed: boolean[] = [];

/** A well-behaved upstream: a 50 MB body written with backpressure, or a slow SSE stream. */
function startBulk(): Promise<string> {
  bulk = createHttpServer((req, res) => {
    const index = bulkClosed.push(false) - 1;
    res.once('close', () => (bulkClosed[index] = true));
    if (req.url?.includes('/events')) {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      let sent = 0;
      const tick = setInterval(() => {
        res.write(`data: ${sent}\n\n`);
        if (++sent === 6) {
          clearInterval(tick);
          res.end();
        }
      }, 400);
      res.once('close', () => clearInterval(tick));
      return;
    }
    const piece = Buffer.alloc(64 * 1024, 'x');
    let left = 50 * 1024 * 1024;
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': left });
    const pump = () => {
      while (left > 0) {
        left -= piece.length;
        if (!res.write(piece)) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
  });
  return new Promise((resolve) =>
    bulk.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(bulk.address() as { port: number }).port}`)),
  );
}

beforeAll(async () => {
  process.on('uncaughtException', record);
  process.on('unhandledRejection', record);
  hostile = await startHostile();
  const bulkUrl = await startBulk();
  world = await startWorld({
    config: { limits: { sendIdleTimeout: '1s' }, scrub: { bodies: true } },
    routes: () => [
      { path: '/api', upstream: hostile.url, token: 'user', timeout: '5s' },
      { path: '/bulk-user', upstream: bulkUrl, token: 'user', timeout: '1s' },
      { path: '/bulk-none', upstream: bulkUrl, token: 'none', timeout: '1s' },
      { path: '/', upstream: hostile.url, token: 'none', timeout: '5s' },
    ],
  });
  session = await login(world.url);
});
afterAll(async () => {
  await world?.close();
  await new Promise((resolve) => hostile?.server.close(resolve));
  await new Promise((resolve) => bulk?.close(resolve));
  process.off('uncaughtException', record);
  process.off('unhandledRejection', record);
});
beforeEach(() => {
  uncaught.length = 0;
});

const apiRequest = (path: string): Buffer =>
  requestBytes('GET', path, [
    ['cookie', session.cookieHeader],
    ['x-csrf', '1'],
  ]);
const invalidToken =
  'HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer error="invalid_token"\r\ncontent-type: text/plain\r\ncontent-length: 100\r\n\r\nhello';

describe('a discarded 401 body', () => {
  test('that fails while the gateway refreshes: the replay answers, nothing is thrown', async () => {
    hostile.on.set('reset401', (request, index) => {
      if (index === 0) {
        request.socket.write(invalidToken);
        setTimeout(() => request.socket.resetAndDestroy(), 30);
      } else request.socket.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 8\r\nconnection: close\r\n\r\nreplayed');
    });
    const wire = await Wire.open(world.gateway.port);
    try {
      wire.write(apiRequest('/api/reset401'));
      const answer = await wire.next({ timeoutMs: 10_000 });
      expect(answer.status).toBe(200);
      expect(answer.body.toString()).toBe('replayed');
      // The reset lands after the 401 was discarded: give it the time to surface.
      await until(
        () => hostile.requests.filter((r) => r.path.endsWith('/reset401')).every((r) => r.closed),
        'both upstream connections closed',
      );
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(uncaught).toEqual([]);
    } finally {
      wire.destroy();
    }
  });

  test('that never ends, the browser leaving during the replay: nothing is thrown, both upstream requests released', async () => {
    hostile.on.set('stuck401', (request, index) => {
      if (index === 0) request.socket.write(invalidToken);
      // The replay is never answered.
    });
    const wire = await Wire.open(world.gateway.port);
    wire.write(apiRequest('/api/stuck401'));
    await until(() => hostile.requests.filter((r) => r.path.endsWith('/stuck401')).length === 2, 'the replay reached the upstream');
    wire.destroy();
    await until(
      () => hostile.requests.filter((r) => r.path.endsWith('/stuck401')).every((r) => r.closed),
      'both upstream requests released',
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(uncaught).toEqual([]);
  });
});

describe('limits.sendIdleTimeout', () => {
  test.each(['none', 'user'] as const)(
    'a browser that stops reading (%s route) is disconnected and the upstream request aborted',
    async (token) => {
      const before = bulkClosed.length;
      const wire = await Wire.open(world.gateway.port);
      try {
        wire.socket.pause();
        wire.write(token === 'user' ? apiRequest('/bulk-user/big') : requestBytes('GET', '/bulk-none/big', []));
        await until(() => bulkClosed.length > before, 'the request reached the upstream');
        await until(() => bulkClosed[before] === true, 'upstream request aborted', 10_000);
        wire.socket.resume();
        expect(await wire.waitClosed(5_000)).toBe(true);
      } finally {
        wire.destroy();
      }
    },
  );

  test('a slow stream the browser reads runs past the deadline', async () => {
    const res = await fetch(`${world.url}/bulk-user/events`, { headers: { cookie: session.cookieHeader, 'x-csrf': '1' } });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe([0, 1, 2, 3, 4, 5].map((n) => `data: ${n}\n\n`).join(''));
  });
});

describe('an answer before the request body was read', () => {
  test('the upstream resets mid-upload: 502 with Connection: close, and the connection ends', async () => {
    hostile.on.set('upload', (request) => setTimeout(() => request.socket.resetAndDestroy(), 10));
    const wire = await Wire.open(world.gateway.port);
    try {
      wire.write(
        Buffer.concat([Buffer.from('POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n'), Buffer.alloc(20_000, 'a')]),
      );
      const answer = await wire.next({ timeoutMs: 10_000 });
      expect(answer.status).toBe(502);
      expect(errorCode(answer)).toBe('bad_gateway');
      expect(answer.get('connection')).toBe('close');
      expect(await wire.waitClosed(5_000)).toBe(true);
      expect(wire.unread.length).toBe(0);
    } finally {
      wire.destroy();
    }
  });
});

describe('a small scrubbed answer, read whole before anything is sent', () => {
  test("one that breaks off before its declared end is the gateway's 502, not a reset", async () => {
    const body = gzipSync(JSON.stringify({ padding: 'x'.repeat(2_000) }));
    hostile.on.set('cut', (request) =>
      request.socket.write(
        Buffer.concat([
          Buffer.from(
            `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: ${body.length}\r\n\r\n`,
          ),
          body.subarray(0, 20),
        ]),
        () => setTimeout(() => request.socket.resetAndDestroy(), 20),
      ),
    );
    const wire = await Wire.open(world.gateway.port);
    try {
      wire.write(apiRequest('/api/cut'));
      const answer = await wire.next({ timeoutMs: 10_000 });
      expect(answer.status).toBe(502);
      expect(errorCode(answer)).toBe('bad_gateway');
    } finally {
      wire.destroy();
    }
  });

  test('a browser that takes none of it is disconnected after limits.sendIdleTimeout', async () => {
    // Each answer is small on the wire and decodes to nearly 256 KiB: read whole, sent at once.
    // Pipelined and never read, they fill the socket's buffers; the gateway must not wait forever.
    const compressed = gzipSync(Buffer.alloc(250_000, 'a'));
    hostile.on.set('inflating', (request) =>
      request.socket.end(
        Buffer.concat([
          Buffer.from(
            `HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-encoding: gzip\r\ncontent-length: ${compressed.length}\r\nconnection: close\r\n\r\n`,
          ),
          compressed,
        ]),
      ),
    );
    const wire = await Wire.open(world.gateway.port);
    try {
      const before = hostile.requests.filter((r) => r.path === '/api/inflating').length;
      wire.socket.pause();
      for (let i = 0; i < 40; i++) wire.write(apiRequest('/api/inflating'));
      await until(() => hostile.requests.filter((r) => r.path === '/api/inflating').length > before, 'answers are being sent', 10_000);
      // Unread for three times the 1 s deadline, then read: the gateway has cut the connection
      // before the 40 answers (10 MB) went out.
      await new Promise((done) => setTimeout(done, 3_000));
      wire.socket.resume();
      expect(await wire.waitClosed(15_000)).toBe(true);
      expect(wire.unread.length).toBeLessThan(40 * 250_000);
    } finally {
      wire.destroy();
    }
  });
});

describe('bodyless answers on a token route', () => {
  test.each([
    [
      '200',
      'HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-type: application/json\r\ncontent-length: 0\r\nconnection: close\r\n\r\n',
    ],
    ['205', 'HTTP/1.1 205 Reset Content\r\ncontent-encoding: gzip\r\ncontent-length: 0\r\nconnection: close\r\n\r\n'],
    ['205 without a length', 'HTTP/1.1 205 Reset Content\r\ncontent-encoding: gzip\r\nconnection: close\r\n\r\n'],
  ])('%s, gzip, empty: relayed, the connection usable', async (label, bytes) => {
    const name = `empty${label.replace(/\W/g, '')}`;
    hostile.on.set(name, (request) => request.socket.end(bytes));
    const wire = await Wire.open(world.gateway.port);
    try {
      for (let round = 0; round < 2; round++) {
        wire.write(apiRequest(`/api/${name}`));
        const answer = await wire.next({ timeoutMs: 10_000 });
        expect(answer.status).toBe(Number(label.slice(0, 3)));
        expect(answer.body.length).toBe(0);
      }
      expect(wire.isClosed).toBe(false);
    } finally {
      wire.destroy();
    }
  });
});

describe('103 Early Hints', () => {
  test('a hint carrying the session token is dropped; one without is relayed', async () => {
    hostile.on.set('hints', (request) => {
      const token = tokenOf(request);
      request.socket.write(`HTTP/1.1 103 Early Hints\r\nlink: </s.css?t=${token}>; rel=preload\r\n\r\n`);
      request.socket.write('HTTP/1.1 103 Early Hints\r\nlink: </app.css>; rel=preload\r\n\r\n');
      request.socket.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok');
    });
    const wire = await Wire.open(world.gateway.port);
    try {
      wire.write(apiRequest('/api/hints'));
      const heads: string[] = [];
      for (;;) {
        const answer = await wire.next({ timeoutMs: 10_000 });
        heads.push(answer.head);
        if (answer.status >= 200) break;
      }
      const token = tokenOf(hostile.requests.find((r) => r.path.endsWith('/hints')) as HostileRequest);
      expect(token.length).toBeGreaterThan(20);
      expect(heads.join('\n')).not.toContain(token);
      expect(heads.filter((head) => head.startsWith('HTTP/1.1 103'))).toEqual([expect.stringContaining('</app.css>; rel=preload')]);
    } finally {
      wire.destroy();
    }
  });
});
