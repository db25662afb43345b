/**
 * The refresh protocol (src/refresh/token-refresher.ts) on the memory store with a fake IdP and a
 * manual clock: when a refresh happens, that it happens once per session however many requests
 * and instances ask, and what each IdP outcome does to the session. The same rules are tested
 * end to end against a real IdP and Redis in test/integration/refresh-*.test.ts.
 */
import { expect, test, vi } from 'vitest';
import { GatewayError } from '../../src/errors.ts';
import { MAX_RETRY_AFTER_MS } from '../../src/oidc/idp-error.ts';
import { TokenRefresher, UNAVAILABLE_BACKOFF_MS } from '../../src/refresh/token-refresher.ts';
import { createLogger } from '../../src/log.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { rejected, unavailable } from '../support/fake-idp.ts';
import { ACCESS_TTL_MS, tokenWorld } from '../support/token-world.ts';
import { IdpError } from '../../src/oidc/idp-error.ts';

/** Moves the clock so the session's token (issued at the start) is inside the refresh window but valid. */
const DUE_MS = ACCESS_TTL_MS - 10_000;
/** ... or past its expiry. */
const EXPIRED_MS = ACCESS_TTL_MS + 1_000;

async function failure(promise: Promise<unknown>): Promise<GatewayError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GatewayError);
  return err as GatewayError;
}

test('a token outside the refresh window is used as it is', async () => {
  const w = tokenWorld();
  const s = await w.session();
  const record = await w.main.refresher.ensureFresh(s);
  expect(record.tokens.accessToken).toBe('at-0');
  expect(w.idp.calls).toEqual([]);
});

test('inside the window: one refresh; the rotated refresh token replaces the old one and is stored', async () => {
  const w = tokenWorld();
  const s = await w.session();
  w.clock.advance(DUE_MS);
  const record = await w.main.refresher.ensureFresh(s);
  expect(w.idp.calls).toEqual([{ grant: 'refresh', token: 'rt-0', parameters: undefined }]);
  expect(record.tokens).toMatchObject({ accessToken: 'at-1', refreshToken: 'rt-1', idToken: 'id-0' });
  const stored = await w.main.sessions.loadHandle(s.handle);
  expect(stored.state === 'active' && stored.record.tokens.refreshToken).toBe('rt-1');
  expect(await w.refreshes(w.main, 'success')).toBe(1);
});

test('an answer without a refresh token keeps the old one', async () => {
  const w = tokenWorld();
  const s = await w.session();
  w.clock.advance(DUE_MS);
  w.idp.script.push({ refresh_token: undefined });
  const record = await w.main.refresher.ensureFresh(s);
  expect(record.tokens).toMatchObject({ accessToken: 'at-1', refreshToken: 'rt-0' });
});

test('concurrent requests of one session share one refresh', async () => {
  const w = tokenWorld();
  const s = await w.session();
  w.clock.advance(DUE_MS);
  let open!: () => void;
  w.idp.gate = new Promise((resolve) => (open = resolve));
  const pending = Array.from({ length: 10 }, async () => w.main.refresher.ensureFresh(await loaded(w, s.handle)));
  await vi.waitFor(() => expect(w.idp.calls).toHaveLength(1));
  open();
  const records = await Promise.all(pending);
  expect(new Set(records.map((r) => r.tokens.accessToken))).toEqual(new Set(['at-1']));
  expect(w.idp.calls).toHaveLength(1);
  expect(await w.refreshes(w.main, 'coalesced')).toBe(9);
});

test('two instances on one store: one refresh, the other takes its result after the lock', async () => {
  const w = tokenWorld();
  const other = w.instance();
  const s = await w.session();
  w.clock.advance(DUE_MS);
  let open!: () => void;
  w.idp.gate = new Promise((resolve) => (open = resolve));
  const first = w.main.refresher.ensureFresh(await loaded(w, s.handle));
  await vi.waitFor(() => expect(w.idp.calls).toHaveLength(1));
  const second = other.refresher.ensureFresh(await loaded(w, s.handle));
  open();
  const [a, b] = await Promise.all([first, second]);
  expect(a.tokens.accessToken).toBe('at-1');
  expect(b.tokens.accessToken).toBe('at-1');
  expect(w.idp.calls).toHaveLength(1);
});

test.each([
  ['rejected (invalid_grant)', rejected()],
  ['rejected without an OAuth body (bare 400)', rejected('http_400')],
  ['an invalid answer', new IdpError('invalid', 'OAUTH_JWT_CLAIM_COMPARISON_FAILED')],
])('%s: the session is destroyed, 401 session_expired', async (_name, outcome) => {
  const w = tokenWorld();
  const s = await w.session();
  w.clock.advance(DUE_MS);
  w.idp.script.push(outcome);
  expect((await failure(w.main.refresher.ensureFresh(s))).code).toBe('session_expired');
  expect((await w.main.sessions.loadHandle(s.handle)).state).toBe('none');
});

