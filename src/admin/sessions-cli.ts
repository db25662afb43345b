/**
 * Operator tools: `sessions list` and `sessions revoke`. Ending a session here does what a
 * user's logout does — the session disappears from the shared store (so from every instance)
 * and its tokens are revoked at the IdP when it offers revocation — and prints what it did.
 * They run on the services alone (services.ts): no web server is built, nothing listens.
 */
import type { GatewayConfig } from '../config/load.ts';
import { createLogger } from '../log.ts';
import { Metrics } from '../ops/metrics.ts';
import { buildServices } from '../services.ts';
import type { LoadedSession } from '../session/sessions.ts';
import { isSelective, selectSessions, summarize, type Selection } from './select.ts';

interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
}

function describe(session: LoadedSession): string {
  const { handle, sub, createdAt, expiresAt } = summarize(session);
  return `${handle}  sub=${sub}  created=${createdAt}  expires=${expiresAt}`;
}

export async function runSessionsCommand(config: GatewayConfig, args: string[], selection: Selection, io: Io): Promise<number> {
  const action = args[0];
  if (action !== 'list' && action !== 'revoke') {
    io.err('usage: bff-gateway sessions list|revoke [--sub SUB | --sid IDP_SID | --handle H | --all] --config FILE');
    return 1;
  }
  if (action === 'revoke' && !isSelective(selection)) {
    io.err('sessions revoke needs one of --sub, --sid, --handle or --all');
    return 1;
  }
  if (config.session.store === 'memory') {
    io.err('session.store is memory: sessions live inside the running gateway process and cannot be reached from here');
    return 1;
  }
  const services = await buildServices(config, { log: createLogger({ level: 'warn' }), metrics: new Metrics() });
  try {
    const { idp, ending } = services;
    const sessions = await selectSessions(services.sessions, selection);
    if (action === 'list') {
      for (const session of sessions) io.out(describe(session));
      io.out(`${sessions.length} session(s)`);
      return 0;
    }
    const idpStarted = idp.start().then(() => true);
    const idpReady = await Promise.race([
      idpStarted,
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), config.oidc.timeoutMs).unref()),
    ]);
    const notRevoked = '  (tokens not revoked at the IdP: unreachable or no revocation endpoint)';
    for (const session of sessions) {
      await ending.end(session, 'admin', { revoke: idpReady });
      io.out(`revoked ${describe(session)}${idpReady && idp.canRevoke ? '' : notRevoked}`);
    }
    io.out(`${sessions.length} session(s) revoked`);
    return 0;
  } finally {
    await services.close();
  }
}
