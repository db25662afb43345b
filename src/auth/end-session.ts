/**
 * Ending a session, whoever asks (the user, the IdP's back-channel, an operator): remove it from
 * the store first — that alone logs the user out on every instance — then revoke its refresh
 * token (RFC 7009) and access token at the IdP when it offers revocation. Revocation failures
 * are logged and never undo or block the local logout.
 *
 * RFC 7009 section 2.2.1: `unsupported_token_type` means the IdP does not revoke that kind of
 * token (oidc-provider, for one, refuses structured JWT access tokens, which simply expire). That
 * is the expected answer, not a failure worth a warning on every logout.
 */
import type { GatewayContext } from '../context.ts';
import { classifyIdpFailure } from '../oidc/client.ts';
import type { LoadedSession } from '../session/sessions.ts';

export type LogoutKind = 'rp' | 'backchannel' | 'admin' | 'timeout';

export async function endSession(ctx: GatewayContext, session: LoadedSession, kind: LogoutKind, options: { revoke?: boolean } = {}): Promise<void> {
  await ctx.sessions.destroy(session.handle, session.record);
  ctx.metrics.logouts.inc({ kind });
  if (options.revoke === false || !ctx.idp.canRevoke) return;
  const { refreshToken, accessToken } = session.record.tokens;
  const revocations: Promise<void>[] = [];
  if (refreshToken) revocations.push(ctx.idp.revoke(refreshToken, 'refresh_token'));
  if (accessToken) revocations.push(ctx.idp.revoke(accessToken, 'access_token'));
  const results = await Promise.allSettled(revocations);
  const failed = results.filter((result) => result.status === 'rejected' && !unsupportedTokenType(result.reason)).length;
  if (failed > 0) ctx.log.warn({ event: 'revocation_failed', kind, failed }, 'token revocation at the identity provider failed; local logout completed');
}

function unsupportedTokenType(err: unknown): boolean {
  const failure = classifyIdpFailure(err);
  return failure.kind === 'rejected' && failure.error === 'unsupported_token_type';
}
