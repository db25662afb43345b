/**
 * AES-256-GCM sealing with a key ring. Everything the gateway stores (sessions, login
 * transactions) passes through here, so a dump of Redis or a stolen login cookie reveals
 * nothing and cannot be altered.
 *
 * Envelope: `v1.<kid>.<iv>.<ciphertext+tag>` (base64url). `kid` names the key that sealed it,
 * so rotation works: the first key seals, every key opens, and `opened.stale` tells the caller
 * to re-seal under the current key on its next write. The optional `context` is bound as
 * additional authenticated data, so a blob sealed for one purpose (or one session key) cannot
 * be replayed as another.
 *
 * Binary envelope (`sealBytes`/`openBytes`, for values that are stored as bytes, not carried in
 * cookies): `0x02 | kid (6 bytes) | iv (12) | ciphertext | tag (16)`, 35 bytes of overhead. The
 * kid is the same key id as in the text envelope (its 8 base64url characters are these 6
 * bytes); the header (version byte and kid) is authenticated along with `context`.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

const VERSION = 'v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** First byte of a binary envelope (a text envelope starts with `v`). */
export const BINARY_VERSION = 0x02;
const KID_BYTES = 6;
const HEADER_BYTES = 1 + KID_BYTES;

interface Key {
  id: string;
  /** `id` as bytes, for the binary envelope. */
  rawId: Buffer;
  secret: Buffer;
}

export interface Opened<T> {
  value: T;
  /** Sealed under a key other than the current one: re-seal on the next write. */
  stale: boolean;
}

export class Sealer {
  private readonly keys: Key[];
  private readonly byId: Map<string, Key>;

  constructor(secrets: readonly Buffer[]) {
    if (secrets.length === 0) throw new Error('at least one encryption key is required');
    this.keys = secrets.map((secret) => {
      if (secret.length !== 32) throw new Error('encryption keys must be 32 bytes');
      const rawId = createHash('sha256').update(secret).digest().subarray(0, KID_BYTES);
      return { id: rawId.toString('base64url'), rawId, secret };
    });
    this.byId = new Map(this.keys.map((key) => [key.id, key]));
  }

  seal(value: unknown, context = ''): string {
    const key = this.keys[0] as Key;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key.secret, iv);
    cipher.setAAD(Buffer.from(context));
    const body = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final(), cipher.getAuthTag()]);
    return `${VERSION}.${key.id}.${iv.toString('base64url')}.${body.toString('base64url')}`;
  }

  /** Returns undefined for anything that is not an intact envelope under one of our keys. */
  open<T>(envelope: string, context = ''): Opened<T> | undefined {
    const parts = envelope.split('.');
    if (parts.length !== 4 || parts[0] !== VERSION) return undefined;
    const key = this.byId.get(parts[1] as string);
    if (!key) return undefined;
    const iv = Buffer.from(parts[2] as string, 'base64url');
    const body = Buffer.from(parts[3] as string, 'base64url');
    if (iv.length !== IV_BYTES || body.length < TAG_BYTES) return undefined;
    try {
      const decipher = createDecipheriv('aes-256-gcm', key.secret, iv);
      decipher.setAAD(Buffer.from(context));
      decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
      const plain = Buffer.concat([decipher.update(body.subarray(0, body.length - TAG_BYTES)), decipher.final()]);
      return { value: JSON.parse(plain.toString('utf8')) as T, stale: key !== this.keys[0] };
    } catch {
      return undefined;
    }
  }

  /** Seals bytes into a binary envelope under the current key. */
  sealBytes(plain: Uint8Array, context = ''): Buffer {
    const key = this.keys[0] as Key;
    const iv = randomBytes(IV_BYTES);
    const header = Buffer.concat([Buffer.from([BINARY_VERSION]), key.rawId]);
    const cipher = createCipheriv('aes-256-gcm', key.secret, iv);
    cipher.setAAD(Buffer.concat([header, Buffer.from(context)]));
    return Buffer.concat([header, iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
  }

  /** The bytes in a binary envelope; undefined for anything that is not one intact under one of our keys. */
  openBytes(envelope: Uint8Array, context = ''): Opened<Buffer> | undefined {
    if (envelope.length < HEADER_BYTES + IV_BYTES + TAG_BYTES || envelope[0] !== BINARY_VERSION) return undefined;
    const bytes = Buffer.from(envelope.buffer, envelope.byteOffset, envelope.byteLength);
    const key = this.byId.get(bytes.toString('base64url', 1, HEADER_BYTES));
    if (!key) return undefined;
    const iv = bytes.subarray(HEADER_BYTES, HEADER_BYTES + IV_BYTES);
    const body = bytes.subarray(HEADER_BYTES + IV_BYTES, bytes.length - TAG_BYTES);
    try {
      const decipher = createDecipheriv('aes-256-gcm', key.secret, iv);
      decipher.setAAD(Buffer.concat([bytes.subarray(0, HEADER_BYTES), Buffer.from(context)]));
      decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
      return { value: Buffer.concat([decipher.update(body), decipher.final()]), stale: key !== this.keys[0] };
    } catch {
      return undefined;
    }
  }
}
