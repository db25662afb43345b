/**
 * Best-effort RFC 7009 revocation of tokens the gateway is letting go of (a logout, a refresh
 * whose result arrived after the session ended). The refresh token goes first: it is the one
 * that can mint more, and at many IdPs revoking it also revokes the access tokens of its grant.
 * Never throws: a failure is logged and counted, and whatever ended the session stays ended.
 *
 * RFC 7009 section 2.2.1: `unsupported_token_type` means the IdP does not revoke that kind of
 * token (oidc-provider, for one, refuses structured JWT access tokens, which simply expire). That
 * is the expected answer, not a failure worth a warning.
 */
import type { Logger } from '../log.ts';
import type { TokenGrants } from './client.ts';
import { IdpError } from './idp-error.ts';

export interface TokensToRevoke {
  refreshToken?: string;
  accessTokens: string[];
}

/** What revoking needs of the IdP client. */
export type Revoker = Pick<TokenGrants, 'canRevoke' | 'revoke'>;

/** Resolves with the number of revocations that failed (0 when the IdP cannot revoke at all). */
export async function revokeTokens(idp: Revoker, log: Logger, tokens: TokensToRevoke, logFields: Record<string, unknown>): Promise<number> {
  if (!idp.canRevoke) return 0;
  // Deferred, so even a synchronous throw becomes a settled failure rather than an escape.
  const revoke = (token: string, hint: 'refresh_token' | 'access_token') => Promise.resolve().then(() => idp.revoke(token, hint));
  const results: PromiseSettledResult<void>[] = [];
  if (tokens.refreshToken) results.push(...(await Promise.allSettled([revoke(tokens.refreshToken, 'refresh_token')])));
  results.push(...(await Promise.allSettled(tokens.accessTokens.map((token) => revoke(token, 'access_token')))));
  const failed = results.filter((result) => result.status === 'rejected' && !unsupportedTokenType(result.reason)).length;
  if (failed > 0) log.warn({ event: 'revocation_failed', ...logFields, failed }, 'token revocation at the identity provider failed');
  return failed;
}

function unsupportedTokenType(err: unknown): boolean {
  return err instanceof IdpError && err.kind === 'rejected' && err.error === 'unsupported_token_type';
}
