/**
 * What a client can make the gateway hold through upgrades, and which upgrades exist at all
 * (raw sockets on the client side; a WebSocket upstream and a raw upstream that answers
 * whatever a test needs):
 * - `limits.perClientWebSockets: 2`: open WebSockets (raw tunnels and relays alike, handshakes
 *   in progress included) count per client address for as long as they are open; the next one
 *   gets 429 `too_many_requests` as JSON over the raw socket and never reaches the upstream,
 *   another address is served, and a slot comes back when a socket closes;
 * - `limits.webSocketIdleTimeout: 2s`: a tunnel or relay with no traffic is closed (a relay with
 *   1001), on both sides; pings keep a relay open;
 * - `limits.maxBufferedBytes: 64 KiB`: a relayed message larger than the shared budget of
 *   messages on their way closes the relay with 1013 on both sides; smaller ones pass;
 * - only `Upgrade: websocket` is tunnelled: an h2c (or any other) upgrade is refused with 400
 *   and never reaches the upstream as an upgrade; an upstream answering 101 with another
 *   protocol, or without the right `Sec-WebSocket-Accept`, is never relayed (502).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { login, type LoginResult } from '../support/login.ts';
import { startWorld, type World } from '../support/world.ts';
import { errorCode, requestBytes, until, Wire, type WireResponse } from '../support/wire.ts';
import { startWsUpstream, type WsUpstream } from '../support/ws-upstream.ts';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

let world: World;
let live: WsUpstream;
let session: LoginResult;

/** A raw upstream: records each request head, answers by path. */
interface RawUpstream {
  url: string;
  heads: string[];
  open(): number;
  close(): Promise<void>;
}
let raw: RawUpstream;