test('unavailable with a valid token: the token is used, the session kept, the IdP left alone for the backoff', async () => {
  const w = tokenWorld();
  const s = await w.session();
  w.clock.advance(DUE_MS);
  w.idp.script.push(unavailable());
  expect((await w.main.refresher.ensureFresh(s)).tokens.accessToken).toBe('at-0');
  expect((await w.main.refresher.ensureFresh(await loaded(w, s.handle))).tokens.accessToken).toBe('at-0');
  expect(w.idp.calls).toHaveLength(1);
  w.clock.advance(UNAVAILABLE_BACKOFF_MS + 1);
  expect((await w.main.refresher.ensureFresh(await loaded(w, s.handle))).tokens.accessToken).toBe('at-1');
  expect(w.idp.calls).toHaveLength(2);
});

test('unavailable with an expired token: 503 idp_unavailable, session kept, retried at once without Retry-After', async () => {
  const w = tokenWorld();
  const s = await w.session();
  w.clock.advance(EXPIRED_MS);
  w.idp.script.push(unavailable());
  expect((await failure(w.main.refresher.ensureFresh(s))).code).toBe('idp_unavailable');
  expect((await w.main.sessions.loadHandle(s.handle)).state).toBe('active');
  expect((await w.main.refresher.ensureFresh(await loaded(w, s.handle))).tokens.accessToken).toBe('at-1');
});

test('Retry-After holds every refresh of that session until it has passed, an expired token included', async () => {
  const w = tokenWorld();
  const s = await w.session();
  const other = await w.session();
  w.clock.advance(EXPIRED_MS);
  w.idp.script.push(unavailable(3_000));
  expect((await failure(w.main.refresher.ensureFresh(s))).code).toBe('idp_unavailable');
  w.clock.advance(2_999);
  expect((await failure(w.main.refresher.ensureFresh(await loaded(w, s.handle)))).code).toBe('idp_unavailable');
  expect(w.idp.calls).toHaveLength(1);
  // Per session: another one is not held back.
  expect((await w.main.refresher.ensureFresh(other)).tokens.accessToken).toBe('at-1');
  w.clock.advance(2);
  expect((await w.main.refresher.ensureFresh(await loaded(w, s.handle))).tokens.accessToken).toBe('at-2');
});

test('a Retry-After longer than the bound is held only for the bound', async () => {
  const w = tokenWorld();
  const s = await w.session();
  w.clock.advance(EXPIRED_MS);
  // The IdP client bounds what it parses; a larger value reaching the refresher is a bug there.
  w.idp.script.push(unavailable(MAX_RETRY_AFTER_MS));
  await failure(w.main.refresher.ensureFresh(s));
  w.clock.advance(MAX_RETRY_AFTER_MS + 1);
  expect((await w.main.refresher.ensureFresh(await loaded(w, s.handle))).tokens.accessToken).toBe('at-1');
});

test.each(['invalid_target', 'invalid_scope'])(
  'a route mint refused with %s: 502 bad_gateway, the session and its main token kept',
  async (error) => {
    const w = tokenWorld();
    const s = await w.session();
    w.idp.script.push(rejected(error));
    const orders = w.route('/orders');
    expect((await failure(w.main.refresher.ensureRouteToken(s, orders))).code).toBe('bad_gateway');
    expect(w.idp.calls[0]).toMatchObject({
      grant: 'refresh',
      token: 'rt-0',
      parameters: { resource: 'https://orders.internal', scope: 'orders.read' },
    });
    const kept = await loaded(w, s.handle);
    expect(kept.record.tokens.accessToken).toBe('at-0');
    // Once the IdP agrees, the route gets its token from the same grant.
    expect((await w.main.refresher.ensureRouteToken(kept, orders)).routeTokens?.['/orders']?.accessToken).toBe('at-1');
  },
);

test('a route mint refused with invalid_grant ends the session', async () => {
  const w = tokenWorld();
  const s = await w.session();
  w.idp.script.push(rejected());
  expect((await failure(w.main.refresher.ensureRouteToken(s, w.route('/orders')))).code).toBe('session_expired');
  expect((await w.main.sessions.loadHandle(s.handle)).state).toBe('none');
});

test('with token exchange the route token comes from the main access token; the refresh token is untouched', async () => {
  const w = tokenWorld();
  w.idp.supportsTokenExchange = true;
  const s = await w.session();
  const record = await w.main.refresher.ensureRouteToken(s, w.route('/orders'));
  expect(w.idp.calls).toEqual([
    {
      grant: 'tokenExchange',
      token: 'at-0',
      parameters: { resource: 'https://orders.internal', scope: 'orders.read', audience: 'https://orders.internal' },
    },
  ]);
  expect(record.tokens.refreshToken).toBe('rt-0');
  expect(record.routeTokens?.['/orders']?.accessToken).toBe('at-1');
});

