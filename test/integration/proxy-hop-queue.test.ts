/**
 * Waiting for an upstream connection is the gateway's own (src/proxy/forward.ts): with every
 * connection of a pool held, requests that time out while they wait leave nothing behind —
 * neither in the gateway nor in undici's queue, where their headers (bearer tokens) would stay
 * alive — and the next request is served once the held ones finish.
 */
import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { ServerResponse as NodeResponse } from 'node:http';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { Forwarder, type ForwardTarget, type UpstreamResponse } from '../../src/proxy/forward.ts';
import { until } from '../support/wire.ts';

let server: Server;
let origin: string;
const held: ServerResponse[] = [];
let seen = 0;

beforeAll(async () => {
  server = createServer((req: IncomingMessage, res: ServerResponse) => {
    seen++;
    req.resume();
    if (req.url === '/hold') held.push(res);
    else res.end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(() => new Promise((resolve) => server.close(resolve)));

/** What `send` needs of the browser's response: it stays open for the whole test. */
function browser(): NodeResponse {
  return Object.assign(new EventEmitter(), {
    destroyed: false,
    writableFinished: false,
    headersSent: false,
    writeEarlyHints() {},
  }) as unknown as NodeResponse;
}

const target = (path: string, timeoutMs: number): ForwardTarget => ({
  method: 'GET',
  url: new URL(path, origin),
  headers: { authorization: 'Bearer queued-token-0123456789' },
  body: undefined,
  contentLength: undefined,
  timeoutMs,
  carriesToken: true,
  resendable: true,
});

function bodyOf(response: UpstreamResponse): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    response.relay({ data: (chunk) => chunks.push(chunk) > 0, end: () => resolve(Buffer.concat(chunks).toString()), fail: reject });
  });
}

test('requests that time out while every connection is held leave nothing queued; the next one is served once the held ones finish', async () => {
  const forwarder = new Forwarder({ connections: 2 });
  try {
    const holding = [forwarder.send(browser(), target('/hold', 30_000)), forwarder.send(browser(), target('/hold', 30_000))];
    await until(() => held.length === 2, 'both connections held');
    const late = await Promise.allSettled(Array.from({ length: 200 }, () => forwarder.send(browser(), target('/queued', 100))));
    for (const outcome of late) {
      expect(outcome.status).toBe('rejected');
      expect((outcome as PromiseRejectedResult).reason.code).toBe('gateway_timeout');
    }
    const stats = forwarder.stats();
    expect(stats.undiciPending).toBe(0);
    expect(stats.waiting).toBe(0);
    expect(stats.dispatched).toBe(2);
    // Nothing of the timed-out requests ever reached the upstream.
    expect(seen).toBe(2);

    const next = forwarder.send(browser(), target('/after', 30_000));
    for (const res of held.splice(0)) res.end('released');
    for (const response of await Promise.all(holding)) expect(await bodyOf(response)).toBe('released');
    const after = await next;
    expect(after.statusCode).toBe(200);
    expect(await bodyOf(after)).toBe('ok');
    await until(() => forwarder.stats().dispatched === 0, 'every slot given back');
    expect(forwarder.stats()).toEqual({ waiting: 0, dispatched: 0, undiciPending: 0 });
  } finally {
    await forwarder.close();
  }
});
