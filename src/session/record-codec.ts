/**
 * How a session record is stored: sealed, and as few bytes as it takes.
 *
 * Two formats are read, one is written:
 * - text (before): `v1.<kid>.<iv>.<ciphertext>` — the record as JSON, sealed, base64url. Still
 *   opened, so an upgrade logs nobody out; a record in it is rewritten in the compact format by
 *   its next write (the idle slide, a refresh, a key rotation).
 * - compact (written now): the binary envelope of seal.ts (`0x02`, kid, iv, ciphertext, tag)
 *   around the record's own binary layout below. Stores hold it as a binary string (one char
 *   per byte, latin1), which Redis keeps as the raw bytes.
 * The first byte tells them apart (`v` or 0x02); both are AES-256-GCM under the key ring, with
 * the session handle as associated data.
 *
 * The compact layout (inside the ciphertext) starts with a layout byte: 0 = the record as JSON
 * (the fallback, for a record the binary layout cannot reproduce exactly), 1 = binary:
 *   flags                                  varint (which optional parts follow)
 *   access token, token type, expiresAt    token, string, varint (+1; 0 = null)
 *   refresh token, ID token, scope         token, token, string (each when flagged)
 *   sub, IdP sid                           strings, unless they are the ID token's `sub`/`sid`
 *   createdAt, absolute and idle expiry    varint, then two varint offsets from createdAt
 *   logoutSid, device                      token, string (when flagged)
 *   claims                                 count, then per claim: n > 0 "the ID token's n-th
 *                                          claim", 0 "the next one of the JSON tail's claims"
 *   route tokens                           count, then path, token, type, expiresAt each
 *   JSON tail                              the claims not taken from the ID token, in order
 * A token is stored as raw bytes when it is base64url segments joined by dots (a JWT, a JWE,
 * an opaque base64url string): 3/4 of its text, and written back exactly (a segment is only
 * taken as bytes when re-encoding it gives the same text). Claims the ID token already holds
 * are referenced, not copied. The encoder decodes what it wrote and compares it with the record
 * (key order aside); anything that would not come back the same is written as JSON instead.
 */
import { BINARY_VERSION, type Opened, type Sealer } from './seal.ts';
import type { RouteToken, SessionRecord } from './sessions.ts';

const LAYOUT_JSON = 0;
const LAYOUT_BINARY = 1;
const MAX_TOKEN_SEGMENTS = 8;

const F_REFRESH = 1;
const F_ID_TOKEN = 2;
const F_SCOPE = 4;
const F_SUB = 8;
const F_SID = 16;
const F_SID_FROM_ID_TOKEN = 32;
const F_DEVICE = 64;
const F_ROUTE_TOKENS = 128;
const F_TAIL = 256;

class Writer {
  private readonly chunks: Buffer[] = [];
  private readonly small: number[] = [];

  private flush(): void {
    if (this.small.length === 0) return;
    this.chunks.push(Buffer.from(this.small));
    this.small.length = 0;
  }

  /** Unsigned LEB128 of a safe integer (up to 2^53). */
  varint(value: number): void {
    let rest = value;
    while (rest >= 0x80) {
      this.small.push((rest % 0x80) | 0x80);
      rest = Math.floor(rest / 0x80);
    }
    this.small.push(rest);
  }

  bytes(value: Buffer): void {
    this.varint(value.length);
    this.flush();
    this.chunks.push(value);
  }

  string(value: string): void {
    this.bytes(Buffer.from(value, 'utf8'));
  }

  token(value: string): void {
    const segments = value.split('.');
    const raw = segments.length <= MAX_TOKEN_SEGMENTS ? segments.map(base64urlBytes) : [undefined];
    if (raw.every((part) => part !== undefined)) {
      this.varint(raw.length);
      for (const part of raw as Buffer[]) this.bytes(part);
    } else {
      this.varint(0);
      this.string(value);
    }
  }

  done(): Buffer {
    this.flush();
    return Buffer.concat(this.chunks);
  }
}

/** The bytes of a canonical base64url segment, or undefined when re-encoding would not give it back. */
function base64urlBytes(segment: string): Buffer | undefined {
  const bytes = Buffer.from(segment, 'base64url');
  return bytes.toString('base64url') === segment ? bytes : undefined;
}

class Reader {
  private at = 0;
  constructor(private readonly buffer: Buffer) {}

  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      const byte = this.buffer[this.at++];
      if (byte === undefined) throw new Error('truncated');
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 0x80;
    }
    throw new Error('varint too long');
  }

  bytes(): Buffer {
    const length = this.varint();
    if (this.at + length > this.buffer.length) throw new Error('truncated');
    const value = this.buffer.subarray(this.at, this.at + length);
    this.at += length;
    return value;
  }

  string(): string {
    return this.bytes().toString('utf8');
  }

  token(): string {
    const segments = this.varint();
    if (segments === 0) return this.string();
    if (segments > MAX_TOKEN_SEGMENTS) throw new Error('bad token');
    const parts: string[] = [];
    for (let i = 0; i < segments; i++) parts.push(this.bytes().toString('base64url'));
    return parts.join('.');
  }

  get done(): boolean {
    return this.at === this.buffer.length;
  }
}

