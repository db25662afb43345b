/**
 * The replay-buffer budget on proxied HTTP requests (`limits.maxBufferedBytes`, here 64 KiB;
 * src/proxy/request-body.ts `BufferBudget`, src/proxy/handler.ts). On a token route with
 * `tokens.retryOn401` (the default) a body of declared length up to 1 MiB is read into memory
 * before it is forwarded, so that a 401 `invalid_token` can be answered by refreshing the token
 * and sending the request again; all such bodies together may hold at most the budget. Past it
 * a body streams to the upstream as it arrives, and its 401 is passed through, not replayed.
 *
 * Two uploads of 40 000 bytes are started and their bodies held back (1 000 bytes sent): each
 * fits the budget alone, both do not. Whichever reaches the budget first is buffered — its
 * upstream request cannot begin before its last byte — and the other finds the budget taken and
 * streams: its upstream request begins while its body is still arriving. That the streamed one
 * is seen at the upstream at all proves the budget was taken by the other (nothing else holds
 * any), whichever order the gateway handled them in. With the upstream refusing the session's
 * token, the buffered one is replayed after one refresh grant, the streamed one's 401 reaches
 * the browser. Once both are over, the budget is free again: a third upload of the same size is
 * buffered and its 401 replayed (a reservation that were never released would make it stream).
 *
 * The upstream records each request the moment its head arrives, with the body bytes received
 * so far and whether the body is complete.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { login } from '../support/login.ts';
import { bearerOf } from '../support/upstream.ts';
import { apiHeaders, startWorld, type World } from '../support/world.ts';
import { requestBytes, until, Wire, type WireResponse } from '../support/wire.ts';

const BUDGET = 64 * 1024;
const SIZE = 40_000;
const SENT_FIRST = 1_000;

interface Arrival {
  id: string;
  token: string;
  bodyBytes: number;
  complete: boolean;
}

/**
 * `/protected`: once the body is in, 401 `invalid_token` for a token in `rejected`, else 200
 * with the body length and the token seen. Every request is recorded when its head arrives.
 */
class BudgetUpstream {
  readonly arrivals: Arrival[] = [];
  readonly rejected = new Set<string>();
  private readonly server: Server;

