import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, test, vi } from 'vitest';
import { bodyEncoding, decodeWhole, decoderFor, needlesFor, TokenRedactor } from '../../src/proxy/scrub.ts';

const ACCESS = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz';
const REFRESH = 'rt_9f8e7d6c5b4a3210-ZYXWVUTSRQ';
const ID = 'eyJhbGciOiJSUzI1NiJ9.eyJub25jZSI6Im4ifQ.aWQtdG9rZW4tc2lnbmF0dXJl';

async function redact(tokens: string[], chunks: Array<string | Buffer>): Promise<string> {
  const out: Buffer[] = [];
  const redactor = new TokenRedactor(tokens);
  redactor.on('data', (chunk: Buffer) => out.push(chunk));
  await pipeline(Readable.from(chunks.map((c) => Buffer.from(c))), redactor);
  return Buffer.concat(out).toString('utf8');
}

function splitAt(text: string, positions: number[]): string[] {
  const cuts = [...new Set(positions)].sort((a, b) => a - b);
  const parts: string[] = [];
  let last = 0;
  for (const cut of cuts) {
    parts.push(text.slice(last, cut));
    last = cut;
  }
  parts.push(text.slice(last));
  return parts;
}

describe('TokenRedactor', () => {
  test('replaces every occurrence of every token', async () => {
    const body = `{"access_token":"${ACCESS}","refresh_token":"${REFRESH}","id_token":"${ID}","again":"${ACCESS}"}`;
    expect(await redact([ACCESS, REFRESH, ID], [body])).toBe(
      '{"access_token":"[redacted]","refresh_token":"[redacted]","id_token":"[redacted]","again":"[redacted]"}',
    );
  });

  test('a token split across two chunks is found at every split position', async () => {
    const body = `before ${ACCESS} middle ${REFRESH}${ID} after`;
    const expected = 'before [redacted] middle [redacted][redacted] after';
    for (let cut = 0; cut <= body.length; cut += 1) {
      expect(await redact([ACCESS, REFRESH, ID], splitAt(body, [cut]))).toBe(expected);
    }
  });

  test('a token delivered one byte per chunk is still found', async () => {
    expect(await redact([ACCESS], [...`x${ACCESS}y`])).toBe('x[redacted]y');
  });

  test('property: any chunking of any text with tokens inserted gives the same redacted result', async () => {
    const piece = fc.oneof(fc.constantFrom(ACCESS, REFRESH, ID, '\n\n', '"', ' '), fc.string({ maxLength: 30 }));
    await fc.assert(
      fc.asyncProperty(fc.array(piece, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 8 }), async (pieces, rawCuts) => {
        const body = pieces.join('');
        const expected = body.replaceAll(ACCESS, '\u0001').replaceAll(REFRESH, '\u0001').replaceAll(ID, '\u0001');
        // Property inputs may themselves contain the marker; compare only when it is unambiguous.
        fc.pre(!pieces.some((p) => p.includes('\u0001')));
        const chunks = splitAt(
          body,
          rawCuts.map((n) => n % (body.length + 1)),
        );
        const actual = await redact([ACCESS, REFRESH, ID], chunks);
        return actual === expected.replaceAll('\u0001', '[redacted]');
      }),
      { numRuns: 400 },
    );
  });

  test('one token a prefix of another: the longer one is redacted whole, even split at the shorter end', async () => {
    const short = 'AbCdEf0123456789';
    const long = `${short}-and-more-9876`;
    expect(await redact([short, long], [`a ${long} b ${short} c`])).toBe('a [redacted] b [redacted] c');
    for (let cut = 0; cut <= long.length + 4; cut += 1) {
      expect(await redact([short, long], splitAt(`x ${long} y`, [cut]))).toBe('x [redacted] y');
    }
    expect(await redact([short, long], ['x ', short])).toBe('x [redacted]');
  });

  test('overlapping occurrences and repeated tokens', async () => {
    expect(await redact([REFRESH], [`${REFRESH}${REFRESH}${REFRESH}`])).toBe('[redacted][redacted][redacted]');
    expect(await redact(['aaaa'], ['aaaaaaaaa'])).toBe('[redacted][redacted]a');
  });

  test('tokens with characters outside the b64token alphabet are still found across chunks', async () => {
    const odd = 'opaque!token*with:punct';
    for (let cut = 0; cut <= odd.length + 2; cut += 1) {
      expect(await redact([odd], splitAt(` ${odd} `, [cut]))).toBe(' [redacted] ');
    }
  });

  test('no false positives: near misses, partial tokens and other text pass byte for byte', async () => {
    const body = `${ACCESS.slice(0, -1)} ${ACCESS.slice(1)} ${ACCESS.toLowerCase()} héllo wörld \u0000\u00ff`;
    expect(await redact([ACCESS], splitAt(body, [10, 50, 80]))).toBe(body);
    const binary = Buffer.from([0, 1, 2, 255, 254, 10, 13, 0x80]);
    const out: Buffer[] = [];
    const redactor = new TokenRedactor([ACCESS]);
    redactor.on('data', (c: Buffer) => out.push(c));
    await pipeline(Readable.from([binary, binary]), redactor);
    expect(Buffer.concat(out)).toEqual(Buffer.concat([binary, binary]));
  });

  test('no tokens at all: the body passes untouched', async () => {
    expect(await redact([], ['plain ', 'text'])).toBe('plain text');
    expect(await redact([''], ['plain'])).toBe('plain');
  });

  test('releases data promptly: an SSE event ending in a blank line goes out without further input', async () => {
    const redactor = new TokenRedactor([ACCESS, REFRESH]);
    const seen: string[] = [];
    redactor.on('data', (chunk: Buffer) => seen.push(chunk.toString()));
    redactor.write(`event: tick\ndata: {"n":1,"t":"${ACCESS}"}\n\n`);
    await vi.waitFor(() => expect(seen.join('')).toBe('event: tick\ndata: {"n":1,"t":"[redacted]"}\n\n'));
    redactor.write('data: 2\n\n');
    await vi.waitFor(() => expect(seen.join('')).toMatch(/data: 2\n\n$/));
    redactor.end();
  });

  test('holds back no more than could still be the start of a token', async () => {
    const redactor = new TokenRedactor([ACCESS]);
    const seen: Buffer[] = [];
    redactor.on('data', (chunk: Buffer) => seen.push(chunk));
    redactor.write('x'.repeat(1000));
    // The longest form looked for is the token's base64 encoding.
    const longest = Math.max(...needlesFor(ACCESS).map((needle) => needle.bytes.length));
    await vi.waitFor(() => expect(Buffer.concat(seen).length).toBe(1000 - (longest - 1)));
    redactor.end();
    await new Promise((resolve) => redactor.once('end', resolve));
    expect(Buffer.concat(seen).toString()).toBe('x'.repeat(1000));
  });
});

