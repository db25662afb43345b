/**
 * The identity assertions' public keys as a JWKS document: always on the admin listener
 * (`/jwks`, `/.well-known/jwks.json`), and on the public listener at
 * `identity.assertion.jwksPath` when set, for upstreams that cannot reach the admin listener.
 * Verifiers cache it themselves (jose's remote JWKS refetches on an unknown `kid`), which is
 * why a rotation lists the new key second first, then makes it the first.
 */
import type { FastifyInstance } from 'fastify';
import type { AssertionSigner } from './assertion.ts';

export const ADMIN_JWKS_PATHS = ['/jwks', '/.well-known/jwks.json'] as const;

export function registerJwks(app: FastifyInstance, paths: readonly string[], signer: Pick<AssertionSigner, 'jwks'>): void {
  const body = JSON.stringify(signer.jwks());
  for (const path of paths) {
    app.get(path, async (_request, reply) => {
      reply.header('content-type', 'application/jwk-set+json');
      return reply.send(body);
    });
  }
}
