/**
 * The gateway's own private keys for the OIDC layer: parsed by the one parser in
 * util/private-key.ts (the configuration validates keys with it too), imported here as
 * WebCrypto keys for jose/openid-client.
 */
import { importJWK, type JWK } from 'jose';
import type { PrivateKeyInfo } from '../util/private-key.ts';

export { parsePrivateKey, type PrivateKeyInfo } from '../util/private-key.ts';

/** The key as a WebCrypto key for jose/openid-client, with its algorithm. */
export async function importPrivateKey(info: PrivateKeyInfo): Promise<CryptoKey> {
  const jwk = info.privateKey.export({ format: 'jwk' }) as JWK;
  return (await importJWK({ ...jwk, alg: info.alg }, info.alg)) as CryptoKey;
}
