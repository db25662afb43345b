/**
 * WebSocket messages on token routes: the gateway terminates the socket and relays messages,
 * so a token the upstream echoes in a frame is replaced by `[redacted]` before it reaches page
 * script — in text and binary messages, compressed or not. Everything else passes as it came:
 * message types, bytes, close codes and reasons, the upstream's subprotocol, pings.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { login, type LoginResult } from '../support/login.ts';
import { startWorld, type World } from '../support/world.ts';
import { BINARY_PREFIX, BINARY_SUFFIX, startWsUpstream, type WsUpstream } from '../support/ws-upstream.ts';

const WAIT_MS = 5_000;
const REDACTED = '[redacted]';

let world: World;
let live: WsUpstream;
let session: LoginResult;

beforeAll(async () => {
  live = await startWsUpstream();
  world = await startWorld({
    routes: (upstream) => [
      { path: '/live', upstream: live.url, token: 'user' },
      { path: '/maybe-live', upstream: live.url, token: 'optional' },
      { path: '/svc-live', upstream: live.url, token: 'client' },
      { path: '/open-live', upstream: live.url, token: 'none' },
      { path: '/', upstream: upstream.url, token: 'none' },
    ],
  });
  session = await login(world.url);
});
afterAll(async () => {
  await world?.close();
  await live?.close();
});

interface Received {
  data: Buffer;
  isBinary: boolean;
}

/** A connected client that queues what it receives, so a test can await the next message. */
class Client {
  readonly ws: WebSocket;
  private readonly queue: Received[] = [];
  private waiting: ((message: Received) => void) | undefined;
  readonly closed: Promise<{ code: number; reason: string }>;

