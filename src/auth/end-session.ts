/**
 * Ending a session, whoever asks (the user, the IdP's back-channel, an operator): remove it from
 * the store first — that alone logs the user out on every instance — then revoke its refresh
 * token (RFC 7009) and access token at the IdP when it offers revocation. Revocation failures
 * are logged and never undo or block the local logout (oidc/revoke-tokens.ts).
 */
import type { Logger } from '../log.ts';
import { revokeTokens, type Revoker } from '../oidc/revoke-tokens.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { LoadedSession, Sessions } from '../session/sessions.ts';

export type LogoutKind = 'rp' | 'backchannel' | 'admin' | 'timeout';

export class SessionEnding {
  constructor(private readonly deps: { sessions: Sessions; idp: Revoker; metrics: Metrics; log: Logger }) {}

  async end(session: LoadedSession, kind: LogoutKind, options: { revoke?: boolean } = {}): Promise<void> {
    const { sessions, idp, metrics, log } = this.deps;
    await sessions.destroy(session.handle, session.record);
    metrics.logouts.inc({ kind });
    if (options.revoke === false) return;
    const { refreshToken, accessToken } = session.record.tokens;
    await revokeTokens(idp, log, { refreshToken, accessTokens: accessToken ? [accessToken] : [] }, { kind });
  }
}
