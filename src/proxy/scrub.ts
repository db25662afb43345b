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
 */
import { Transform, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';

const REPLACEMENT = Buffer.from('[redacted]');
/** Bytes that can appear in an OAuth token (RFC 6750 b64token, JWTs, opaque tokens). */
const B64TOKEN = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=';

/** A decoder for the body's `content-encoding`: null for none, undefined for one it cannot undo. */
export function decoderFor(encoding: string | string[] | undefined): Transform | null | undefined {
  const value = [encoding ?? ''].flat().join(',').trim().toLowerCase();
  if (value === '' || value === 'identity') return null;
  if (value === 'gzip' || value === 'x-gzip') return zlib.createGunzip();
  if (value === 'deflate') return zlib.createInflate();
  if (value === 'br') return zlib.createBrotliDecompress();
  return undefined;
}

export class TokenRedactor extends Transform {
  private readonly needles: Buffer[];
  private readonly holdBack: number;
  /** Bytes a token may contain: the b64token alphabet plus any byte of the actual tokens. */
  private readonly tokenByte = new Uint8Array(256);
  private carry: Buffer = Buffer.alloc(0);

  constructor(tokens: readonly string[]) {
    super();
    this.needles = [...new Set(tokens.filter((t) => t.length > 0))].map((t) => Buffer.from(t)).sort((a, b) => b.length - a.length);
    this.holdBack = Math.max(0, ...this.needles.map((n) => n.length - 1));
    for (const ch of B64TOKEN) this.tokenByte[ch.charCodeAt(0)] = 1;
    // RFC 6749 allows any printable ASCII in refresh tokens; a token byte must never end a hold.
    for (const needle of this.needles) for (const byte of needle) this.tokenByte[byte] = 1;
  }

  /**
   * A complete match at the end of the buffer may be the start of a longer token (one token a
   * prefix of another): wait for more input before deciding, or the longer token's tail leaks.
   */
  private couldGrow(buffer: Buffer, at: number, length: number): boolean {
    const rest = buffer.length - at;
    return this.needles.some((needle) => needle.length > length && needle.length > rest && needle.subarray(0, rest).equals(buffer.subarray(at)));
  }

  /** Replaces every complete token in `buffer`; returns output and the index it consumed up to. */
  private replaceAll(buffer: Buffer, final: boolean): { output: Buffer[]; consumed: number } {
    const output: Buffer[] = [];
    let position = 0;
    for (;;) {
      let at = -1;
      let length = 0;
      for (const needle of this.needles) {
        const index = buffer.indexOf(needle, position);
        if (index !== -1 && (at === -1 || index < at)) {
          at = index;
          length = needle.length;
        }
      }
      if (at === -1 || (!final && this.couldGrow(buffer, at, length))) break;
      output.push(buffer.subarray(position, at), REPLACEMENT);
      position = at + length;
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
    output.push(buffer.subarray(position, safeEnd));
    return { output, consumed: safeEnd };
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const buffer = this.carry.length > 0 ? Buffer.concat([this.carry, chunk]) : chunk;
    const { output, consumed } = this.replaceAll(buffer, false);
    this.carry = Buffer.from(buffer.subarray(consumed));
    this.pushAll(output);
    callback();
  }

  override _flush(callback: TransformCallback): void {
    this.pushAll(this.replaceAll(this.carry, true).output);
    callback();
  }

  /** Pieces go out as they are: concatenating them first would copy every body once more. */
  private pushAll(pieces: Buffer[]): void {
    for (const piece of pieces) if (piece.length > 0) this.push(piece);
  }
}
