/**
 * The gateway's own private keys, as operators write them: a PEM (PKCS#8) or a private JWK.
 * One parser for both uses — `private_key_jwt` client authentication and DPoP proofs, which
 * often share `oidc.privateKey` — so both accept the same inputs, refuse the same ones with the
 * same words, and `check` can validate the key before the gateway ever starts. Plain node:crypto,
 * below both the configuration (which validates keys) and the OIDC layer (which signs with them).
 *
 * The signing algorithm follows the key type: EC P-256 → ES256, Ed25519 → EdDSA, RSA → the
 * JWK's `alg` when it names an RSA algorithm, else the caller's default (RS256 is what every IdP
 * accepts for client assertions; PS256 is preferred for DPoP).
 */
import { createPrivateKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import type { JWK } from 'jose';

export interface PrivateKeyInfo {
  privateKey: KeyObject;
  alg: string;
  kid?: string;
}

const RSA_ALGORITHMS = new Set(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']);

/** Throws an Error whose message reads as the end of "oidc.privateKey …". */
export function parsePrivateKey(text: string, defaultRsaAlg: 'RS256' | 'PS256'): PrivateKeyInfo {
  const trimmed = text.trim();
  let privateKey: KeyObject;
  let jwk: JWK | undefined;
  try {
    if (trimmed.startsWith('{')) {
      jwk = JSON.parse(trimmed) as JWK;
      privateKey = createPrivateKey({ key: jwk as JsonWebKey, format: 'jwk' });
    } else {
      privateKey = createPrivateKey(trimmed);
    }
  } catch {
    throw new Error('is not a PEM (PKCS#8) or JWK private key');
  }
  const kid = jwk?.kid;
  const type = privateKey.asymmetricKeyType;
  if (type === 'ec') {
    if (privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') throw new Error('EC keys must use the P-256 curve');
    return { privateKey, alg: 'ES256', kid };
  }
  if (type === 'rsa') return { privateKey, alg: jwk?.alg && RSA_ALGORITHMS.has(jwk.alg) ? jwk.alg : defaultRsaAlg, kid };
  if (type === 'ed25519') return { privateKey, alg: 'EdDSA', kid };
  throw new Error(`a ${type ?? 'unknown'} key cannot sign (use EC P-256, RSA or Ed25519)`);
}
