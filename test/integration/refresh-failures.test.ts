/**
 * When the refresh fails (docs/http-interface.md#tokens-and-refresh):
 * - the IdP refuses (invalid_grant, or a bare 4xx without a body): the session is destroyed and
 *   the browser gets 401 session_expired, then 401 unauthenticated;
 * - the IdP is unavailable (5xx, 429, 408, connection reset, slower than `oidc.timeout`): the
 *   session is kept; a still-valid token is forwarded (200), an expired one gives 503
 *   idp_unavailable, and the session works again once the IdP recovers;
 * - after an unavailable IdP, a still-valid token is not refreshed again for a few seconds, and
 *   when the IdP sent `Retry-After` no refresh for that session goes out before it says.
 *
 * Two gateways with movable clocks share the world's Redis: `due` sees the token inside the
 * refresh window but valid, `expired` sees it past its expiry. The IdP and upstream keep real
 * time, so the upstream still accepts the token either way.
 */
import { afterAll, afterEach, beforeAll, expect, test } from 'vitest';
import type { TokenFault } from '../../fixtures/idp/idp.ts';
import { UNAVAILABLE_BACKOFF_MS } from '../../src/refresh/token-refresher.ts';
import { Sessions } from '../../src/session/sessions.ts';
import { login, type LoginResult } from '../support/login.ts';
import { apiHeaders, startWorld, type RunningGateway, type World } from '../support/world.ts';

const DUE_MS = 280_000;
const EXPIRED_MS = 400_000;

let world: World;
let due: RunningGateway;
let expired: RunningGateway;
let dueOffset = DUE_MS;

beforeAll(async () => {
  world = await startWorld({ store: 'redis' });
  const fastTimeout = { oidc: { timeout: '1s' } };
  due = await world.startGateway({ now: () => Date.now() + dueOffset }, fastTimeout);
  expired = await world.startGateway({ now: () => Date.now() + EXPIRED_MS }, fastTimeout);
});
afterEach(() => {
  world.idp.faults.token = 'none';
  world.idp.faults.tokenDelayMs = 0;
  world.idp.faults.retryAfter = undefined;
  dueOffset = DUE_MS;
});
afterAll(() => world?.close());

let seq = 0;
const bearerOf = (headers: Record<string, string | string[] | undefined>) => String(headers.authorization ?? '').replace(/^Bearer /, '');

/** GET /api/echo through `gateway`: status, error code, and the token the upstream received. */
async function call(gateway: RunningGateway | string, session: LoginResult) {
  const id = `f${++seq}`;
  const base = typeof gateway === 'string' ? gateway : gateway.url;
  const res = await fetch(`${base}/api/echo?f=${id}`, { headers: apiHeaders(session.cookieHeader) });
  const body = (await res.json()) as { error?: string };
  const seen = world.upstream.requests.find((r) => r.url === `/api/echo?f=${id}`);
  return { status: res.status, error: body.error, token: seen ? bearerOf(seen.headers) : undefined, setCookie: res.headers.getSetCookie() };
}

async function refreshes(gateway: RunningGateway, result: string): Promise<number> {
  const metric = await gateway.gateway.services.metrics.tokenRefresh.get();
  return metric.values.find((v) => v.labels.result === result)?.value ?? 0;
}

async function stored(session: LoginResult): Promise<boolean> {
  const id = session.cookie.slice(session.cookie.indexOf('=') + 1).split('.')[0] as string;
  return (await world.gateway.gateway.services.store.get(Sessions.handleOf(id))) !== null;
}

async function start(): Promise<{ session: LoginResult; token: string }> {
  const session = await login(world.url);
  const first = await call(world.url, session);
  expect(first.status).toBe(200);
  return { session, token: first.token as string };
}

test.each<TokenFault>(['invalid_grant', 'bare400'])('IdP answers %s: 401 session_expired, the session is gone', async (fault) => {
  const { session } = await start();
  const rejectedBefore = await refreshes(due, 'invalid_grant');
  world.idp.faults.token = fault;
  const res = await call(due, session);
  expect(res).toMatchObject({ status: 401, error: 'session_expired', token: undefined });
  expect(res.setCookie.some((line) => /Max-Age=0|Expires=Thu, 01 Jan 1970/i.test(line))).toBe(true);
  expect(await refreshes(due, 'invalid_grant')).toBe(rejectedBefore + 1);
  expect(await stored(session)).toBe(false);
  world.idp.faults.token = 'none';
  expect(await call(world.url, session)).toMatchObject({ status: 401, error: 'unauthenticated' });
});

const unavailable: Array<[string, (idp: World['idp']) => void]> = [
  ['503', (idp) => (idp.faults.token = 'http503')],
  // "Too many requests" and "request timeout" say "not now", not "no": the grant is fine.
  ['429', (idp) => (idp.faults.token = 'http429')],
  ['408', (idp) => (idp.faults.token = 'http408')],
  ['a connection reset', (idp) => (idp.faults.token = 'reset')],
  // Slower than the gateways' 1 s timeout; the IdP never answers it within this file.
  ['no answer within oidc.timeout', (idp) => (idp.faults.tokenDelayMs = 20_000)],
];

