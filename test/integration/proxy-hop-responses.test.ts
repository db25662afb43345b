/**
 * Upstream answers on a token route (`scrub.bodies` on, the default), read as raw bytes on a
 * keep-alive connection so that framing mistakes show up in the next answer:
 * - HEAD, 204 and 304 answers labelled `content-encoding: gzip` with no body are relayed intact
 *   (status, headers, no body bytes), still get header hygiene (a token-carrying header is
 *   dropped), and the connection serves the next request;
 * - a browser revalidating with `If-None-Match` gets the 304 after the 200 it cached;
 * - token scrubbing covers bodies of every content type (binary ones, multipart, CSV,
 *   grpc-web-text, images, none at all), plain, gzip and br: the token never reaches the
 *   browser, `[redacted]` stands in its place byte for byte, and the framing (content-length or
 *   chunked) matches the bytes sent;
 * - tokens that a body carries only encoded are found too: a real grpc-web-text body (base64 of
 *   the binary frames, the token inside a protobuf string) and JSON that escapes `/` as `\/`
 *   (an opaque token with slashes, from an IdP front that issues one).
 */
import { randomBytes } from 'node:crypto';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ANNOUNCED_LENGTH,
  ETAG,
  GRPC_TRAILER,
  grpcWebTextBody,
  replaceAll,
  startHopUpstream,
  TYPED_BODIES,
  typedBody,
  type HopUpstream,
} from '../support/hop-upstream.ts';
import { startWorldBehindFront } from '../support/hostile-idp.ts';
import { login, type LoginResult } from '../support/login.ts';
import { bearerOf } from '../support/upstream.ts';
import { requestBytes, Wire, type WireResponse } from '../support/wire.ts';
import { startWorld, type World } from '../support/world.ts';

let world: World;
let hop: HopUpstream;
let session: LoginResult;
let sequence = 0;

beforeAll(async () => {
  hop = await startHopUpstream();
  world = await startWorld({
    routes: () => [
      { path: '/api', upstream: hop.url, token: 'user' },
      { path: '/', upstream: hop.url, token: 'none' },
    ],
  });
  session = await login(world.url);
});
afterAll(async () => {
  await world?.close();
  await hop?.close();
});

const nextId = (label: string) => `${label}-${++sequence}`;

/** Header lines of an SPA call on a token route. */
function api(extra: Array<[string, string]> = []): Array<[string, string]> {
  return [['cookie', session.cookieHeader], ['x-csrf', '1'], ...extra];
}

/** The bearer token the upstream received with the request named `id`. */
function tokenSeen(id: string): string {
  const seen = hop.byId(id);
  expect(seen, `the upstream received request ${id}`).toBeDefined();
  const token = bearerOf(seen?.headers ?? {});
  expect(token.length).toBeGreaterThan(20);
  return token;
}

/** A second request on the same connection is answered normally: the previous answer's framing was right. */
async function connectionStillServes(wire: Wire): Promise<void> {
  const id = nextId('after');
  wire.write(requestBytes('GET', `/api/echo?id=${id}`, api()));
  const res = await wire.next({ timeoutMs: 5_000 });
  expect(res.status).toBe(200);
  expect(JSON.parse(res.body.toString('utf8'))).toMatchObject({ method: 'GET', url: `/api/echo?id=${id}` });
  expect(wire.isClosed).toBe(false);
}

function decoded(res: WireResponse): Buffer {
  const encoding = res.get('content-encoding');
  if (encoding === undefined || encoding === 'identity') return res.body;
  if (encoding === 'gzip') return gunzipSync(res.body);
  if (encoding === 'br') return brotliDecompressSync(res.body);
  throw new Error(`unexpected content-encoding ${encoding}`);
}