describe('encoded tokens', () => {
  const OPAQUE = 'op/aque+Token/with/slashes-0123456789abcdefghij';

  /** A grpc-web-text body as it is sent: base64 of length-prefixed frames, the token in a protobuf string. */
  function grpcWebText(token: string, prefix: number): string {
    const t = Buffer.from(token);
    const message = Buffer.concat([Buffer.alloc(prefix, 7), Buffer.from([0x0a, t.length]), t, Buffer.from([0x10, 0x96, 0x01])]);
    const header = Buffer.alloc(5);
    header.writeUInt32BE(message.length, 1);
    const trailer = Buffer.from('grpc-status:0\r\n');
    const trailerHeader = Buffer.from([0x80, 0, 0, 0, trailer.length]);
    return Buffer.concat([header, message, trailerHeader, trailer]).toString('base64');
  }

  test.each([0, 1, 2, 3, 4, 5])(
    'base64 (grpc-web-text) with the token at byte offset %i: no form of it survives, the body still decodes with the same length',
    async (prefix) => {
      for (const token of [ACCESS, OPAQUE]) {
        const body = grpcWebText(token, prefix);
        expect(Buffer.from(body, 'base64').includes(token)).toBe(true);
        for (const split of [[], [7], [body.length >> 1, body.length - 3]]) {
          const out = await redact([token, REFRESH], splitAt(body, split));
          expect(out.length).toBe(body.length);
          expect(out).toMatch(/^[A-Za-z0-9+/=]+$/);
          const decoded = Buffer.from(out, 'base64');
          // Two bytes at each end of the token may share a base64 group with its neighbours.
          expect(decoded.includes(token.slice(2, -2))).toBe(false);
          expect(decoded.toString('latin1')).toContain('[redacted]');
          expect(decoded.subarray(decoded.length - 15).toString()).toBe('grpc-status:0\r\n');
        }
      }
    },
  );

  test('JSON with the slash escaped: replaced', async () => {
    const escaped = OPAQUE.replaceAll('/', '\\/');
    const body = `{"a":"${escaped}","b":"${OPAQUE}"}`;
    expect(await redact([OPAQUE], [body])).toBe('{"a":"[redacted]","b":"[redacted]"}');
    expect(await redact([OPAQUE], splitAt(body, [9, 20, 40]))).toBe('{"a":"[redacted]","b":"[redacted]"}');
  });

  test('plain base64 text that does not hold the token passes byte for byte', async () => {
    const body = Buffer.from('an unrelated payload of some length, '.repeat(20)).toString('base64');
    expect(await redact([ACCESS, OPAQUE], splitAt(body, [100, 300]))).toBe(body);
  });
});

