/**
 * Token redaction in response bodies (`scrub.bodies`): every occurrence of the session's access,
 * refresh or ID token in a body of any content type becomes `[redacted]`.
 *
 * Streaming, not buffering: each chunk is searched together with a carried-over tail, so a
 * token split across chunks is still found. Only as much is held back as could still be the
 * start of a token, and never past a byte that cannot occur in a token (a newline, a quote, a
 * space): so server-sent events and JSON streams flow without added latency.
 *
 * Compressed bodies (gzip, deflate, br) are decoded first and sent identity-encoded; the
 * length changes, so `content-length` is removed and the body goes out chunked.
 *
 * A token is looked for in the forms a body really carries it in, not only verbatim:
 * - JSON that escapes `/` as `\/` (an opaque token with a slash, as PHP or Java serialisers
 *   write it): replaced by `[redacted]`;
 * - base64 (`application/grpc-web-text`, a base64-wrapped JSON or protobuf payload): the token
 *   may start at any of the three byte positions of a base64 group, so the stable middle of its
 *   encoding at each alignment is searched — the characters that depend on the neighbouring
 *   bytes are left out. Those are replaced by a base64 placeholder of the same length (it
 *   decodes to `[redacted][redacted]…`), so the body stays decodable and any length prefix
 *   inside it stays true. At most two bytes of the token at each end survive in the boundary
 *   characters: nothing a bearer of the rest could use.
 */
