/**
 * Keep-alive sockets the upstream has closed while they sat in the gateway's pool: the next
 * request on such a socket fails at once with a reset. The gateway resends once, on a fresh
 * connection, when the request can be sent again (no body, or a buffered one) — and never
 * resends a streamed body, which it no longer has.
 *
 * The upstream here is a raw TCP server that answers the first request on each connection and
 * resets the connection on the second: the stale-socket race, made deterministic.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startWorld, type World } from '../support/world.ts';

let world: World;
let upstream: Server;
let connections = 0;
let requests = 0;

beforeAll(async () => {
  upstream = createServer((socket: Socket) => {
    connections += 1;
    let served = 0;
    let buffered = '';
    socket.on('error', () => {});
    socket.on('data', (chunk) => {
      buffered += chunk.toString('latin1');
      if (!buffered.includes('\r\n\r\n')) return;
      buffered = '';
      requests += 1;
      served += 1;
      if (served > 1) {
        socket.resetAndDestroy();
        return;
      }
      socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok');
    });
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  world = await startWorld({ routes: () => [{ path: '/', upstream: url, token: 'none' }] });
});

afterAll(async () => {
  await world?.close();
  await new Promise((resolve) => upstream?.close(resolve));
});

describe('stale keep-alive sockets', () => {
  test('a request without a body that meets a reset pooled socket is resent on a new connection', async () => {
    const first = await fetch(`${world.url}/one`);
    expect(first.status).toBe(200);
    const before = { connections, requests };
    const second = await fetch(`${world.url}/two`);
    expect(second.status).toBe(200);
    expect(await second.text()).toBe('ok');
    // The pooled socket got the request and was reset; a new connection answered it.
    expect(requests - before.requests).toBe(2);
    expect(connections - before.connections).toBe(1);
  });

  test('a streamed body is never resent: the browser gets 502 bad_gateway', async () => {
    await fetch(`${world.url}/warm`);
    const before = requests;
    const body = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('streamed'));
        controller.close();
      },
    });
    const res = await fetch(`${world.url}/upload`, { method: 'POST', body, duplex: 'half' } as RequestInit);
    expect(res.status).toBe(502);
    expect(await res.json()).toMatchObject({ error: 'bad_gateway' });
    expect(requests - before).toBe(1);
  });
});