async function startRawUpstream(): Promise<RawUpstream> {
  const heads: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffer = '';
    socket.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('latin1');
      const end = buffer.indexOf('\r\n\r\n');
      if (end === -1 || buffer === '') return;
      const head = buffer.slice(0, end);
      buffer = '';
      heads.push(head);
      const path = head.split(' ')[1] ?? '/';
      const key = /^sec-websocket-key:\s*(.+)$/im.exec(head)?.[1]?.trim() ?? '';
      const accept = createHash('sha1')
        .update(key + GUID)
        .digest('base64');
      if (path.includes('h2c-101'))
        socket.write('HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
      else if (path.includes('bad-accept'))
        socket.write(
          `HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-accept: ${createHash('sha1').update('other').digest('base64')}\r\n\r\n`,
        );
      else if (path.includes('ws-101'))
        socket.write(
          `HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-accept: ${accept}\r\n\r\n`,
        );
      else socket.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    heads,
    open: () => sockets.size,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

beforeAll(async () => {
  live = await startWsUpstream();
  raw = await startRawUpstream();
  world = await startWorld({
    config: { limits: { perClientRequests: 2, perClientWebSockets: 2, webSocketIdleTimeout: '2s', maxBufferedBytes: 65_536 } },
    routes: (upstream) => [
      { path: '/live', upstream: live.url, token: 'user' },
      { path: '/open-live', upstream: live.url, token: 'none' },
      { path: '/raw', upstream: raw.url, token: 'none' },
      { path: '/maybe-raw', upstream: raw.url, token: 'optional' },
      { path: '/', upstream: upstream.url, token: 'none' },
    ],
  });
  session = await login(world.url);
});
afterAll(async () => {
  await world?.close();
  await live?.close();
  await raw?.close();
});

function handshake(extra: Array<[string, string]> = []): { key: string; headers: Array<[string, string]> } {
  const key = randomBytes(16).toString('base64');
  return {
    key,
    headers: [['connection', 'Upgrade'], ['upgrade', 'websocket'], ['sec-websocket-version', '13'], ['sec-websocket-key', key], ...extra],
  };
}

/** A raw WebSocket handshake; resolves with the wire and the gateway's answer. */
async function rawUpgrade(
  path: string,
  options: { localAddress?: string; extra?: Array<[string, string]> } = {},
): Promise<{ wire: Wire; answer: WireResponse }> {
  const wire = await Wire.open(world.gateway.port, options.localAddress ? { localAddress: options.localAddress } : {});
  wire.write(requestBytes('GET', path, handshake(options.extra).headers));
  return { wire, answer: await wire.next({ timeoutMs: 5_000 }) };
}

/** A loopback address of its own for each test that needs no shared count (127.0.1.x). */
let nextAddress = 0;
const freshAddress = () => `127.0.1.${++nextAddress}`;

function expectJsonError(res: WireResponse, status: number, code: string): void {
  expect(res.status, res.head).toBe(status);
  expect(res.get('content-type')).toMatch(/^application\/json/);
  expect(errorCode(res)).toBe(code);
}

describe('limits.perClientWebSockets', () => {
  it('open tunnels and relays count per client while they are open: the next one is 429 and never reaches the upstream, another address is served, a slot comes back on close', async () => {
    const handshakesBefore = live.handshakes.length;
    const tunnel = await rawUpgrade('/open-live/a');
    const userHeaders = { cookie: session.cookieHeader, origin: world.url };
    const relayed = new WebSocket(`${world.url.replace(/^http/, 'ws')}/live/b`, { headers: userHeaders });
    const wires: Wire[] = [tunnel.wire];
    try {
      expect(tunnel.answer.status).toBe(101);
      await new Promise<void>((resolve, reject) => {
        relayed.once('open', () => resolve());
        relayed.once('error', reject);
      });
      await until(() => live.handshakes.length === handshakesBefore + 2, 'both sockets at the upstream', 5_000);

      for (const path of ['/open-live/c', '/live/d']) {
        const extra: Array<[string, string]> = path.startsWith('/live')
          ? [
              ['cookie', session.cookieHeader],
              ['origin', world.url],
            ]
          : [];
        const third = await rawUpgrade(path, { extra });
        wires.push(third.wire);
        expectJsonError(third.answer, 429, 'too_many_requests');
        expect(await third.wire.waitClosed(5_000)).toBe(true);
      }
      expect(live.handshakes.length, 'a refused upgrade never reaches the upstream').toBe(handshakesBefore + 2);

      const other = await rawUpgrade('/open-live/e', { localAddress: '127.0.0.2' });
      wires.push(other.wire);
      expect(other.answer.status).toBe(101);

      tunnel.wire.destroy();
      const again = await until(
        async () => {
          const attempt = await rawUpgrade('/open-live/f');
          wires.push(attempt.wire);
          return attempt.answer.status === 101 ? attempt : undefined;
        },
        'a slot back once the tunnel closed',
        5_000,
      );
      expect(again?.answer.status).toBe(101);
    } finally {
      relayed.terminate();
      for (const wire of wires) wire.destroy();
    }
  });

  it('WebSockets do not use up the HTTP request slots', async () => {
    const localAddress = freshAddress();
    const first = await rawUpgrade('/open-live/g', { localAddress });
    const second = await rawUpgrade('/open-live/h', { localAddress });
    const plain = await Wire.open(world.gateway.port, { localAddress });
    try {
      expect([first.answer.status, second.answer.status]).toEqual([101, 101]);
      for (let i = 0; i < 3; i++) {
        plain.write(requestBytes('GET', `/anything?i=${i}`, []));
        expect((await plain.next({ timeoutMs: 5_000 })).status).toBe(200);
      }
    } finally {
      first.wire.destroy();
      second.wire.destroy();
      plain.destroy();
    }
    await until(() => live.open() === 0, 'upstream sockets closed', 5_000);
  });
});

describe('limits.webSocketIdleTimeout', () => {
  it('a tunnel without traffic is closed on both sides', async () => {
    await until(() => live.open() === 0, 'no upstream socket left from earlier tests', 5_000);
    const { wire, answer } = await rawUpgrade('/open-live/idle', { localAddress: freshAddress() });
    try {
      expect(answer.status).toBe(101);
      await until(() => live.open() === 1, 'the tunnel open at the upstream', 5_000);
      expect(await wire.waitClosed(10_000), 'the gateway closes an idle tunnel').toBe(true);
      await until(() => live.open() === 0, 'the upstream side closed too', 5_000);
    } finally {
      wire.destroy();
    }
  });

  it('a relay without messages is closed with 1001 on both sides; one kept busy with pings stays open', async () => {
    const headers = { cookie: session.cookieHeader, origin: world.url };
    const url = `${world.url.replace(/^http/, 'ws')}/live/idle`;
    const localAddress = freshAddress();
    const idle = new WebSocket(url, { headers, localAddress });
    const busy = new WebSocket(url, { headers, localAddress });
    try {
      const idleClosed = new Promise<number>((resolve) => idle.once('close', (code) => resolve(code)));
      await Promise.all(
        [idle, busy].map((ws) => new Promise<void>((resolve, reject) => (ws.once('open', () => resolve()), ws.once('error', reject)))),
      );
      const closesBefore = live.closes.length;
      // The busy one pings every 200 ms until the idle one has been closed for being idle.
      let closedCode: number | undefined;
      void idleClosed.then((code) => (closedCode = code));
      const deadline = Date.now() + 10_000;
      while (closedCode === undefined && Date.now() < deadline) {
        busy.ping();
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      expect(closedCode).toBe(1001);
      await until(() => live.closes.length > closesBefore, 'the upstream side of the idle relay closed', 5_000);
      expect(live.closes.slice(closesBefore)).toContainEqual(expect.objectContaining({ code: 1001 }));
      expect(busy.readyState).toBe(WebSocket.OPEN);
      const echoed = new Promise<string>((resolve) => busy.once('message', (data) => resolve(String(data))));
      busy.send('still here');
      expect(await echoed).toBe('still here');
    } finally {
      idle.terminate();
      busy.terminate();
    }
  });
});

describe('only WebSocket upgrades', () => {
  const h2c: Array<[string, string]> = [
    ['connection', 'Upgrade, HTTP2-Settings'],
    ['upgrade', 'h2c'],
    ['http2-settings', 'AAMAAABkAARAAAAAAAIAAAAA'],
  ];

  it.each([
    ['an h2c upgrade', '/raw/h2c', h2c],
    ['an h2c upgrade on an optional route without a session', '/maybe-raw/h2c', h2c],
    [
      'a list of protocols',
      '/raw/list',
      [...handshake().headers.filter(([name]) => name !== 'upgrade'), ['upgrade', 'websocket, h2c']] as Array<[string, string]>,
    ],
    ['a POST WebSocket handshake', '/raw/post', handshake().headers],
  ])('%s: 400 invalid_request, connection closed, never reaches the upstream as an upgrade', async (label, path, headers) => {
    const before = raw.heads.length;
    const wire = await Wire.open(world.gateway.port, { localAddress: freshAddress() });
    try {
      wire.write(requestBytes(label.includes('POST') ? 'POST' : 'GET', path, headers));
      expectJsonError(await wire.next({ timeoutMs: 5_000 }), 400, 'invalid_request');
      expect(await wire.waitClosed(5_000)).toBe(true);
      expect(raw.heads.slice(before).filter((head) => /^upgrade:/im.test(head))).toEqual([]);
    } finally {
      wire.destroy();
    }
  });

  it('Upgrade: WebSocket in any case is a WebSocket upgrade', async () => {
    const { wire, answer } = await rawUpgrade('/raw/ws-101', { localAddress: freshAddress() });
    wire.destroy();
    expect(answer.status).toBe(101);
    const mixed = await Wire.open(world.gateway.port, { localAddress: freshAddress() });
    try {
      mixed.write(
        requestBytes(
          'GET',
          '/raw/ws-101',
          handshake().headers.map(([name, value]): [string, string] => (name === 'upgrade' ? [name, 'WebSocket'] : [name, value])),
        ),
      );
      expect((await mixed.next({ timeoutMs: 5_000 })).status).toBe(101);
    } finally {
      mixed.destroy();
    }
  });

  it.each([
    ['a 101 to another protocol', '/raw/h2c-101'],
    ['a 101 without the right Sec-WebSocket-Accept', '/raw/bad-accept'],
  ])('%s from the upstream is never relayed: 502 bad_gateway', async (_label, path) => {
    const { wire, answer } = await rawUpgrade(path, { localAddress: freshAddress() });
    try {
      expectJsonError(answer, 502, 'bad_gateway');
      expect(await wire.waitClosed(5_000)).toBe(true);
      expect(wire.unread.toString('latin1')).not.toContain('PRI *');
    } finally {
      wire.destroy();
    }
  });
});

describe('the budget of relayed messages', () => {
  it('a message that does not fit limits.maxBufferedBytes closes the relay with 1013 on both sides; smaller ones pass', async () => {
    const ws = new WebSocket(`${world.url.replace(/^http/, 'ws')}/live/budget`, {
      headers: { cookie: session.cookieHeader, origin: world.url },
      localAddress: freshAddress(),
    });
    try {
      const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
      const messages: Buffer[] = [];
      ws.on('message', (data: Buffer) => messages.push(data));
      await new Promise<void>((resolve, reject) => (ws.once('open', () => resolve()), ws.once('error', reject)));
      ws.send('big:1000');
      await until(() => messages.length === 1, 'the small message relayed', 5_000);
      expect(messages[0]?.length).toBe(1000);
      const closesBefore = live.closes.length;
      ws.send('big:100000');
      expect(await closed).toBe(1013);
      expect(messages).toHaveLength(1);
      await until(() => live.closes.length > closesBefore, 'the upstream side closed', 5_000);
      expect(live.closes.at(-1)?.code).toBe(1013);
    } finally {
      ws.terminate();
    }
  });
});
