/**
 * Deadlines on the public listener (`limits`), watched on raw sockets: a client that sends its
 * headers, its whole request or its body too slowly gets the gateway's own JSON 408
 * `request_timeout` and the connection closed, never Node's bare 408 or `invalid_request`; an
 * idle kept-alive connection is closed after `keepAliveTimeout`. Waits are bounded well above
 * the configured deadlines; nothing asserts how long anything took.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startWorld, type RunningGateway, type World } from '../support/world.ts';
import { sleep, until } from '../support/time.ts';

/** A raw connection that records every byte the server writes and whether it closed. */
class RawClient {
  readonly socket: Socket;
  received = Buffer.alloc(0);
  closed = false;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => (this.received = Buffer.concat([this.received, chunk])));
    socket.on('error', () => {});
    socket.on('close', () => (this.closed = true));
  }

  static open(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ port, host: '127.0.0.1' });
      socket.once('connect', () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  get text(): string {
    return this.received.toString('latin1');
  }

  write(text: string): void {
    if (!this.closed && this.socket.writable) this.socket.write(text);
  }

  /** Writes `piece` every `everyMs` until the server answers or closes, at most `times` times. */
  async trickle(piece: string, everyMs: number, times: number): Promise<void> {
    for (let i = 0; i < times && !this.closed && this.received.length === 0; i++) {
      this.write(piece);
      await sleep(everyMs);
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

/** The one answer on a connection, parsed from its bytes. */
function parseAnswer(text: string): { statusLine: string; headers: Record<string, string>; body: string } {
  const split = text.indexOf('\r\n\r\n');
  expect(split, `a complete response head in ${JSON.stringify(text.slice(0, 200))}`).toBeGreaterThan(0);
  const [statusLine = '', ...lines] = text.slice(0, split).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { statusLine, headers, body: text.slice(split + 4) };
}

/** The gateway's 408: JSON, no-store, closes the connection — and it is the only answer. */
function expectRequestTimeout(client: RawClient): void {
  const answer = parseAnswer(client.text);
  expect(answer.statusLine).toMatch(/^HTTP\/1\.1 408 /);
  expect(answer.headers['content-type']).toMatch(/^application\/json/);
  expect(answer.headers['cache-control']).toBe('no-store');
  expect(answer.headers.connection).toBe('close');
  expect(JSON.parse(answer.body.slice(0, Number(answer.headers['content-length'])))).toEqual({
    error: 'request_timeout',
    message: expect.any(String),
  });
  expect(client.text.match(/HTTP\/1\.1 /g)).toHaveLength(1);
  expect(client.closed).toBe(true);
}

const BOUND_MS = 8_000;

let world: World;
/** headersTimeout 1s, requestTimeout 2s, bodyIdleTimeout 1500ms, keepAliveTimeout 1s. */
let tight: RunningGateway;
/** The same, but a whole request may take a minute: only the body-idle deadline can fire. */
let patient: RunningGateway;

beforeAll(async () => {
  world = await startWorld({
    config: { limits: { headersTimeout: '1s', requestTimeout: '2s', bodyIdleTimeout: '1500ms', keepAliveTimeout: '1s' } },
  });
  tight = world.gateway;
  patient = await world.startGateway({}, { limits: { requestTimeout: '60s' } });
});

afterAll(async () => {
  await world?.close();
});

describe('public listener deadlines', () => {
  test('headers trickled past headersTimeout: JSON 408 request_timeout, connection closed', async () => {
    const client = await RawClient.open(tight.port);
    try {
      client.write(`GET /slow-headers HTTP/1.1\r\nHost: 127.0.0.1:${tight.port}\r\n`);
      // Never idle (a header line every 200 ms), never finished.
      await client.trickle('x-pad: 1\r\n', 200, BOUND_MS / 200);
      await until(() => client.closed, 'the connection closed', 2_000);
      expectRequestTimeout(client);
    } finally {
      client.close();
    }
  });

  test('a body trickled past requestTimeout (never idle): JSON 408 request_timeout, connection closed', async () => {
    const client = await RawClient.open(tight.port);
    try {
      client.write(
        `POST /auth/backchannel-logout HTTP/1.1\r\nHost: 127.0.0.1:${tight.port}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 1000\r\n\r\nlogout_token=`,
      );
      await client.trickle('a', 200, BOUND_MS / 200);
      await until(() => client.closed, 'the connection closed', 2_000);
      expectRequestTimeout(client);
    } finally {
      client.close();
    }
  });

  test.each([
    ['back-channel logout', '/auth/backchannel-logout', 'application/x-www-form-urlencoded', 'logout_token=eyJ'],
    ['logout', '/auth/logout', 'application/json', '{"a":'],
  ])('a %s body that stalls past bodyIdleTimeout: JSON 408 request_timeout, connection closed', async (_name, path, type, start) => {
    const client = await RawClient.open(patient.port);
    try {
      client.write(
        `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:${patient.port}\r\nx-csrf: 1\r\ncontent-type: ${type}\r\ncontent-length: 200\r\n\r\n${start}`,
      );
      await until(() => client.closed, 'the connection closed', BOUND_MS);
      expectRequestTimeout(client);
    } finally {
      client.close();
    }
  });

  test('a body that keeps coming within bodyIdleTimeout is read to the end (the back-channel endpoint answers on its merits)', async () => {
    const client = await RawClient.open(patient.port);
    try {
      const body = 'logout_token=not-a-jwt';
      client.write(
        `POST /auth/backchannel-logout HTTP/1.1\r\nHost: 127.0.0.1:${patient.port}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: ${body.length}\r\n\r\n`,
      );
      for (const char of body) {
        client.write(char);
        await sleep(100);
      }
      await until(() => client.text.includes('\r\n\r\n') && client.text.includes('}'), 'the answer arrived', BOUND_MS);
      const answer = parseAnswer(client.text);
      expect(answer.statusLine).toMatch(/^HTTP\/1\.1 400 /);
      expect(JSON.parse(answer.body)).toMatchObject({ error: 'invalid_request' });
    } finally {
      client.close();
    }
  });

  test('an idle kept-alive connection is closed after keepAliveTimeout', async () => {
    const client = await RawClient.open(tight.port);
    try {
      client.write(`GET /kept-alive HTTP/1.1\r\nHost: 127.0.0.1:${tight.port}\r\n\r\n`);
      await until(() => client.text.includes('\r\n\r\n'), 'the answer arrived', BOUND_MS);
      const answer = parseAnswer(client.text);
      expect(answer.statusLine).toMatch(/^HTTP\/1\.1 200 /);
      expect(answer.headers.connection).not.toBe('close');
      await until(() => client.closed, 'the connection closed', BOUND_MS);
      // Closed without a word: no second answer on an idle connection.
      expect(client.text.match(/HTTP\/1\.1 /g)).toHaveLength(1);
    } finally {
      client.close();
    }
  });

  test('requestTimeout bounds the request only: an upstream slower than it still answers', async () => {
    const client = await RawClient.open(tight.port);
    try {
      client.write(`GET /slow?ms=2500 HTTP/1.1\r\nHost: 127.0.0.1:${tight.port}\r\n\r\n`);
      await until(() => /\r\n\r\n[\s\S]*\}/.test(client.text), 'the answer arrived', BOUND_MS);
      const answer = parseAnswer(client.text);
      expect(answer.statusLine).toMatch(/^HTTP\/1\.1 200 /);
      expect(JSON.parse(answer.body)).toEqual({ sleptMs: 2500 });
    } finally {
      client.close();
    }
  });
});
