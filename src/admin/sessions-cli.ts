/**
 * Operator tools: `sessions list` and `sessions revoke`. Ending a session here does what a
 * user's logout does — the session disappears from the shared store (so from every instance)
 * and its tokens are revoked at the IdP when it offers revocation — and prints what it did.
 * Sessions are shown by their store handle (a hash of the browser's id), never the id itself.
 */
import type { GatewayConfig } from '../config/load.ts';
import { createLogger } from '../log.ts';
import { buildGateway } from '../server.ts';
import { endSession } from '../auth/end-session.ts';
import type { LoadedSession } from '../session/sessions.ts';

interface Selection {
  sub?: string;
  sid?: string;
  handle?: string;
  all?: boolean;
}

interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
}

async function select(sessions: { findBy(kind: 'sid' | 'sub', value: string): Promise<LoadedSession[]>; all(): AsyncIterable<LoadedSession> }, selection: Selection): Promise<LoadedSession[]> {
  if (selection.sub) return sessions.findBy('sub', selection.sub);
  if (selection.sid) return sessions.findBy('sid', selection.sid);
  const found: LoadedSession[] = [];
  for await (const session of sessions.all()) {
    if (!selection.handle || session.handle === selection.handle) found.push(session);
  }
  return found;
}

function describe(session: LoadedSession): string {
  const { record } = session;
  return `${session.handle}  sub=${record.sub}  created=${new Date(record.createdAt).toISOString()}  expires=${new Date(record.absoluteExpiresAt).toISOString()}`;
}

export async function runSessionsCommand(config: GatewayConfig, args: string[], selection: Selection, io: Io): Promise<number> {
  const action = args[0];
  if (action !== 'list' && action !== 'revoke') {
    io.err('usage: bff-gateway sessions list|revoke [--sub SUB | --sid IDP_SID | --handle H | --all] --config FILE');
    return 1;
  }
  if (action === 'revoke' && !selection.sub && !selection.sid && !selection.handle && !selection.all) {
    io.err('sessions revoke needs one of --sub, --sid, --handle or --all');
    return 1;
  }
  if (config.session.store === 'memory') {
    io.err('session.store is memory: sessions live inside the running gateway process and cannot be reached from here');
    return 1;
  }
  const gateway = await buildGateway(config, { log: createLogger({ level: 'warn' }) });
  try {
    const { ctx } = gateway;
    const sessions = await select(ctx.sessions, selection);
    if (action === 'list') {
      for (const session of sessions) io.out(describe(session));
      io.out(`${sessions.length} session(s)`);
      return 0;
    }
    const idpReady = await Promise.race([ctx.idp.start().then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), config.oidc.timeoutMs).unref())]);
    for (const session of sessions) {
      await endSession(ctx, session, 'admin', { revoke: idpReady });
      io.out(`revoked ${describe(session)}${idpReady && ctx.idp.canRevoke ? '' : '  (tokens not revoked at the IdP: unreachable or no revocation endpoint)'}`);
    }
    io.out(`${sessions.length} session(s) revoked`);
    return 0;
  } finally {
    await gateway.close();
  }
}
