/**
 * Proxy hygiene against a network peer writing HTTP by hand (raw sockets: fetch and node:http
 * refuse to send most of this). The upstream here records every request the moment its
 * headers arrive, so "nothing reached the upstream" includes requests whose body never came.
 * - request smuggling (CL+TE, two Content-Lengths, bad chunk sizes): 400 invalid_request in the
 *   gateway's JSON, the connection closed, nothing forwarded (not even the smuggled request);
 * - oversized headers 431, URL > 8 KiB 414, TRACE/TRACK/CONNECT 405;
 * - client-sent X-Forwarded-*, Forwarded and underscore spellings never reach the upstream
 *   without trustProxy; with it, the X-Forwarded ones are honoured (For appended);
 * - path tricks never reach the upstream outside the route's base path.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawRequest } from '../support/raw-http.ts';
import { startWorld, type RunningGateway, type World } from '../support/world.ts';

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

let world: World;
let recorder: Server;
let recorderUrl: string;
const seen: Seen[] = [];

beforeAll(async () => {
  recorder = createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    req.resume();
    req.once('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ url: req.url })));
  });
  await new Promise<void>((resolve) => recorder.listen(0, '127.0.0.1', resolve));
  recorderUrl = `http://127.0.0.1:${(recorder.address() as AddressInfo).port}`;
  world = await startWorld({
    routes: () => [
      { path: '/api', upstream: `${recorderUrl}/v1`, token: 'none', stripPrefix: true },
      { path: '/raw', upstream: recorderUrl, token: 'none' },
    ],
  });
});
afterAll(async () => {
  await world?.close();
  recorder.closeAllConnections();
  await new Promise<void>((resolve) => recorder.close(() => resolve()));
});

interface Exchange {
  status: number;
  raw: string;
  /** The gateway closed the connection (the request never asked it to). */
  closed: boolean;
}

/** Writes bytes as they are and reads until the server closes, or 3 s pass. */
function exchange(bytes: string): Promise<Exchange> {
  return new Promise((resolve) => {
    const socket = connect(world.gateway.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const done = (closed: boolean) => {
      clearTimeout(timer);
      const raw = Buffer.concat(chunks).toString('latin1');
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0), raw, closed });
    };
    const timer = setTimeout(() => {
      socket.destroy();
      done(false);
    }, 3_000);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => {});
    socket.on('close', () => done(true));
    socket.write(Buffer.from(bytes, 'latin1'));
  });
}

function jsonError(raw: string): string | undefined {
  const body = raw.slice(raw.indexOf('\r\n\r\n') + 4);
  try {
    return (JSON.parse(body) as { error?: string }).error;
  } catch {
    return undefined;
  }
}

