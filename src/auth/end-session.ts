/**
 * Ending a session, whoever asks (the user, the IdP's back-channel, an operator): remove it from
 * the store first — that alone logs the user out on every instance — then revoke its refresh
 * token (RFC 7009) and access token at the IdP when it offers revocation. Revocation failures
 * are logged and never undo or block the local logout (oidc/revoke-tokens.ts).
 */
import type { GatewayContext } from '../context.ts';
import { revokeTokens } from '../oidc/revoke-tokens.ts';
import type { LoadedSession } from '../session/sessions.ts';

export type LogoutKind = 'rp' | 'backchannel' | 'admin' | 'timeout';

export async function endSession(ctx: GatewayContext, session: LoadedSession, kind: LogoutKind, options: { revoke?: boolean } = {}): Promise<void> {
  await ctx.sessions.destroy(session.handle, session.record);
  ctx.metrics.logouts.inc({ kind });
  if (options.revoke === false) return;
  const { refreshToken, accessToken } = session.record.tokens;
  await revokeTokens(ctx.idp, ctx.log, { refreshToken, accessTokens: accessToken ? [accessToken] : [] }, { kind });
}
