/**
 * Choosing sessions for operators (CLI and the admin HTTP API): by user (`sub`), by IdP
 * session (`sid`), by store handle, or all. Sessions are shown by their store handle (a hash of
 * the browser's id) with their subject and times — never the id itself, never a token.
 */
import type { LoadedSession, Sessions } from '../session/sessions.ts';

export interface Selection {
  sub?: string;
  sid?: string;
  handle?: string;
  all?: boolean;
}

export function isSelective(selection: Selection): boolean {
  return Boolean(selection.sub || selection.sid || selection.handle || selection.all);
}

export async function selectSessions(sessions: Pick<Sessions, 'findBy' | 'all'>, selection: Selection): Promise<LoadedSession[]> {
  if (selection.sub) return sessions.findBy('sub', selection.sub);
  if (selection.sid) return sessions.findBy('sid', selection.sid);
  const found: LoadedSession[] = [];
  for await (const session of sessions.all()) {
    if (!selection.handle || session.handle === selection.handle) found.push(session);
  }
  return found;
}

export interface SessionSummary {
  handle: string;
  sub: string;
  createdAt: string;
  expiresAt: string;
}

export function summarize(session: LoadedSession): SessionSummary {
  const { record } = session;
  return {
    handle: session.handle,
    sub: record.sub,
    createdAt: new Date(record.createdAt).toISOString(),
    expiresAt: new Date(record.absoluteExpiresAt).toISOString(),
  };
}