  constructor() {
    this.server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://upstream.invalid');
      const arrival: Arrival = { id: url.searchParams.get('id') ?? '', token: bearerOf(req.headers), bodyBytes: 0, complete: false };
      this.arrivals.push(arrival);
      req.on('data', (chunk: Buffer) => (arrival.bodyBytes += chunk.length));
      req.on('error', () => {});
      req.once('end', () => {
        arrival.complete = true;
        if (this.rejected.has(arrival.token)) {
          res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"', 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: 'invalid_token' }));
          return;
        }
        const text = JSON.stringify({ id: arrival.id, bodyBytes: arrival.bodyBytes });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      });
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((done) => this.server.listen(0, '127.0.0.1', done));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  of(id: string): Arrival[] {
    return this.arrivals.filter((arrival) => arrival.id === id);
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((done) => this.server.close(() => done()));
    this.server.closeAllConnections();
    await closed;
  }
}

let upstream: BudgetUpstream;
let world: World;

beforeAll(async () => {
  upstream = new BudgetUpstream();
  const url = await upstream.listen();
  world = await startWorld({
    // bodyIdleTimeout: the held-back bodies must not fail with 408 while the test looks.
    config: { limits: { maxBufferedBytes: BUDGET, bodyIdleTimeout: '30s' } },
    routes: () => [{ path: '/api', upstream: url, token: 'user' }],
  });
});
afterAll(async () => {
  await world?.close();
  await upstream?.close();
});

function uploadHead(id: string, cookieHeader: string): Buffer {
  return requestBytes('POST', `/api/protected?id=${id}`, {
    ...apiHeaders(cookieHeader),
    'content-type': 'application/octet-stream',
    'content-length': String(SIZE),
  });
}

function expectReplayed(answer: WireResponse, id: string, rejectedToken: string): string {
  expect(answer.status, answer.body.toString('utf8')).toBe(200);
  expect(JSON.parse(answer.body.toString('utf8'))).toEqual({ id, bodyBytes: SIZE });
  // Sent twice, whole both times: with the refused token, then with a refreshed one.
  const seen = upstream.of(id);
  expect(seen.map((arrival) => [arrival.bodyBytes, arrival.complete])).toEqual([
    [SIZE, true],
    [SIZE, true],
  ]);
  expect(seen[0]?.token).toBe(rejectedToken);
  const refreshed = seen[1]?.token ?? '';
  expect(refreshed).not.toBe('');
  expect(refreshed).not.toBe(rejectedToken);
  return refreshed;
}

describe('limits.maxBufferedBytes on proxied request bodies', () => {
  test('past the budget a body streams and its 401 is passed through; within it, it is buffered and replayed; the budget comes back when requests end', async () => {
    const { cookieHeader } = await login(world.url);
    const probe = await fetch(`${world.url}/api/protected?id=probe`, { headers: apiHeaders(cookieHeader) });
    expect(probe.status).toBe(200);
    await probe.body?.cancel();
    const firstToken = upstream.of('probe')[0]?.token ?? '';
    expect(firstToken).not.toBe('');
    upstream.rejected.add(firstToken);
    const grantsBefore = world.idp.counters.refreshGrants;

    const wires = new Map<string, Wire>();
    for (const id of ['a', 'b']) {
      const wire = await Wire.open(world.gateway.port);
      wire.write(uploadHead(id, cookieHeader));
      wire.write(Buffer.alloc(SENT_FIRST, id));
      wires.set(id, wire);
    }

    // One of them streams: its upstream request has begun with only part of its body sent.
    const streamed = (await until(
      () => upstream.arrivals.find((arrival) => arrival.id === 'a' || arrival.id === 'b'),
      'one upload, past the budget, reached the upstream while its body was still arriving',
    )) as Arrival;
    const bufferedId = streamed.id === 'a' ? 'b' : 'a';
    expect(streamed.complete).toBe(false);
    expect(streamed.bodyBytes).toBeLessThanOrEqual(SENT_FIRST);
    // The other is being read into memory: nothing of it can have reached the upstream.
    expect(upstream.of(bufferedId)).toEqual([]);

    for (const [id, wire] of wires) wire.write(Buffer.alloc(SIZE - SENT_FIRST, id));
    const streamedAnswer = await (wires.get(streamed.id) as Wire).next();
    const bufferedAnswer = await (wires.get(bufferedId) as Wire).next();

    // The streamed upload could not be sent twice: the upstream's 401 reaches the browser.
    expect(streamedAnswer.status, streamedAnswer.body.toString('utf8')).toBe(401);
    expect(streamedAnswer.get('www-authenticate')).toBe('Bearer error="invalid_token"');
    expect(upstream.of(streamed.id).map((arrival) => [arrival.token, arrival.bodyBytes, arrival.complete])).toEqual([
      [firstToken, SIZE, true],
    ]);
    // The buffered one was refreshed and replayed.
    const secondToken = expectReplayed(bufferedAnswer, bufferedId, firstToken);
    expect(world.idp.counters.refreshGrants - grantsBefore).toBe(1);

    // Both are over: their reservations are back, so an upload of the same size is buffered
    // again and its 401 replayed.
    upstream.rejected.add(secondToken);
    const again = await Wire.open(world.gateway.port);
    again.write(Buffer.concat([uploadHead('c', cookieHeader), Buffer.alloc(SIZE, 'c')]));
    const thirdToken = expectReplayed(await again.next(), 'c', secondToken);
    expect(thirdToken).not.toBe(firstToken);
    expect(world.idp.counters.refreshGrants - grantsBefore).toBe(2);
    for (const wire of [...wires.values(), again]) wire.destroy();
  });
});