test.each(unavailable)(
  'IdP gives %s and the token is still valid: forwarded with the current token, session kept',
  async (_name, inject) => {
    const { session, token } = await start();
    const errorsBefore = await refreshes(due, 'error');
    const grants = world.idp.counters.refreshGrants;
    inject(world.idp);
    const res = await call(due, session);
    expect(res).toMatchObject({ status: 200, token });
    expect(world.idp.counters.refreshGrants - grants).toBe(1);
    expect(await refreshes(due, 'error')).toBe(errorsBefore + 1);
    expect(await stored(session)).toBe(true);
    expect(await call(world.url, session)).toMatchObject({ status: 200, token });
  },
);

test.each(unavailable)(
  'IdP gives %s and the token has expired: 503 idp_unavailable, session kept, fine after recovery',
  async (_name, inject) => {
    const { session, token } = await start();
    inject(world.idp);
    expect(await call(expired, session)).toMatchObject({ status: 503, error: 'idp_unavailable', token: undefined });
    expect(await stored(session)).toBe(true);
    world.idp.faults.token = 'none';
    world.idp.faults.tokenDelayMs = 0;
    const recovered = await call(expired, session);
    expect(recovered.status).toBe(200);
    expect(recovered.token).not.toBe(token);
    expect(await refreshes(expired, 'invalid_grant')).toBe(0);
  },
);

test('after an unavailable IdP a valid token is not refreshed again until the backoff has passed', async () => {
  const { session, token } = await start();
  const other = await start();
  world.idp.faults.token = 'http503';
  const grants = world.idp.counters.refreshGrants;
  expect(await call(due, session)).toMatchObject({ status: 200, token });
  expect(world.idp.counters.refreshGrants - grants).toBe(1);
  for (let i = 0; i < 5; i++) expect(await call(due, session)).toMatchObject({ status: 200, token });
  expect(world.idp.counters.refreshGrants - grants).toBe(1);

  // The backoff is per session: another session on the same instance still tries.
  expect(await call(due, other.session)).toMatchObject({ status: 200, token: other.token });
  expect(world.idp.counters.refreshGrants - grants).toBe(2);

  // Past the backoff, with the IdP back, the due token is refreshed.
  world.idp.faults.token = 'none';
  dueOffset += UNAVAILABLE_BACKOFF_MS + 1_000;
  const refreshed = await call(due, session);
  expect(refreshed.status).toBe(200);
  expect(refreshed.token).not.toBe(token);
  expect(world.idp.counters.refreshGrants - grants).toBe(3);
});

test('the backoff never holds back an expired token: it is retried at once', async () => {
  const { session, token } = await start();
  world.idp.faults.token = 'http503';
  const grants = world.idp.counters.refreshGrants;
  expect(await call(due, session)).toMatchObject({ status: 200, token });
  // Still inside the backoff window, but now past the token's expiry.
  dueOffset = EXPIRED_MS;
  expect(await call(due, session)).toMatchObject({ status: 503, error: 'idp_unavailable' });
  expect(world.idp.counters.refreshGrants - grants).toBe(2);
  world.idp.faults.token = 'none';
  const recovered = await call(due, session);
  expect(recovered.status).toBe(200);
  expect(recovered.token).not.toBe(token);
});

test('refresh outcomes are timed in the duration histogram, failures included', async () => {
  const histogram = async () =>
    (await due.gateway.services.metrics.refreshDuration.get()).values.find(
      (v) => v.metricName === 'bff_token_refresh_duration_seconds_count',
    )?.value ?? 0;
  const before = await histogram();
  const { session } = await start();
  world.idp.faults.token = 'http503';
  await call(due, session);
  world.idp.faults.token = 'none';
  const fresh = await start();
  await call(due, fresh.session);
  expect(await histogram()).toBe(before + 2);
});

test.each<[string, TokenFault, () => string]>([
  ['429 with Retry-After in seconds', 'http429', () => '2'],
  // An HTTP-date is rounded down to the second: two seconds ahead leaves at least one.
  ['503 with Retry-After as an HTTP-date', 'http503', () => new Date(Date.now() + 2_000).toUTCString()],
])('IdP answers %s: no refresh for that session before it, 503 meanwhile, then fine', async (_name, fault, retryAfter) => {
  const { session, token } = await start();
  const other = await start();
  world.idp.faults.token = fault;
  world.idp.faults.retryAfter = retryAfter();
  const grants = world.idp.counters.refreshGrants;
  const asked = Date.now();
  expect(await call(expired, session)).toMatchObject({ status: 503, error: 'idp_unavailable' });
  expect(world.idp.counters.refreshGrants - grants).toBe(1);
  expect(await stored(session)).toBe(true);

  // The IdP is back, but asked for a pause: this session's expired token waits without a call.
  world.idp.faults.token = 'none';
  expect(await call(expired, session)).toMatchObject({ status: 503, error: 'idp_unavailable' });
  expect(world.idp.counters.refreshGrants - grants).toBe(1);
  // The pause is per session: another session refreshes at once.
  expect((await call(expired, other.session)).status).toBe(200);
  expect(world.idp.counters.refreshGrants - grants).toBe(2);

  await new Promise((resolve) => setTimeout(resolve, Math.max(0, asked + 2_100 - Date.now())));
  const recovered = await call(expired, session);
  expect(recovered.status).toBe(200);
  expect(recovered.token).not.toBe(token);
  expect(await refreshes(expired, 'invalid_grant')).toBe(0);
});
