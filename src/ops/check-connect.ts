/**
 * `bff-gateway check --connect`: after the file is valid, try what the gateway will need at
 * start, with the configured settings, and say what fails:
 * - the session store: one connection (credentials, TLS, db, Sentinel or Cluster) and a PING;
 * - the IdP: its discovery document (`<issuer>/.well-known/openid-configuration`, within
 *   `oidc.timeout`, redirects not followed), which must name exactly the configured issuer.
 * One line per check; true when every check passed.
 */
import type { GatewayConfig } from '../config/load.ts';
import { probeRedis } from '../session/redis-probe.ts';

interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
}

type Outcome = { ok: true; line: string } | { ok: false; line: string };

function targetText(target: Record<string, unknown>): string {
  return Object.values(target)
    .map((value) => (Array.isArray(value) ? value.join(',') : String(value)))
    .join(' ');
}

async function checkStore(config: GatewayConfig): Promise<Outcome> {
  if (config.session.store === 'memory') return { ok: true, line: 'session store: memory (in this process, nothing to connect to)' };
  const result = await probeRedis(config.session.redis);
  const where = `session store (redis ${targetText(result.target)})`;
  return result.ok ? { ok: true, line: `${where}: ok, PING answered` } : { ok: false, line: `${where}: ${result.problem}` };
}

/** Where openid-client looks: the issuer's path with the well-known suffix appended. */
export function discoveryUrl(issuer: string): URL {
  const url = new URL(issuer);
  url.pathname = `${url.pathname}/.well-known/openid-configuration`.replace('//', '/');
  return url;
}

function fetchProblem(err: unknown, timeoutMs: number): string {
  const error = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (error.name === 'TimeoutError' || error.name === 'AbortError') return `no answer within ${timeoutMs} ms (oidc.timeout)`;
  const cause = error.cause;
  if (cause?.code || cause?.message) return [cause.code, cause.message].filter(Boolean).join(': ');
  return error.message ?? String(err);
}

async function checkIdp(config: GatewayConfig): Promise<Outcome> {
  const { issuer, timeoutMs } = config.oidc;
  const url = discoveryUrl(issuer);
  const where = `identity provider (${url.href})`;
  try {
    const response = await fetch(url, {
      redirect: 'manual',
      headers: { accept: 'application/json' },
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (response.status !== 200) {
      await response.body?.cancel();
      return { ok: false, line: `${where}: HTTP ${response.status}, expected 200 with the discovery document` };
    }
    let document: { issuer?: unknown };
    try {
      document = (await response.json()) as { issuer?: unknown };
    } catch {
      return { ok: false, line: `${where}: the answer is not JSON` };
    }
    if (typeof document?.issuer !== 'string') return { ok: false, line: `${where}: the document has no issuer` };
    let named: string | undefined;
    try {
      named = new URL(document.issuer).href;
    } catch {
      named = undefined;
    }
    if (named !== new URL(issuer).href)
      return {
        ok: false,
        line: `${where}: the document names issuer ${JSON.stringify(document.issuer)}, not the configured ${JSON.stringify(issuer)}`,
      };
    return { ok: true, line: `${where}: ok, issuer matches` };
  } catch (err) {
    return { ok: false, line: `${where}: ${fetchProblem(err, timeoutMs)}` };
  }
}

export async function checkConnections(config: GatewayConfig, io: Io): Promise<boolean> {
  const outcomes = await Promise.all([checkStore(config), checkIdp(config)]);
  for (const outcome of outcomes) (outcome.ok ? io.out : io.err)(outcome.line);
  return outcomes.every((outcome) => outcome.ok);
}
