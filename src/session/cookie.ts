/**
 * The session cookie (docs/http-interface.md#cookies): an opaque, HMAC-signed id and nothing else.
 * `HttpOnly; Path=/; SameSite=<sameSite>`, never `Domain`, `Secure` when the public origin is
 * https or localhost. Signing uses @fastify/cookie's Signer, which verifies against every
 * secret of the ring and says when a value was signed by an older one (`renew`).
 *
 * The parser is deliberately small and total: any byte sequence in a Cookie header yields a
 * (possibly empty) list, never an exception, because hostile Cookie headers are a known way to
 * crash auth proxies.
 */
import { Signer } from '@fastify/cookie';
import type { GatewayConfig } from '../config/load.ts';
import { LruMap } from '../util/lru-map.ts';

export interface CookiePair {
  name: string;
  value: string;
}

const MAX_COOKIE_VALUE = 4096;

export function parseCookieHeader(header: string | string[] | undefined): CookiePair[] {
  if (!header) return [];
  const text = Array.isArray(header) ? header.join('; ') : header;
  const pairs: CookiePair[] = [];
  for (const part of text.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    let value = part.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
    if (name && value.length <= MAX_COOKIE_VALUE) pairs.push({ name, value });
  }
  return pairs;
}

/** The Cookie header without the named cookies; undefined when nothing is left. */
export function withoutCookies(header: string | string[] | undefined, names: ReadonlySet<string>): string | undefined {
  if (!header) return undefined;
  const text = Array.isArray(header) ? header.join('; ') : header;
  const kept = text
    .split(';')
    .map((part) => part.trim())
    .filter((part) => part.length > 0 && !names.has(part.slice(0, Math.max(0, part.indexOf('='))).trim()));
  return kept.length > 0 ? kept.join('; ') : undefined;
}

/** A session cookie whose signature checked out: the session id, and whether to re-sign it. */
export interface VerifiedCookie {
  readonly id: string;
  /** Signed with a retired secret of the ring: send a re-signed cookie. */
  readonly renew: boolean;
}

/** A string of its own, not a view into a larger one (V8 keeps the parent of a slice alive). */
function detached(value: string): string {
  return Buffer.from(value, 'latin1').toString('latin1');
}

/** Verified cookie values remembered (about 150 bytes each, the strings copied). */
const VERIFIED_COOKIES_KEPT = 10_000;

export interface CookieOptions {
  maxAgeSeconds?: number;
  sameSite?: 'Strict' | 'Lax';
}

export class SessionCookie {
  readonly name: string;
  readonly loginName: string;
  private readonly signer: Signer;
  private readonly attributes: string;
  private readonly sameSite: 'Strict' | 'Lax';

  constructor(config: GatewayConfig['session']) {
    this.name = config.cookieName;
    this.loginName = config.loginCookieName;
    this.signer = new Signer([...config.secrets]);
    this.attributes = `Path=/; HttpOnly${config.secureCookie ? '; Secure' : ''}`;
    this.sameSite = config.sameSite === 'lax' ? 'Lax' : 'Strict';
  }

  /**
   * The verified session id from a Cookie header, and whether it should be re-signed. The same
   * object for the same signed value while it is remembered.
   */
  read(header: string | string[] | undefined): VerifiedCookie | undefined {
    for (const pair of parseCookieHeader(header)) {
      if (pair.name !== this.name) continue;
      const known = this.verified.get(pair.value);
      if (known) return known;
      const result = this.signer.unsign(pair.value);
      if (result.valid && result.value && /^[A-Za-z0-9_-]{43}$/.test(result.value)) {
        // Copies: a slice of the request's Cookie header would keep the whole header alive.
        const found: VerifiedCookie = Object.freeze({ id: detached(result.value), renew: result.renew });
        this.remember(detached(pair.value), found);
        return found;
      }
    }
    return undefined;
  }

  /**
   * Signed values verified before, exactly as they were sent: the secrets do not change while
   * the process runs, so the same string verifies the same way, and every API call of a
   * browser sends the same cookie (an HMAC and a constant-time compare saved per request).
   * Only values that verified are kept, so forged cookies cannot fill it; at its bound the
   * least recently used goes.
   */
  private readonly verified = new LruMap<string, VerifiedCookie>(VERIFIED_COOKIES_KEPT);

  private remember(value: string, cookie: VerifiedCookie): void {
    this.verified.set(value, cookie);
  }

  /** Raw value of a named cookie (the login cookie is sealed, so it needs no signature). */
  readRaw(header: string | string[] | undefined, name: string): string | undefined {
    return parseCookieHeader(header).find((pair) => pair.name === name)?.value;
  }

  serialize(name: string, value: string, options: CookieOptions = {}): string {
    const maxAge = options.maxAgeSeconds !== undefined ? `; Max-Age=${Math.max(0, Math.floor(options.maxAgeSeconds))}` : '';
    const expires = options.maxAgeSeconds === 0 ? '; Expires=Thu, 01 Jan 1970 00:00:00 GMT' : '';
    return `${name}=${value}${maxAge}${expires}; ${this.attributes}; SameSite=${options.sameSite ?? this.sameSite}`;
  }

  sessionSetCookie(id: string, maxAgeSeconds: number): string {
    return this.serialize(this.name, this.signer.sign(id), { maxAgeSeconds });
  }

  sessionClearCookie(): string {
    return this.serialize(this.name, '', { maxAgeSeconds: 0 });
  }

  /** The login cookie must survive the IdP's cross-site redirect back: always Lax. */
  loginSetCookie(value: string, maxAgeSeconds: number): string {
    return this.serialize(this.loginName, value, { maxAgeSeconds, sameSite: 'Lax' });
  }

  loginClearCookie(): string {
    return this.serialize(this.loginName, '', { maxAgeSeconds: 0, sameSite: 'Lax' });
  }
}
