/**
 * RFC 9449 DPoP: the gateway holds one key pair and proves possession of it on every token
 * call and every upstream request. Every instance must load the same key, or a token bound on
 * one instance would be useless on another.
 *
 * - Token endpoint calls go through openid-client's DPoP handle (one per Configuration, because
 *   it caches the IdP's DPoP nonce).
 * - Upstream requests get a fresh proof each (`proof`): `htm`, `htu`, `iat`, a random `jti` and
 *   `ath`, the hash of the access token it accompanies. Resource servers may demand a nonce
 *   (`use_dpop_nonce`): the latest one each origin sent is remembered and put in later proofs.
 */
import { createHash, createPublicKey, randomUUID } from 'node:crypto';
import { calculateJwkThumbprint, importJWK, SignJWT, type JWK } from 'jose';
import { importPrivateKey, parsePrivateKey } from './keys.ts';
import * as client from 'openid-client';

/** `htu`: the URL without query and fragment (RFC 9449 section 4.2). */
function htu(url: string | URL): string {
  const parsed = new URL(url);
  if (parsed.protocol === 'ws:') parsed.protocol = 'http:';
  if (parsed.protocol === 'wss:') parsed.protocol = 'https:';
  return `${parsed.origin}${parsed.pathname}`;
}

export class DpopKey {
  private readonly handles = new WeakMap<client.Configuration, client.DPoPHandle>();
  /** The latest `DPoP-Nonce` each upstream origin sent; bounded because origins come from config. */
  private readonly nonces = new Map<string, string>();

  private constructor(
    private readonly keyPair: CryptoKeyPair,
    readonly alg: string,
    readonly publicJwk: JWK,
    /** RFC 7638 thumbprint of the public key: `dpop_jkt`, and `cnf.jkt` of bound tokens. */
    readonly thumbprint: string,
  ) {}

  static async load(text: string): Promise<DpopKey> {
    const key = parsePrivateKey(text, 'PS256');
    const { privateKey, alg } = key;
    const { kty, crv, x, y, n, e } = createPublicKey(privateKey).export({ format: 'jwk' }) as JWK;
    const publicJwk = Object.fromEntries(Object.entries({ kty, crv, x, y, n, e }).filter(([, value]) => value !== undefined)) as JWK;
    const keyPair = {
      privateKey: await importPrivateKey(key),
      publicKey: (await importJWK({ ...publicJwk, alg }, alg, { extractable: true })) as CryptoKey,
    };
    return new DpopKey(keyPair, alg, publicJwk, await calculateJwkThumbprint(publicJwk));
  }

  /** openid-client's DPoP handle for token endpoint calls, one per Configuration (it caches nonces). */
  handle(configuration: client.Configuration): client.DPoPHandle {
    let handle = this.handles.get(configuration);
    if (!handle) {
      handle = client.getDPoPHandle(configuration, this.keyPair);
      this.handles.set(configuration, handle);
    }
    return handle;
  }

  /** A fresh proof for one upstream request (a WebSocket URL is proven as its http(s) form). */
  proof(method: string, url: string | URL, accessToken: string, nonce = this.nonceFor(url)): Promise<string> {
    const claims: Record<string, string> = {
      htm: method.toUpperCase(),
      htu: htu(url),
      jti: randomUUID(),
      ath: createHash('sha256').update(accessToken).digest('base64url'),
    };
    if (nonce !== undefined) claims.nonce = nonce;
    return new SignJWT(claims)
      .setProtectedHeader({ typ: 'dpop+jwt', alg: this.alg, jwk: this.publicJwk })
      .setIssuedAt()
      .sign(this.keyPair.privateKey);
  }

  nonceFor(url: string | URL): string | undefined {
    return this.nonces.get(new URL(htu(url)).origin);
  }

  /** Remembers the `DPoP-Nonce` an upstream sent; false when the response carried none. */
  rememberNonce(url: string | URL, nonce: string | string[] | undefined): boolean {
    const value = Array.isArray(nonce) ? nonce[0] : nonce;
    if (!value) return false;
    this.nonces.set(new URL(htu(url)).origin, value);
    return true;
  }
}