describe('answers without a body, labelled gzip', () => {
  it('HEAD: status and headers relayed intact, no body, the connection serves the next request', async () => {
    const wire = await Wire.open(world.gateway.port);
    try {
      const id = nextId('head');
      wire.write(requestBytes('HEAD', `/api/bodyless?status=200&id=${id}`, api([['accept-encoding', 'gzip']])));
      const res = await wire.next({ method: 'HEAD', timeoutMs: 5_000 });
      const token = tokenSeen(id);
      expect(res.status).toBe(200);
      expect(res.get('content-encoding')).toBe('gzip');
      expect(res.get('content-length')).toBe(String(ANNOUNCED_LENGTH));
      expect(res.get('etag')).toBe(ETAG);
      expect(res.get('x-hop')).toBe('bodyless');
      // Hygiene still applies to a bodyless answer.
      expect(res.get('x-access-token')).toBeUndefined();
      expect(res.head).not.toContain(token);
      await connectionStillServes(wire);
    } finally {
      wire.destroy();
    }
  });

  it('204: relayed with its headers, no body and no framing headers, the connection serves the next request', async () => {
    const wire = await Wire.open(world.gateway.port);
    try {
      const id = nextId('204');
      wire.write(requestBytes('GET', `/api/bodyless?status=204&id=${id}`, api([['accept-encoding', 'gzip']])));
      const res = await wire.next({ timeoutMs: 5_000 });
      const token = tokenSeen(id);
      expect(res.status).toBe(204);
      expect(res.get('content-encoding')).toBe('gzip');
      expect(res.get('etag')).toBe(ETAG);
      expect(res.get('x-access-token')).toBeUndefined();
      expect(res.get('transfer-encoding')).toBeUndefined();
      expect(res.get('content-length')).toBeUndefined();
      expect(res.head).not.toContain(token);
      await connectionStillServes(wire);
    } finally {
      wire.destroy();
    }
  });

  it('304: relayed with its headers and no body, the connection serves the next request', async () => {
    const wire = await Wire.open(world.gateway.port);
    try {
      const id = nextId('304');
      wire.write(
        requestBytes(
          'GET',
          `/api/bodyless?status=304&id=${id}`,
          api([
            ['accept-encoding', 'gzip'],
            ['if-none-match', ETAG],
          ]),
        ),
      );
      const res = await wire.next({ timeoutMs: 5_000 });
      tokenSeen(id);
      expect(res.status).toBe(304);
      expect(res.get('content-encoding')).toBe('gzip');
      expect(res.get('etag')).toBe(ETAG);
      expect(res.get('x-access-token')).toBeUndefined();
      expect(res.get('transfer-encoding')).toBeUndefined();
      await connectionStillServes(wire);
    } finally {
      wire.destroy();
    }
  });

  it('a browser revalidating with If-None-Match gets the 304 after the scrubbed 200, on one connection', async () => {
    const wire = await Wire.open(world.gateway.port);
    try {
      const first = nextId('etag');
      wire.write(requestBytes('GET', `/api/etag?id=${first}`, api([['accept-encoding', 'gzip, deflate, br']])));
      const fresh = await wire.next({ timeoutMs: 5_000 });
      const token = tokenSeen(first);
      expect(fresh.status).toBe(200);
      expect(fresh.get('etag')).toBe(ETAG);
      const plain = decoded(fresh).toString('utf8');
      expect(plain).not.toContain(token);
      expect(JSON.parse(plain)).toEqual({ version: 1, token: '[redacted]' });

      const second = nextId('etag');
      wire.write(
        requestBytes(
          'GET',
          `/api/etag?id=${second}`,
          api([
            ['accept-encoding', 'gzip, deflate, br'],
            ['if-none-match', fresh.get('etag') as string],
          ]),
        ),
      );
      const revalidated = await wire.next({ timeoutMs: 5_000 });
      expect(hop.byId(second)?.headers['if-none-match']).toBe(ETAG);
      expect(revalidated.status).toBe(304);
      expect(revalidated.get('etag')).toBe(ETAG);
      expect(revalidated.body.length).toBe(0);
      await connectionStillServes(wire);
    } finally {
      wire.destroy();
    }
  });
});

describe('body scrubbing covers every content type', () => {
  const cases = TYPED_BODIES.flatMap((type) => (['identity', 'gzip', 'br'] as const).map((encoding) => [type, encoding] as const));

  it.each(cases)('%s (%s): token replaced byte for byte, framing matches the bytes sent', async (type, encoding) => {
    const wire = await Wire.open(world.gateway.port);
    try {
      const id = nextId('typed');
      const query = new URLSearchParams({ type, id, ...(encoding === 'identity' ? {} : { encoding }) });
      wire.write(requestBytes('GET', `/api/typed?${query}`, api([['accept-encoding', 'gzip, br']])));
      const res = await wire.next({ timeoutMs: 5_000 });
      const token = tokenSeen(id);
      expect(res.status).toBe(200);
      expect(['content-length', 'chunked']).toContain(res.framing);
      expect(res.body.includes(Buffer.from(token)), 'the token in the bytes sent').toBe(false);
      const original = typedBody(type, token);
      expect(res.get('content-type')).toBe(original.contentType);
      const plain = decoded(res);
      expect(plain.includes(Buffer.from(token)), 'the token in the decoded body').toBe(false);
      expect(plain.includes(Buffer.from('[redacted]'))).toBe(true);
      expect(plain.equals(replaceAll(original.body, token, '[redacted]')), 'the body with [redacted] in place of the token').toBe(true);
      await connectionStillServes(wire);
    } finally {
      wire.destroy();
    }
  });
});

