/**
 * A rolling restart behind a load balancer that keeps connections alive: SIGTERM reaches the
 * real CLI process while answers are in flight on kept-alive connections. Every answer written
 * from then on must say `Connection: close` and end its connection; a request that still
 * arrives on such a connection gets the gateway's own JSON 503 `shutting_down` (or a closed
 * connection), never fastify's `{"statusCode":503,…}`; in-flight requests finish; the admin
 * listener keeps `/healthz` but `/readyz` says 503; the process exits 0.
 *
 * The upstream here is a raw TCP server the test controls: it holds chosen answers until the
 * test releases them, so "in flight while SIGTERM arrives" is a fact, not a race.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startProcessWorld, type GatewayProcess, type ProcessWorld } from '../support/processes.ts';
import { until } from '../support/time.ts';

/**
 * `/held/<name>`: answered only when the test calls release(name).
 * `/stream/<name>`: head and a first chunk at once, the last chunk on release(name).
 * Anything else: 200 "ok" at once. Keep-alive throughout.
 */
class HeldUpstream {
  readonly server: Server;
  readonly seen: string[] = [];
  private readonly waiting = new Map<string, () => void>();

  constructor() {
    this.server = createServer((socket) => {
      socket.on('error', () => {});
      let buffered = '';
      socket.on('data', (chunk: Buffer) => {
        buffered += chunk.toString('latin1');
        for (let end = buffered.indexOf('\r\n\r\n'); end >= 0; end = buffered.indexOf('\r\n\r\n')) {
          const head = buffered.slice(0, end);
          buffered = buffered.slice(end + 4);
          this.answer(socket, head.split(' ')[1] ?? '/');
        }
      });
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((done) => this.server.listen(0, '127.0.0.1', done));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private answer(socket: Socket, path: string): void {
    this.seen.push(path);
    const [, kind, name = ''] = path.split('/');
    if (kind === 'held') {
      this.waiting.set(name, () =>
        socket.write(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${name.length}\r\n\r\n${name}`),
      );
    } else if (kind === 'stream') {
      socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n');
      this.waiting.set(name, () => socket.write('4\r\nlast\r\n0\r\n\r\n'));
    } else {
      socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok');
    }
  }

  release(name: string): void {
    const answer = this.waiting.get(name);
    expect(answer, `a held request named ${name}`).toBeDefined();
    answer?.();
  }

  close(): Promise<void> {
    return new Promise((done) => this.server.close(() => done()));
  }
}

/** A raw client connection recording every byte and whether the gateway closed it. */
class Client {
  readonly socket: Socket;
  received = '';
  closed = false;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => (this.received += chunk.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => (this.closed = true));
  }

  static open(url: string): Promise<Client> {
    const { port } = new URL(url);
    return new Promise((resolve, reject) => {
      const socket = connect({ port: Number(port), host: '127.0.0.1' });
      socket.once('connect', () => resolve(new Client(socket)));
      socket.once('error', reject);
    });
  }

  get(path: string): void {
    this.socket.write(`GET ${path} HTTP/1.1\r\nHost: gateway.test\r\n\r\n`);
  }
}

interface Answer {
  statusLine: string;
  headers: Record<string, string>;
  body: string;
}

/** Splits a connection's bytes into answers (content-length or chunked framing). */
function answersOf(text: string): Answer[] {
  const answers: Answer[] = [];
  let rest = text;
  while (rest.length > 0) {
    const split = rest.indexOf('\r\n\r\n');
    if (split < 0) throw new Error(`incomplete answer head: ${JSON.stringify(rest.slice(0, 200))}`);
    const [statusLine = '', ...lines] = rest.slice(0, split).split('\r\n');
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    rest = rest.slice(split + 4);
    let body = '';
    if (headers['transfer-encoding'] === 'chunked') {
      for (;;) {
        const lineEnd = rest.indexOf('\r\n');
        const size = parseInt(rest.slice(0, lineEnd), 16);
        body += rest.slice(lineEnd + 2, lineEnd + 2 + size);
        rest = rest.slice(lineEnd + 2 + size + 2);
        if (size === 0) break;
      }
    } else {
      const length = Number(headers['content-length'] ?? 0);
      body = rest.slice(0, length);
      rest = rest.slice(length);
    }
    answers.push({ statusLine, headers, body });
  }
  return answers;
}

function expectShuttingDown(answer: Answer): void {
  expect(answer.statusLine).toMatch(/^HTTP\/1\.1 503 /);
  expect(answer.headers.connection).toBe('close');
  expect(answer.headers['cache-control']).toBe('no-store');
  expect(answer.headers['retry-after']).toMatch(/^\d+$/);
  expect(JSON.parse(answer.body)).toEqual({ error: 'shutting_down', message: expect.any(String) });
}

let world: ProcessWorld;
let upstream: HeldUpstream;
let gateway: GatewayProcess;

beforeAll(async () => {
  upstream = new HeldUpstream();
  const url = await upstream.listen();
  world = await startProcessWorld({
    instances: 1,
    config: { shutdownGrace: '20s', routes: [{ path: '/', upstream: url, token: 'none' }] },
  });
  gateway = world.gateways[0] as GatewayProcess;
});

afterAll(async () => {
  await world?.close();
  await upstream?.close();
});

describe('draining on SIGTERM', () => {
  test('in-flight answers close their connections, late requests get the JSON 503, nothing is lost, exit 0', async () => {
    // Before SIGTERM: an idle kept-alive connection, one waiting for its answer, one whose
    // answer is already streaming (its headers went out saying keep-alive).
    const idle = await Client.open(gateway.url);
    idle.get('/warm');
    await until(() => idle.received.endsWith('ok'), 'the idle connection got its answer');
    expect(answersOf(idle.received)[0]?.headers.connection).not.toBe('close');

    const waiting = await Client.open(gateway.url);
    waiting.get('/held/waiting');
    const streaming = await Client.open(gateway.url);
    streaming.get('/stream/streaming');
    await until(
      () => upstream.seen.includes('/held/waiting') && streaming.received.includes('first'),
      'the held request reached the upstream and the stream began',
    );

    gateway.child.kill('SIGTERM');
    await until(() => gateway.output.some((line) => line.includes('shutting down')), 'the gateway logged that it is shutting down');

    // The admin listener: alive, but no longer ready, so the load balancer stops sending.
    const health = await fetch(`${gateway.adminUrl}/healthz`);
    expect(health.status).toBe(200);
    const ready = await fetch(`${gateway.adminUrl}/readyz`);
    expect(ready.status).toBe(503);
    expect(ready.headers.get('cache-control')).toBe('no-store');
    expect(await ready.json()).toEqual({ status: 'draining' });

    // The idle kept-alive connection is closed without a word.
    await until(() => idle.closed, 'the idle connection closed');
    expect(answersOf(idle.received)).toHaveLength(1);

    // Requests that arrive during the drain on the busy connections (pipelined).
    waiting.get('/late-1');
    streaming.get('/late-2');
    // Let the gateway read them before the answers they queue behind are released.
    await until(() => gateway.output.filter((line) => line.includes('"shutting_down"')).length >= 2, 'two shutting_down answers logged');
    upstream.release('waiting');
    upstream.release('streaming');
    await until(() => waiting.closed && streaming.closed, 'the in-flight connections closed');

    // The in-flight answer completes and carries Connection: close; the late request behind it
    // is dropped with the connection (the client knows it was never answered).
    const onWaiting = answersOf(waiting.received);
    expect(onWaiting).toHaveLength(1);
    expect(onWaiting[0]).toMatchObject({ statusLine: expect.stringMatching(/^HTTP\/1\.1 200 /), body: 'waiting' });
    expect(onWaiting[0]?.headers.connection).toBe('close');

    // The streamed answer completes; the late request behind it gets the JSON 503, then the
    // connection ends.
    const onStreaming = answersOf(streaming.received);
    expect(onStreaming).toHaveLength(2);
    expect(onStreaming[0]).toMatchObject({ statusLine: expect.stringMatching(/^HTTP\/1\.1 200 /), body: 'firstlast' });
    expectShuttingDown(onStreaming[1] as Answer);

    for (const client of [idle, waiting, streaming]) expect(client.received).not.toContain('"statusCode"');
    // Neither late request reached the upstream.
    expect(upstream.seen).not.toContain('/late-1');
    expect(upstream.seen).not.toContain('/late-2');

    await gateway.exited;
    expect(gateway.child.exitCode).toBe(0);
  });
});
