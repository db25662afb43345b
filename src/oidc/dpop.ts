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
import { createHash, createPrivateKey, createPublicKey, randomUUID, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, importJWK, SignJWT, type JWK } from 'jose';
import * as client from 'openid-client';

export interface DpopKeyInfo {
  privateKey: KeyObject;
  alg: string;
}

/** Parses a PEM (PKCS#8) or private JWK and picks its signing algorithm; throws with a readable reason. */
export function parseDpopKey(text: string): DpopKeyInfo {
  const trimmed = text.trim();
  let privateKey: KeyObject;
  let jwkAlg: string | undefined;
  try {
    if (trimmed.startsWith('{')) {
      const jwk = JSON.parse(trimmed) as JWK;
      jwkAlg = jwk.alg;
      privateKey = createPrivateKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' });
    } else {
      privateKey = createPrivateKey(trimmed);
    }
  } catch {
    throw new Error('is not a PEM (PKCS#8) or JWK private key');
  }
  const type = privateKey.asymmetricKeyType;
  if (type === 'ec') {
    if (privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') throw new Error('EC keys must use the P-256 curve');
    return { privateKey, alg: 'ES256' };
  }
  if (type === 'rsa') return { privateKey, alg: jwkAlg === 'RS256' ? 'RS256' : 'PS256' };
  if (type === 'ed25519') return { privateKey, alg: 'EdDSA' };
  throw new Error(`a ${type ?? 'unknown'} key cannot sign DPoP proofs (use EC P-256, RSA or Ed25519)`);
}

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
    const { privateKey, alg } = parseDpopKey(text);
    const { kty, crv, x, y, n, e } = createPublicKey(privateKey).export({ format: 'jwk' }) as JWK;
    const publicJwk = Object.fromEntries(Object.entries({ kty, crv, x, y, n, e }).filter(([, value]) => value !== undefined)) as JWK;
    const privateJwk = privateKey.export({ format: 'jwk' }) as JWK;
    const keyPair = {
      privateKey: (await importJWK({ ...privateJwk, alg }, alg)) as CryptoKey,
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
    return new SignJWT(claims).setProtectedHeader({ typ: 'dpop+jwt', alg: this.alg, jwk: this.publicJwk }).setIssuedAt().sign(this.keyPair.privateKey);
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