  constructor(path: string, options: { protocols?: string[]; headers?: Record<string, string>; perMessageDeflate?: boolean } = {}) {
    const headers = options.headers ?? { cookie: session.cookieHeader, origin: world.url };
    this.ws = new WebSocket(`${world.url.replace(/^http/, 'ws')}${path}`, options.protocols ?? [], {
      headers,
      perMessageDeflate: options.perMessageDeflate ?? true,
      maxPayload: 64 * 1024 * 1024,
    });
    this.ws.on('message', (data: Buffer, isBinary) => {
      const message = { data, isBinary };
      if (this.waiting) {
        const resolve = this.waiting;
        this.waiting = undefined;
        resolve(message);
      } else this.queue.push(message);
    });
    this.closed = new Promise((resolve) => this.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') })));
    this.ws.on('error', () => {});
  }

  opened(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused with HTTP ${res.statusCode}`)));
      this.ws.once('error', reject);
    });
  }

  next(): Promise<Received> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no message within the wait')), WAIT_MS);
      this.waiting = (message) => {
        clearTimeout(timer);
        resolve(message);
      };
    });
  }

  async closedWithin(): Promise<{ code: number; reason: string }> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>(
      (_, reject) => (timer = setTimeout(() => reject(new Error('socket not closed within the wait')), WAIT_MS)),
    );
    try {
      return await Promise.race([this.closed, late]);
    } finally {
      clearTimeout(timer);
    }
  }
}

async function connect(path: string, options?: ConstructorParameters<typeof Client>[1]): Promise<Client> {
  const client = new Client(path, options);
  await client.opened();
  return client;
}

/** The token the upstream received on the latest handshake to `path`. */
function tokenSeenAt(path: string): string {
  const handshake = [...live.handshakes].reverse().find((h) => h.path === path);
  const token = /^(?:Bearer|DPoP)\s+(.+)$/i.exec(handshake?.headers.authorization ?? '')?.[1] ?? '';
  expect(token.length).toBeGreaterThan(20);
  return token;
}

describe('upstream messages on token routes are scrubbed', () => {
  it('a text message echoing the token arrives as text with every occurrence redacted', async () => {
    const client = await connect('/live/chat');
    client.ws.send('token-text');
    const { data, isBinary } = await client.next();
    const token = tokenSeenAt('/live/chat');
    expect(isBinary).toBe(false);
    expect(data.toString('utf8')).toBe(`token=${REDACTED}; Authorization: Bearer ${REDACTED}; again ${REDACTED}`);
    expect(data.includes(token)).toBe(false);
    client.ws.close();
  });

  it('a binary message echoing the token arrives as binary, its other bytes untouched', async () => {
    const client = await connect('/live/bin');
    client.ws.send('token-binary');
    const { data, isBinary } = await client.next();
    const token = tokenSeenAt('/live/bin');
    expect(isBinary).toBe(true);
    expect(data.equals(Buffer.concat([BINARY_PREFIX, Buffer.from(REDACTED), BINARY_SUFFIX]))).toBe(true);
    expect(data.includes(token)).toBe(false);
    client.ws.close();
  });

  it('a compressed message is scrubbed; each side negotiates permessage-deflate on its own', async () => {
    const compressing = await connect('/live/deflate');
    expect(compressing.ws.extensions).toContain('permessage-deflate');
    compressing.ws.send('token-deflated');
    const deflated = (await compressing.next()).data.toString('utf8');
    expect(deflated).toBe(`${'a'.repeat(64 * 1024)}${REDACTED}${'b'.repeat(64 * 1024)}`);
    compressing.ws.close();

    const plain = await connect('/live/plain', { perMessageDeflate: false });
    expect(plain.ws.extensions).toBe('');
    plain.ws.send('token-deflated');
    expect((await plain.next()).data.toString('utf8')).toBe(`${'a'.repeat(64 * 1024)}${REDACTED}${'b'.repeat(64 * 1024)}`);
    // The gateway still compresses towards the upstream, which offered it.
    expect([...live.handshakes].reverse().find((h) => h.path === '/live/plain')?.extensions).toContain('permessage-deflate');
    plain.ws.close();
  });

  it('on an optional route with a session, and on a client route, too', async () => {
    const optional = await connect('/maybe-live/x');
    optional.ws.send('token-text');
    const fromOptional = (await optional.next()).data;
    expect(fromOptional.includes(tokenSeenAt('/maybe-live/x'))).toBe(false);
    expect(fromOptional.toString('utf8')).toContain(REDACTED);
    optional.ws.close();

    const client = await connect('/svc-live/x', { headers: { origin: world.url } });
    client.ws.send('token-binary');
    const fromClient = (await client.next()).data;
    expect(fromClient.includes(tokenSeenAt('/svc-live/x'))).toBe(false);
    expect(fromClient.includes(Buffer.from(REDACTED))).toBe(true);
    client.ws.close();
  });
});

describe('the relay is otherwise transparent', () => {
  it('browser messages reach the upstream byte for byte, text as text and binary as binary', async () => {
    const client = await connect('/live/echo');
    const bytes = Buffer.from([0x00, 0xff, 0x10, 0x80, 0x41]);
    client.ws.send(bytes, { binary: true });
    const binary = await client.next();
    expect(binary.isBinary).toBe(true);
    expect(binary.data.equals(bytes)).toBe(true);
    client.ws.send('héllo ✓');
    const text = await client.next();
    expect(text.isBinary).toBe(false);
    expect(text.data.toString('utf8')).toBe('héllo ✓');
    client.ws.close();
  });

  it('the browser gets the subprotocol the upstream chose', async () => {
    const client = await connect('/live/proto', { protocols: ['first', 'second'] });
    expect(client.ws.protocol).toBe('second');
    expect([...live.handshakes].reverse().find((h) => h.path === '/live/proto')?.protocol).toBe('second');
    client.ws.close();
  });

  it('close codes and reasons propagate both ways', async () => {
    const closedByUpstream = await connect('/live/close1');
    closedByUpstream.ws.send('close:4321:upstream says bye');
    expect(await closedByUpstream.closedWithin()).toEqual({ code: 4321, reason: 'upstream says bye' });

    const before = live.closes.length;
    const closedByBrowser = await connect('/live/close2');
    closedByBrowser.ws.close(4000, 'browser says bye');
    await closedByBrowser.closedWithin();
    await expect.poll(() => live.closes.slice(before), { timeout: WAIT_MS }).toContainEqual({ code: 4000, reason: 'browser says bye' });
  });

  it('pings from the upstream are answered', async () => {
    const client = await connect('/live/ping');
    client.ws.send('ping');
    expect((await client.next()).data.toString('utf8')).toBe('pong-seen');
    client.ws.close();
  });

  it('a message over the size cap closes both sides with 1009, nothing of it relayed', async () => {
    const before = live.closes.length;
    const client = await connect('/live/big');
    client.ws.send(`big:${17 * 1024 * 1024}`);
    expect((await client.closedWithin()).code).toBe(1009);
    await expect.poll(() => live.closes.slice(before).map((c) => c.code), { timeout: WAIT_MS }).toContain(1009);
  });

  it('a refused upgrade on a token route is the gateway 502, without the token', async () => {
    const client = new Client('/live/refuse');
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      client.ws.once('open', () => reject(new Error('upgrade was accepted')));
      client.ws.once('unexpected-response', (_req, res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.once('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      });
    });
    expect(answer.status).toBe(502);
    expect(JSON.parse(answer.body)).toMatchObject({ error: 'bad_gateway' });
    expect(answer.body).not.toContain('Bearer');
  });

  it('on a none route the socket is a raw tunnel: messages pass, no token is ever sent', async () => {
    const client = await connect('/open-live/echo', { headers: {} });
    client.ws.send('token-text');
    expect((await client.next()).data.toString('utf8')).toBe('token=; Authorization: ; again ');
    client.ws.close();
  });
});
