/**
 * The refresh rules (docs/http-interface.md#tokens-and-refresh) across real gateway processes (the CLI, one YAML file each) sharing one
 * redis-server: at most one refresh per session in flight across ALL instances, and a crashed
 * lock holder does not wedge the session (its lock expires, another instance refreshes).
 *
 * Time is real here: tokens live 20 s and count as expiring in the last 14 s, so a session is
 * due 6 s after login and a freshly refreshed token stays fresh for 6 s (ample for a burst,
 * even on a busy machine). Both sessions log in up front so their waits overlap.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, expect, test, vi } from 'vitest';
import { login } from '../support/login.ts';
import { metricValue, startProcessWorld, type ProcessWorld } from '../support/processes.ts';
import { redisCommand } from '../support/redis.ts';
import { apiHeaders } from '../support/world.ts';
import { bearerOf } from '../support/upstream.ts';
import { sleep } from '../support/time.ts';

const BURST = 100;
const TOKEN_TTL_S = 20;
const WINDOW_S = 14;

interface DueSession {
  cookieHeader: string;
  /** The access token the upstream received right after login. */
  token: string;
  handle: string;
  loggedInAt: number;
}

let world: ProcessWorld;
let stormSession: DueSession;
let killSession: DueSession;

beforeAll(async () => {
  world = await startProcessWorld({
    instances: 3,
    idp: { accessTokenTtl: TOKEN_TTL_S },
    config: { tokens: { refreshBeforeExpiry: `${WINDOW_S}s` }, oidc: { timeout: '2s' } },
  });
  stormSession = await loginThroughFirst('storm');
  killSession = await loginThroughFirst('kill');
}, 60_000);
afterAll(() => world?.close());

async function loginThroughFirst(name: string): Promise<DueSession> {
  const session = await login(world.publicUrl);
  // Taken after the token was issued, so "due" is never early: a burst that started before the
  // token entered the refresh window would rightly see the old token on its first requests.
  const loggedInAt = Date.now();
  const probe = await fetch(`${world.publicUrl}/api/echo?probe=${name}`, { headers: apiHeaders(session.cookieHeader) });
  expect(probe.status).toBe(200);
  await probe.body?.cancel();
  const token = bearerOf(world.upstream.requests.find((r) => r.url === `/api/echo?probe=${name}`)?.headers ?? {});
  const id = session.cookie.slice(session.cookie.indexOf('=') + 1).split('.')[0] as string;
  return { cookieHeader: session.cookieHeader, token, handle: createHash('sha256').update(id).digest('base64url'), loggedInAt };
}

/** Waits until the session's token is inside the refresh window. */
async function untilDue(session: DueSession): Promise<DueSession> {
  await sleep(session.loggedInAt + (TOKEN_TTL_S - WINDOW_S) * 1000 + 300 - Date.now());
  return session;
}

async function metricSum(name: string, labels: Record<string, string>, gateways = world.gateways): Promise<number> {
  const texts = await Promise.all(gateways.map((g) => g.metrics()));
  return texts.reduce((sum, text) => sum + metricValue(text, name, labels), 0);
}

test(`${BURST} concurrent requests spread over 3 processes: exactly one refresh grant, all 200 with the new token`, async () => {
  const session = await untilDue(stormSession);
  const grantsBefore = world.idp.counters.refreshGrants;
  const successBefore = await metricSum('bff_token_refresh_total', { result: 'success' });

  const responses = await Promise.all(
    Array.from({ length: BURST }, (_, i) => {
      const gateway = world.gateways[i % world.gateways.length]!;
      return fetch(`${gateway.url}/api/echo?storm=${i}`, { headers: apiHeaders(session.cookieHeader) });
    }),
  );
  const statuses = await Promise.all(responses.map(async (res) => (await res.body?.cancel(), res.status)));
  expect(statuses).toEqual(Array(BURST).fill(200));
  expect(world.idp.counters.refreshGrants - grantsBefore).toBe(1);

  const seen = world.upstream.requests.filter((r) => r.url.startsWith('/api/echo?storm='));
  expect(seen).toHaveLength(BURST);
  const tokens = new Set(seen.map((r) => bearerOf(r.headers)));
  expect(tokens.size).toBe(1);
  expect(tokens.has(session.token)).toBe(false);
  expect((await metricSum('bff_token_refresh_total', { result: 'success' })) - successBefore).toBe(1);
  expect(await metricSum('bff_token_refresh_total', { result: 'invalid_grant' })).toBe(0);
  // Callers that found a refresh under way waited for it instead of calling the IdP.
  expect(await metricSum('bff_token_refresh_total', { result: 'coalesced' })).toBeGreaterThanOrEqual(1);
});

test('a process killed while holding the refresh lock: another process refreshes after the lock expires, no invalid_grant', async () => {
  const [victim, survivor] = [world.gateways[1]!, world.gateways[2]!];
  const session = await untilDue(killSession);
  const grantsBefore = world.idp.counters.refreshGrants;
  // The IdP holds the victim's refresh long enough to kill the victim mid-call; it never
  // answers it during this test, as if the request was lost with the process.
  world.idp.faults.tokenDelayMs = 60_000;
  const doomed = fetch(`${victim.url}/api/echo?doomed=1`, { headers: apiHeaders(session.cookieHeader) }).catch(() => undefined);
  await vi.waitFor(() => expect(world.idp.counters.refreshGrants).toBe(grantsBefore + 1), { timeout: 5_000, interval: 10 });
  await victim.kill();
  await doomed;
  world.idp.faults.tokenDelayMs = 0;
  // The dead process's lock is still there: the survivor must wait it out, not steal it.
  expect(await redisCommand(world.redis.port, `EXISTS bff:l:{${session.handle}}`)).toBe(':1');

  const res = await fetch(`${survivor.url}/api/echo?survivor=1`, { headers: apiHeaders(session.cookieHeader) });
  expect(res.status).toBe(200);
  await res.body?.cancel();
  expect(world.idp.counters.refreshGrants - grantsBefore).toBe(2);
  const seen = world.upstream.requests.find((r) => r.url === '/api/echo?survivor=1');
  expect(seen?.auth?.ok).toBe(true);
  expect(bearerOf(seen?.headers ?? {})).not.toBe(session.token);
  const survivorMetrics = await survivor.metrics();
  expect(metricValue(survivorMetrics, 'bff_token_refresh_total', { result: 'invalid_grant' })).toBe(0);
  expect(metricValue(survivorMetrics, 'bff_token_refresh_total', { result: 'success' })).toBeGreaterThanOrEqual(1);
  // The IdP's reply to the survivor was a normal rotation: the session keeps working.
  const again = await fetch(`${world.gateways[0]!.url}/api/echo?after=1`, { headers: apiHeaders(session.cookieHeader) });
  expect(again.status).toBe(200);
  await again.body?.cancel();
}, 30_000);