test('a session that ended during its refresh: 401 session_expired, and the tokens just minted are revoked', async () => {
  const w = tokenWorld();
  const s = await w.session();
  w.clock.advance(DUE_MS);
  let open!: () => void;
  w.idp.gate = new Promise((resolve) => (open = resolve));
  const refreshing = w.main.refresher.ensureFresh(s);
  await vi.waitFor(() => expect(w.idp.calls).toHaveLength(1));
  await w.main.sessions.destroy(s.handle, s.record);
  open();
  expect((await failure(refreshing)).code).toBe('session_expired');
  await vi.waitFor(() => expect(w.idp.revoked).toEqual(['rt-1', 'at-1']));
  expect((await w.main.sessions.loadHandle(s.handle)).state).toBe('none');
});

test('an upstream rejection refreshes even a fresh token, once for all requests that saw it', async () => {
  const w = tokenWorld();
  const s = await w.session();
  const [a, b] = await Promise.all([w.main.refresher.refreshAfterRejection(s, 'at-0'), w.main.refresher.refreshAfterRejection(s, 'at-0')]);
  expect(a.tokens.accessToken).toBe('at-1');
  expect(b.tokens.accessToken).toBe('at-1');
  expect(w.idp.calls).toHaveLength(1);
});

async function loaded(w: ReturnType<typeof tokenWorld>, handle: string) {
  const result = await w.main.sessions.loadHandle(handle);
  if (result.state !== 'active') throw new Error(`session ${result.state}`);
  return result;
}

test.each([0, 1_000])(
  'a Retry-After shorter than the default backoff (%i ms) never shortens it: a valid token is used without asking the IdP again',
  async (retryAfterMs) => {
    const w = tokenWorld();
    const s = await w.session();
    w.clock.advance(DUE_MS);
    w.idp.script.push(unavailable(retryAfterMs));
    for (let i = 0; i < 5; i++) expect((await w.main.refresher.ensureFresh(await loaded(w, s.handle))).tokens.accessToken).toBe('at-0');
    expect(w.idp.calls).toHaveLength(1);
    w.clock.advance(UNAVAILABLE_BACKOFF_MS + 1);
    expect((await w.main.refresher.ensureFresh(await loaded(w, s.handle))).tokens.accessToken).toBe('at-1');
    expect(w.idp.calls).toHaveLength(2);
  },
);

test('a Retry-After of 0 with an expired token: retried at once, like no Retry-After', async () => {
  const w = tokenWorld();
  const s = await w.session();
  w.clock.advance(EXPIRED_MS);
  w.idp.script.push(unavailable(0));
  expect((await failure(w.main.refresher.ensureFresh(s))).code).toBe('idp_unavailable');
  expect((await w.main.refresher.ensureFresh(await loaded(w, s.handle))).tokens.accessToken).toBe('at-1');
});

test('a short Retry-After holds an expired token only for what the IdP asked', async () => {
  const w = tokenWorld();
  const s = await w.session();
  w.clock.advance(DUE_MS);
  w.idp.script.push(unavailable(1_000));
  expect((await w.main.refresher.ensureFresh(s)).tokens.accessToken).toBe('at-0');
  // The token expires meanwhile: after the IdP's 1 s (not the 5 s default) it is tried again.
  w.clock.advance(EXPIRED_MS - DUE_MS);
  expect((await w.main.refresher.ensureFresh(await loaded(w, s.handle))).tokens.accessToken).toBe('at-1');
  expect(w.idp.calls).toHaveLength(2);
});

test('a lost race whose revocation partly fails is logged as such, never as "revoked"', async () => {
  const w = tokenWorld();
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger({
    level: 'info',
    destination: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
  });
  const refresher = new TokenRefresher({
    config: w.config,
    store: w.store,
    sessions: w.main.sessions,
    idp: w.idp,
    metrics: new Metrics(),
    log,
    now: w.clock.now,
  });
  w.idp.revoke = async (token: string) => {
    if (token.startsWith('rt-')) throw unavailable();
    w.idp.revoked.push(token);
  };
  const s = await w.session();
  w.clock.advance(DUE_MS);
  let open!: () => void;
  w.idp.gate = new Promise((resolve) => (open = resolve));
  const refreshing = refresher.ensureFresh(s);
  await vi.waitFor(() => expect(w.idp.calls).toHaveLength(1));
  await w.main.sessions.destroy(s.handle, s.record);
  open();
  expect((await failure(refreshing)).code).toBe('session_expired');
  await vi.waitFor(() => expect(lines.some((line) => String(line.event).startsWith('lost_race_tokens'))).toBe(true));
  const outcome = lines.find((line) => String(line.event).startsWith('lost_race_tokens'));
  expect(outcome).toMatchObject({ event: 'lost_race_tokens_revoke_failed', tokens: 2, failed: 1 });
  expect(String(outcome?.msg)).not.toMatch(/were revoked/);
});