import { Transform, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';
import { LruMap } from '../util/lru-map.ts';

const REPLACEMENT = Buffer.from('[redacted]');
/** Bytes that can appear in an OAuth token (RFC 6750 b64token, JWTs, opaque tokens). */
const B64TOKEN = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=';
/** Shorter base64 runs than this (6 token bytes) are not searched: too likely to hit by chance. */
const MIN_BASE64_NEEDLE = 8;

/** A `content-encoding` the scrubber can undo. */
export type BodyEncoding = 'identity' | 'gzip' | 'deflate' | 'br';

/** The body's `content-encoding` as one the scrubber can undo, or undefined for any other. */
export function bodyEncoding(encoding: string | string[] | undefined): BodyEncoding | undefined {
  const value = [encoding ?? ''].flat().join(',').trim().toLowerCase();
  if (value === '' || value === 'identity') return 'identity';
  if (value === 'gzip' || value === 'x-gzip') return 'gzip';
  if (value === 'deflate' || value === 'br') return value;
  return undefined;
}

/** A streaming decoder for `encoding` (null for identity). */
export function decoderFor(encoding: BodyEncoding): Transform | null {
  if (encoding === 'gzip') return zlib.createGunzip();
  if (encoding === 'deflate') return zlib.createInflate();
  if (encoding === 'br') return zlib.createBrotliDecompress();
  return null;
}

/**
 * A whole compressed body decoded in one call, or undefined when it decodes to more than
 * `maxBytes` (the caller streams it instead). Throws when it is not what its encoding says.
 */
export function decodeWhole(encoding: Exclude<BodyEncoding, 'identity'>, body: Buffer, maxBytes: number): Buffer | undefined {
  const options = { maxOutputLength: maxBytes };
  try {
    if (encoding === 'gzip') return zlib.gunzipSync(body, options);
    if (encoding === 'deflate') return zlib.inflateSync(body, options);
    return zlib.brotliDecompressSync(body, options);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') return undefined;
    throw error;
  }
}

interface Needle {
  bytes: Buffer;
  replacement: Buffer;
}

/** A base64 run of `length` characters that decodes to `[redacted]` repeated. */
function base64Placeholder(length: number): Buffer {
  const raw = Buffer.alloc((length / 4) * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = REPLACEMENT[i % REPLACEMENT.length] as number;
  return Buffer.from(raw.toString('base64'));
}

/** Every form of `token` the redactor looks for, with what replaces it. */
export function needlesFor(token: string): Needle[] {
  const bytes = Buffer.from(token);
  const needles: Needle[] = [{ bytes, replacement: REPLACEMENT }];
  if (token.includes('/')) needles.push({ bytes: Buffer.from(token.replaceAll('/', '\\/')), replacement: REPLACEMENT });
  // The token at byte offset 0, 1 or 2 of a base64 group: skip the 0, 2 or 1 bytes that share a
  // group with unknown neighbours, encode whole groups only.
  for (const skip of [0, 1, 2]) {
    const whole = Math.floor((bytes.length - skip) / 3) * 3;
    if (whole <= 0) continue;
    const encoded = Buffer.from(bytes.subarray(skip, skip + whole).toString('base64'));
    if (encoded.length >= MIN_BASE64_NEEDLE) needles.push({ bytes: encoded, replacement: base64Placeholder(encoded.length) });
  }
  return needles;
}

/** The needles of one set of tokens, ready to search: longest first, with the bytes they contain. */
interface Compiled {
  needles: Needle[];
  holdBack: number;
  /** Bytes a token may contain: the b64token alphabet plus any byte of the needles. */
  tokenByte: Uint8Array;
}

/**
 * Compiled needle sets by token set. Building one (base64 at three alignments, placeholders,
 * the byte table) costs far more than redacting a small body (~175 µs), and a session sends
 * the same tokens until they are refreshed: most requests find theirs here. Least recently
 * used go first; about 20 KB a set with the demo IdP's tokens, so ~20 MB at the bound. More
 * sessions active at once than the bound rebuild their sets in turn.
 */
const COMPILED_CACHE_SIZE = 1024;
const compiledCache = new LruMap<string, Compiled>(COMPILED_CACHE_SIZE);

/**
 * The same frozen list again (a session's token list is one frozen array while its record
 * lives, credentials.ts): found by identity, without joining and hashing the tokens, kilobytes
 * per request. Only frozen lists: one that could change after it was compiled would keep stale
 * needles. Bounded like the cache by key, not tied to the records' lifetime.
 */
const compiledByList = new LruMap<readonly string[], Compiled>(COMPILED_CACHE_SIZE);

function compile(tokens: readonly string[]): Compiled {
  const frozen = Object.isFrozen(tokens);
  const known = frozen ? compiledByList.get(tokens) : undefined;
  if (known) return known;
  const key = tokens.join('\0');
  const cached = compiledCache.get(key);
  if (cached) {
    if (frozen) compiledByList.set(tokens, cached);
    return cached;
  }
  const seen = new Set<string>();
  const needles: Needle[] = [];
  for (const token of tokens) {
    if (token.length === 0) continue;
    for (const needle of needlesFor(token)) {
      const id = needle.bytes.toString('latin1');
      if (seen.has(id)) continue;
      seen.add(id);
      needles.push(needle);
    }
  }
  needles.sort((a, b) => b.bytes.length - a.bytes.length);
  const tokenByte = new Uint8Array(256);
  for (const ch of B64TOKEN) tokenByte[ch.charCodeAt(0)] = 1;
  // RFC 6749 allows any printable ASCII in refresh tokens; a token byte must never end a hold.
  for (const needle of needles) for (let i = 0; i < needle.bytes.length; i++) tokenByte[needle.bytes[i] as number] = 1;
  const compiled = { needles, holdBack: Math.max(0, ...needles.map((n) => n.bytes.length - 1)), tokenByte };
  compiledCache.set(key, compiled);
  if (frozen) compiledByList.set(tokens, compiled);
  return compiled;
}

/**
 * The redactor itself, push-based: `write` returns what may be sent now, `end` the rest. No
 * stream machinery, so it can run inside the upstream client's data callback.
 */
export class Redactor {
  private readonly needles: Needle[];
  private readonly holdBack: number;
  private readonly tokenByte: Uint8Array;
  /** Where each needle was last found (or -1: not in the rest of the buffer). */
  private readonly next: Int32Array;
  private carry: Buffer | undefined;

  constructor(tokens: readonly string[]) {
    const { needles, holdBack, tokenByte } = compile(tokens);
    this.needles = needles;
    this.holdBack = holdBack;
    this.tokenByte = tokenByte;
    this.next = new Int32Array(needles.length);
  }

  /** Whether there is anything to look for. */
  get active(): boolean {
    return this.needles.length > 0;
  }

  /** The pieces of `chunk` that can be sent now (some bytes may be held back until more come). */
  write(chunk: Buffer): Buffer[] {
    const buffer = this.carry ? Buffer.concat([this.carry, chunk]) : chunk;
    const output: Buffer[] = [];
    const consumed = this.replaceAll(buffer, false, output);
    this.carry = consumed < buffer.length ? Buffer.from(buffer.subarray(consumed)) : undefined;
    return output;
  }

  /** Whatever was held back, redacted. */
  end(): Buffer[] {
    const output: Buffer[] = [];
    if (this.carry) this.replaceAll(this.carry, true, output);
    this.carry = undefined;
    return output;
  }

  /**
   * A complete match at the end of the buffer may be the start of a longer needle (one token a
   * prefix of another): wait for more input before deciding, or the longer one's tail leaks.
   */
  private couldGrow(buffer: Buffer, at: number, length: number): boolean {
    const rest = buffer.length - at;
    return this.needles.some(
      ({ bytes }) => bytes.length > length && bytes.length > rest && bytes.subarray(0, rest).equals(buffer.subarray(at)),
    );
  }

  /** Appends `buffer` with every complete needle replaced to `output`; returns the index consumed up to. */
  private replaceAll(buffer: Buffer, final: boolean, output: Buffer[]): number {
    const { needles, next } = this;
    for (let i = 0; i < needles.length; i++) next[i] = buffer.indexOf((needles[i] as Needle).bytes);
    let position = 0;
    for (;;) {
      let best = -1;
      for (let i = 0; i < needles.length; i++) {
        let index = next[i] as number;
        // Overlapped by the previous replacement: look again from where it ended.
        if (index !== -1 && index < position) next[i] = index = buffer.indexOf((needles[i] as Needle).bytes, position);
        // Needles are sorted longest first: at one position the longest wins.
        if (index !== -1 && (best === -1 || index < (next[best] as number))) best = i;
      }
      if (best === -1) break;
      const at = next[best] as number;
      const needle = needles[best] as Needle;
      if (!final && this.couldGrow(buffer, at, needle.bytes.length)) break;
      if (at > position) output.push(buffer.subarray(position, at));
      output.push(needle.replacement);
      position = at + needle.bytes.length;
    }
    let safeEnd = buffer.length;
    if (!final) {
      safeEnd = Math.max(position, buffer.length - this.holdBack);
      // Anything up to the last byte that cannot belong to a token is safe to release now.
      for (let i = buffer.length - 1; i >= safeEnd; i -= 1) {
        if (!this.tokenByte[buffer[i] as number]) {
          safeEnd = i + 1;
          break;
        }
      }
    }
    if (safeEnd > position) output.push(buffer.subarray(position, safeEnd));
    return safeEnd;
  }
}

/** The redactor as a Transform stream. */
export class TokenRedactor extends Transform {
  private readonly redactor: Redactor;

  constructor(tokens: readonly string[]) {
    super();
    this.redactor = new Redactor(tokens);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    for (const piece of this.redactor.write(chunk)) this.push(piece);
    callback();
  }

  override _flush(callback: TransformCallback): void {
    for (const piece of this.redactor.end()) this.push(piece);
    callback();
  }
}