describe('decoding', () => {
  const body = `{"token":"${ACCESS}"}`;

  test.each([
    ['gzip', gzipSync(body)],
    ['x-gzip', gzipSync(body)],
    [' GZIP ', gzipSync(body)],
    ['deflate', deflateSync(body)],
    ['br', brotliCompressSync(body)],
  ])('%s bodies are decoded, then redacted, streamed or whole', async (encoding, compressed) => {
    const found = bodyEncoding(encoding);
    if (found === undefined || found === 'identity') throw new Error(`${encoding} not recognised`);
    const decoder = decoderFor(found);
    expect(decoder).toBeTruthy();
    const out: Buffer[] = [];
    const redactor = new TokenRedactor([ACCESS]);
    redactor.on('data', (c: Buffer) => out.push(c));
    await pipeline(Readable.from([compressed.subarray(0, 7), compressed.subarray(7)]), decoder!, redactor);
    expect(Buffer.concat(out).toString()).toBe('{"token":"[redacted]"}');
    expect(decodeWhole(found, compressed, 1024)?.toString()).toBe(body);
  });

  test('a whole body that decodes to more than the limit is left to the stream; a broken one throws', () => {
    const large = gzipSync(Buffer.alloc(300_000, 'a'));
    expect(large.length).toBeLessThan(1024);
    expect(decodeWhole('gzip', large, 256 * 1024)).toBeUndefined();
    expect(decodeWhole('br', brotliCompressSync(Buffer.alloc(300_000, 'a')), 256 * 1024)).toBeUndefined();
    expect(decodeWhole('gzip', large, 300_000)?.length).toBe(300_000);
    expect(() => decodeWhole('gzip', Buffer.from('not gzip at all'), 1024)).toThrow();
    expect(() => decodeWhole('gzip', large.subarray(0, large.length - 5), 300_000)).toThrow();
  });

  test('identity or no encoding needs no decoder', () => {
    expect(bodyEncoding(undefined)).toBe('identity');
    expect(bodyEncoding('')).toBe('identity');
    expect(bodyEncoding('identity')).toBe('identity');
    expect(decoderFor('identity')).toBeNull();
  });

  test('an encoding that cannot be inspected is reported as such', () => {
    expect(bodyEncoding('zstd')).toBeUndefined();
    expect(bodyEncoding('gzip, br')).toBeUndefined();
    expect(bodyEncoding('compress')).toBeUndefined();
  });
});