describe('request smuggling and malformed framing', () => {
  it.each([
    [
      'CL and TE together',
      'POST /raw/up HTTP/1.1\r\nhost: x\r\ncontent-length: 6\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /raw/smuggled HTTP/1.1\r\nhost: x\r\n\r\n',
    ],
    [
      'TE and CL together (reversed order)',
      'POST /raw/up HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 6\r\n\r\n0\r\n\r\nGET /raw/smuggled HTTP/1.1\r\nhost: x\r\n\r\n',
    ],
    [
      'two different Content-Lengths',
      'POST /raw/up HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ncontent-length: 40\r\n\r\nabcdGET /raw/smuggled HTTP/1.1\r\nhost: x\r\n\r\n',
    ],
    ['a non-hex chunk size', 'POST /raw/up HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n'],
    ['a chunk size with a sign', 'POST /raw/up HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n'],
    [
      'an overflowing chunk size',
      'POST /raw/up HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nfffffffffffffffffff\r\nhello\r\n0\r\n\r\n',
    ],
  ])('%s: 400 invalid_request, connection closed, nothing forwarded', async (_label, bytes) => {
    const before = seen.length;
    const res = await exchange(bytes);
    expect(res.status).toBe(400);
    expect(jsonError(res.raw)).toBe('invalid_request');
    expect(res.closed).toBe(true);
    expect(seen.slice(before)).toEqual([]);
  });

  it('control: a well-framed chunked request on the same connection style is forwarded', async () => {
    const before = seen.length;
    const res = await exchange(
      'POST /raw/up HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    );
    expect(res.status).toBe(200);
    expect(seen.slice(before).map((s) => s.url)).toEqual(['/raw/up']);
  });
});

describe('bodies on methods without body semantics', () => {
  // An upstream that ignores a declared length on these methods (CL.0) would parse the body as a
  // second request; browsers never send one (fetch forbids it), so the gateway refuses it.
  it.each(['GET', 'HEAD', 'OPTIONS'])(
    '%s with a Content-Length body: 400 invalid_request, connection closed, nothing forwarded',
    async (method) => {
      const before = seen.length;
      const inner = 'GET /raw/smuggled HTTP/1.1\r\nhost: x\r\n\r\n';
      const res = await exchange(`${method} /raw/cl HTTP/1.1\r\nhost: x\r\ncontent-length: ${inner.length}\r\n\r\n${inner}`);
      expect(res.status).toBe(400);
      if (method !== 'HEAD') expect(jsonError(res.raw)).toBe('invalid_request');
      expect(res.raw.toLowerCase()).toContain('connection: close');
      expect(res.closed).toBe(true);
      expect(seen.slice(before)).toEqual([]);
    },
  );

  it.each(['GET', 'HEAD', 'OPTIONS'])('%s with Content-Length: 0 is forwarded', async (method) => {
    const before = seen.length;
    const res = await exchange(`${method} /raw/empty HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    expect(res.status).toBe(200);
    expect(seen.slice(before).map((s) => `${s.method} ${s.url}`)).toEqual([`${method} /raw/empty`]);
  });

  it('DELETE with a Content-Length body is forwarded with it; chunked is refused', async () => {
    const before = seen.length;
    const sized = await exchange(
      'DELETE /raw/del HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ids":[1]}',
    );
    expect(sized.status).toBe(200);
    expect(seen.slice(before).map((s) => [s.method, s.url, s.headers['content-length']])).toEqual([['DELETE', '/raw/del', '11']]);
    const chunked = await exchange('DELETE /raw/del2 HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n');
    expect(chunked.status).toBe(400);
    expect(jsonError(chunked.raw)).toBe('invalid_request');
    expect(seen.slice(before).map((s) => s.url)).toEqual(['/raw/del']);
  });
});

describe('oversized input and refused methods', () => {
  it('a 20 KB header: 431 headers_too_large, connection closed', async () => {
    const before = seen.length;
    const res = await exchange(`GET /raw/x HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20 * 1024)}\r\n\r\n`);
    expect(res.status).toBe(431);
    expect(jsonError(res.raw)).toBe('headers_too_large');
    expect(res.closed).toBe(true);
    expect(seen.length).toBe(before);
  });

  it('a URL longer than 8 KiB: 414 uri_too_long; just under the limit is forwarded', async () => {
    const before = seen.length;
    const long = await exchange(`GET /raw/${'a'.repeat(8200)} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`);
    expect(long.status).toBe(414);
    expect(jsonError(long.raw)).toBe('uri_too_long');
    expect(seen.length).toBe(before);
    const under = await exchange(`GET /raw/${'a'.repeat(8000)} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`);
    expect(under.status).toBe(200);
  });

  it.each([
    ['TRACE', 'TRACE /raw/x HTTP/1.1'],
    ['TRACK', 'TRACK /raw/x HTTP/1.1'],
    ['CONNECT', 'CONNECT 127.0.0.1:1 HTTP/1.1'],
  ])('%s: 405 method_not_allowed, nothing forwarded', async (_method, requestLine) => {
    const before = seen.length;
    const res = await exchange(`${requestLine}\r\nhost: x\r\nconnection: close\r\n\r\n`);
    expect(res.status).toBe(405);
    expect(jsonError(res.raw)).toBe('method_not_allowed');
    expect(seen.length).toBe(before);
  });
});

const SPOOFED = {
  'x-forwarded-for': '6.6.6.6',
  'x-forwarded-host': 'evil.example',
  'x-forwarded-proto': 'https',
  forwarded: 'for=6.6.6.6;host=evil.example;proto=https',
  x_forwarded_for: '6.6.6.6',
  X_Forwarded_Host: 'evil.example',
  x_forwarded_proto: 'https',
};

async function forwardedThrough(gateway: RunningGateway): Promise<IncomingHttpHeaders> {
  const before = seen.length;
  const res = await rawRequest(`${gateway.url}/raw/headers`, { headers: SPOOFED });
  expect(res.status).toBe(200);
  expect(seen.length).toBe(before + 1);
  return (seen.at(-1) as Seen).headers;
}

describe('forwarding headers', () => {
  it('without trustProxy, client-sent forwarding headers and underscore spellings never reach the upstream', async () => {
    const headers = await forwardedThrough(world.gateway);
    expect(headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(headers['x-forwarded-host']).toBe(`127.0.0.1:${world.gateway.port}`);
    expect(headers['x-forwarded-proto']).toBe('http');
    expect(headers.forwarded).toBeUndefined();
    expect(Object.keys(headers).filter((name) => name.includes('_'))).toEqual([]);
    expect(JSON.stringify(headers)).not.toMatch(/6\.6\.6\.6|evil\.example/);
  });

  it('with trustProxy, only the For chain is taken from the front (and appended to); host and proto still come from publicUrl', async () => {
    const trusting = await world.startGateway({}, { trustProxy: true });
    const headers = await forwardedThrough(trusting);
    expect(headers['x-forwarded-for']).toBe('6.6.6.6, 127.0.0.1');
    expect(headers['x-forwarded-host']).toBe(new URL(trusting.config.publicUrl).host);
    expect(headers['x-forwarded-proto']).toBe('http');
    expect(headers.forwarded).toBeUndefined();
    expect(Object.keys(headers).filter((name) => name.includes('_'))).toEqual([]);
  });
});

/** Where a path would land on a server that decodes and resolves it as leniently as possible. */
function leniently(path: string): string {
  let current = path;
  for (let round = 0; round < 3; round++) {
    let decoded = current;
    try {
      decoded = decodeURIComponent(current);
    } catch {
      // Not decodable: taken as is.
    }
    current = new URL(decoded.replace(/\\/g, '/').replace(/;[^/]*/g, ''), 'http://upstream.invalid').pathname;
  }
  return current;
}

describe('path tricks (route /api, stripPrefix, upstream base path /v1)', () => {
  it('control: /api/x reaches the upstream as /v1/x', async () => {
    const res = await exchange('GET /api/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    expect(res.status).toBe(200);
    expect((seen.at(-1) as Seen).url).toBe('/v1/x');
  });

  it.each([
    '/api/%2e%2e/secret',
    '/api/..%2fsecret',
    '/api/%252e%252e/x',
    '/api\\..\\x',
    '/api/..\\x',
    '//api/x',
    '/api;x=/../x',
    '/api/..;/x',
    '/api/.%2e/.%2e/x',
    '/api/x/../../x',
  ])('%s never reaches the upstream outside /v1', async (path) => {
    const before = seen.length;
    const res = await exchange(`GET ${path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`);
    const forwarded = seen.slice(before);
    if (forwarded.length === 0) {
      expect([400, 404]).toContain(res.status);
    } else {
      for (const request of forwarded) expect(leniently(request.url)).toMatch(/^\/v1(\/|$)/);
    }
  });
});