describe('body scrubbing finds a token that the body carries only encoded', () => {
  it.each(['identity', 'gzip', 'br'] as const)(
    'grpc-web-text (%s), a real body (base64 of the gRPC frames): the token is in none of its forms, the frames still decode',
    async (encoding) => {
      const wire = await Wire.open(world.gateway.port);
      try {
        const id = nextId('grpc-web-text');
        const query = new URLSearchParams({ type: 'application/grpc-web-text', id, ...(encoding === 'identity' ? {} : { encoding }) });
        wire.write(requestBytes('GET', `/api/typed?${query}`, api([['accept-encoding', 'gzip, br']])));
        const res = await wire.next({ timeoutMs: 5_000 });
        const token = tokenSeen(id);
        expect(res.status).toBe(200);
        expect(res.get('content-type')).toBe('application/grpc-web-text');
        // The upstream sent what a real server sends: the token's bytes only inside the base64.
        const original = grpcWebTextBody(token);
        expect(original.includes(Buffer.from(token))).toBe(false);
        expect(Buffer.from(original.toString('latin1'), 'base64').includes(Buffer.from(token))).toBe(true);

        const text = decoded(res).toString('latin1');
        expect(text, 'still base64 text').toMatch(/^[A-Za-z0-9+/]+=*$/);
        const frames = Buffer.from(text, 'base64');
        // Up to two bytes at each end of the token share a base64 group with its neighbours.
        expect(frames.includes(Buffer.from(token.slice(2, -2))), 'the token in the decoded frames').toBe(false);
        expect(frames.subarray(frames.length - GRPC_TRAILER.length).toString('latin1'), 'the trailer frame after the message').toBe(
          GRPC_TRAILER,
        );
        await connectionStillServes(wire);
      } finally {
        wire.destroy();
      }
    },
  );

  describe('an opaque access token with slashes, in JSON that escapes them as \\/', () => {
    // What the IdP front issues instead of its JWT: opaque, with `/` (and `+`) like base64 text.
    const OPAQUE = `op/aque+access/${randomBytes(18).toString('base64url')}/token`;
    let escapedWorld: World;
    let escapedSession: LoginResult;

    beforeAll(async () => {
      const started = await startWorldBehindFront({ routes: () => [{ path: '/api', upstream: hop.url, token: 'user' }] });
      escapedWorld = started.world;
      started.front.rewriteTokenResponse = (body) => ({ ...body, access_token: OPAQUE });
      escapedSession = await login(escapedWorld.url);
    });
    afterAll(() => escapedWorld?.close());

    it.each(['identity', 'gzip'] as const)(
      'JSON (%s) with the token written as op\\/aque…: neither spelling reaches the browser',
      async (encoding) => {
        const wire = await Wire.open(escapedWorld.gateway.port);
        try {
          const id = nextId('escaped-json');
          const query = new URLSearchParams({ type: 'application/json', id, ...(encoding === 'identity' ? {} : { encoding }) });
          wire.write(
            requestBytes('GET', `/api/typed?${query}`, [
              ['cookie', escapedSession.cookieHeader],
              ['x-csrf', '1'],
              ['accept-encoding', 'gzip'],
            ]),
          );
          const res = await wire.next({ timeoutMs: 5_000 });
          expect(tokenSeen(id), 'the upstream got the opaque token').toBe(OPAQUE);
          expect(res.status).toBe(200);
          const escaped = OPAQUE.replaceAll('/', '\\/');
          // The upstream wrote the escaped spelling only.
          expect(typedBody('application/json', OPAQUE).body.toString('latin1')).toContain(escaped);
          const text = decoded(res).toString('latin1');
          expect(text.includes(escaped), 'the escaped token').toBe(false);
          expect(text.includes(OPAQUE), 'the token').toBe(false);
          const parsed = JSON.parse(text) as { token: string };
          expect(parsed.token, 'the JSON still parses and the value is gone').not.toBe(OPAQUE);
          expect(parsed.token).toContain('[redacted]');
        } finally {
          wire.destroy();
        }
      },
    );
  });
});