/** The ID token's claims, for claims the record shares with it; {} when it has none readable. */
function idTokenClaims(idToken: string | undefined): Record<string, unknown> {
  const payload = idToken?.split('.')[1];
  if (payload === undefined) return {};
  try {
    const claims: unknown = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    return claims !== null && typeof claims === 'object' && !Array.isArray(claims) ? (claims as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

const isTimestamp = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;
const isExpiry = (value: unknown): value is number | null => value === null || isTimestamp(value);

function writeExpiry(out: Writer, value: number | null): void {
  out.varint(value === null ? 0 : value + 1);
}

function readExpiry(input: Reader): number | null {
  const value = input.varint();
  return value === 0 ? null : value - 1;
}

/** The binary layout, or undefined when the record has something it cannot hold. */
function encodeBinary(record: SessionRecord): Buffer | undefined {
  const { tokens } = record;
  if (!isExpiry(tokens.expiresAt) || !isTimestamp(record.createdAt)) return undefined;
  const absoluteOffset = record.absoluteExpiresAt - record.createdAt;
  const lastSeenOffset = record.lastSeenAt - record.createdAt;
  if (!isTimestamp(absoluteOffset) || !isTimestamp(lastSeenOffset)) return undefined;
  const idClaims = idTokenClaims(tokens.idToken);
  const idClaimNames = Object.keys(idClaims);
  const routes = record.routeTokens ? Object.entries(record.routeTokens) : [];
  if (!routes.every(([, token]) => isExpiry(token?.expiresAt))) return undefined;
  // Claims equal to the ID token's (as JSON) are referenced by position; the rest go in the tail.
  const claimRefs: number[] = [];
  const ownClaims: Array<[string, unknown]> = [];
  for (const [name, value] of Object.entries(record.claims)) {
    const at = Object.hasOwn(idClaims, name) ? idClaimNames.indexOf(name) : -1;
    if (at >= 0 && JSON.stringify(idClaims[name]) === JSON.stringify(value)) claimRefs.push(at + 1);
    else {
      claimRefs.push(0);
      ownClaims.push([name, value]);
    }
  }

  let flags = 0;
  if (tokens.refreshToken !== undefined) flags |= F_REFRESH;
  if (tokens.idToken !== undefined) flags |= F_ID_TOKEN;
  if (tokens.scope !== undefined) flags |= F_SCOPE;
  if (idClaims.sub !== record.sub) flags |= F_SUB;
  if (record.idpSid !== undefined) flags |= idClaims.sid === record.idpSid ? F_SID_FROM_ID_TOKEN : F_SID;
  if (record.device !== undefined) flags |= F_DEVICE;
  if (record.routeTokens !== undefined) flags |= F_ROUTE_TOKENS;
  if (ownClaims.length > 0) flags |= F_TAIL;

  const out = new Writer();
  out.varint(LAYOUT_BINARY);
  out.varint(flags);
  out.token(tokens.accessToken);
  out.string(tokens.tokenType);
  writeExpiry(out, tokens.expiresAt);
  if (tokens.refreshToken !== undefined) out.token(tokens.refreshToken);
  if (tokens.idToken !== undefined) out.token(tokens.idToken);
  if (tokens.scope !== undefined) out.string(tokens.scope);
  if (flags & F_SUB) out.string(record.sub);
  if (flags & F_SID) out.string(record.idpSid as string);
  out.varint(record.createdAt);
  out.varint(absoluteOffset);
  out.varint(lastSeenOffset);
  out.token(record.logoutSid);
  if (record.device !== undefined) out.string(record.device);
  out.varint(claimRefs.length);
  for (const ref of claimRefs) out.varint(ref);
  if (record.routeTokens !== undefined) {
    out.varint(routes.length);
    for (const [path, token] of routes) {
      out.string(path);
      out.token(token.accessToken);
      out.string(token.tokenType);
      writeExpiry(out, token.expiresAt);
    }
  }
  if (ownClaims.length > 0) out.string(JSON.stringify(ownClaims));
  return out.done();
}

function decodeBinary(input: Reader): SessionRecord {
  const flags = input.varint();
  const accessToken = input.token();
  const tokenType = input.string();
  const expiresAt = readExpiry(input);
  const refreshToken = flags & F_REFRESH ? input.token() : undefined;
  const idToken = flags & F_ID_TOKEN ? input.token() : undefined;
  const scope = flags & F_SCOPE ? input.string() : undefined;
  const idClaims = idTokenClaims(idToken);
  const sub = flags & F_SUB ? input.string() : idClaims.sub;
  const idpSid = flags & F_SID ? input.string() : flags & F_SID_FROM_ID_TOKEN ? idClaims.sid : undefined;
  if (typeof sub !== 'string' || (idpSid !== undefined && typeof idpSid !== 'string')) throw new Error('bad record');
  const createdAt = input.varint();
  const absoluteExpiresAt = createdAt + input.varint();
  const lastSeenAt = createdAt + input.varint();
  const logoutSid = input.token();
  const device = flags & F_DEVICE ? input.string() : undefined;
  const claimRefs: number[] = [];
  for (let count = input.varint(); count > 0; count--) claimRefs.push(input.varint());
  let routeTokens: Record<string, RouteToken> | undefined;
  if (flags & F_ROUTE_TOKENS) {
    const routes: Array<[string, RouteToken]> = [];
    for (let count = input.varint(); count > 0; count--) {
      const path = input.string();
      routes.push([path, { accessToken: input.token(), tokenType: input.string(), expiresAt: readExpiry(input) }]);
    }
    routeTokens = Object.fromEntries(routes);
  }
  const ownClaims = flags & F_TAIL ? (JSON.parse(input.string()) as Array<[string, unknown]>) : [];
  if (!input.done) throw new Error('trailing bytes');
  const idClaimNames = Object.keys(idClaims);
  let own = 0;
  const claims = Object.fromEntries(
    claimRefs.map((ref): [string, unknown] => {
      if (ref === 0) {
        const claim = ownClaims[own++];
        if (!claim) throw new Error('bad claims');
        return claim;
      }
      const name = idClaimNames[ref - 1];
      if (name === undefined) throw new Error('bad claims');
      return [name, idClaims[name]];
    }),
  );

  const record: SessionRecord = {
    v: 1,
    sub,
    claims,
    tokens: { accessToken, tokenType, expiresAt },
    createdAt,
    absoluteExpiresAt,
    lastSeenAt,
    logoutSid,
  };
  if (idpSid !== undefined) record.idpSid = idpSid;
  if (refreshToken !== undefined) record.tokens.refreshToken = refreshToken;
  if (idToken !== undefined) record.tokens.idToken = idToken;
  if (scope !== undefined) record.tokens.scope = scope;
  if (device !== undefined) record.device = device;
  if (routeTokens !== undefined) record.routeTokens = routeTokens;
  return record;
}

/**
 * Whether two values are the same data, object key order and undefined properties aside (as
 * JSON sees them). Anything but JSON's own kinds of values counts as different.
 */
function sameData(a: unknown, b: unknown): boolean {
  if (a === b) return a === null || typeof a === 'string' || typeof a === 'boolean' || (typeof a === 'number' && Number.isFinite(a));
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((item, i) => sameData(item, b[i]));
  }
  if (Object.getPrototypeOf(a) !== Object.prototype || Object.getPrototypeOf(b) !== Object.prototype) return false;
  const entries = (value: object) => Object.entries(value).filter(([, item]) => item !== undefined);
  const left = entries(a);
  const right = new Map(entries(b));
  return left.length === right.size && left.every(([key, item]) => right.has(key) && sameData(item, right.get(key)));
}

/** The record's plaintext in the compact format: binary when it comes back exactly, else JSON. */
export function encodeRecord(record: SessionRecord): Buffer {
  try {
    const binary = encodeBinary(record);
    if (binary !== undefined && sameData(decodePlain(binary), record)) return binary;
  } catch {
    // Something of an unexpected shape: JSON holds it as it is.
  }
  return Buffer.concat([Buffer.from([LAYOUT_JSON]), Buffer.from(JSON.stringify(record), 'utf8')]);
}

/** The record in a compact plaintext; throws on anything malformed. */
export function decodePlain(plain: Buffer): SessionRecord {
  const input = new Reader(plain);
  const layout = input.varint();
  if (layout === LAYOUT_JSON) return JSON.parse(plain.subarray(1).toString('utf8')) as SessionRecord;
  if (layout === LAYOUT_BINARY) return decodeBinary(input);
  throw new Error('unknown layout');
}

/** Seals a record for `handle` in the compact format, as a binary string (one char per byte). */
export function sealRecord(sealer: Sealer, record: SessionRecord, handle: string): string {
  return sealer.sealBytes(encodeRecord(record), handle).toString('latin1');
}

/**
 * Opens a stored record in either format; undefined for anything that is not one sealed for
 * `handle` under a key of the ring. `stale`: sealed under a key other than the current one.
 */
export function openRecord(sealer: Sealer, sealed: string, handle: string): Opened<SessionRecord> | undefined {
  if (sealed.startsWith('v1.')) return sealer.open<SessionRecord>(sealed, handle);
  if (sealed.charCodeAt(0) !== BINARY_VERSION) return undefined;
  const opened = sealer.openBytes(Buffer.from(sealed, 'latin1'), handle);
  if (!opened) return undefined;
  try {
    return { value: decodePlain(opened.value), stale: opened.stale };
  } catch {
    return undefined;
  }
}
