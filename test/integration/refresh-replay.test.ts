/**
 * Replay on 401 (docs/http-interface.md#tokens-and-refresh): an upstream 401 with `WWW-Authenticate: Bearer
 * error="invalid_token"` on a replayable request (no body, or a body with a declared length of
 * at most 1 MiB) costs one refresh and one replay, and the browser sees only the replay. Never
 * more than once; never for bodies the gateway did not buffer.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { login, type LoginResult } from '../support/login.ts';
import { apiHeaders, startWorld, type RunningGateway, type World } from '../support/world.ts';

let world: World;
let noRetry: RunningGateway;
beforeAll(async () => {
  world = await startWorld({ store: 'redis' });
  noRetry = await world.startGateway({}, { tokens: { retryOn401: false } });
});
afterAll(() => world?.close());

let seq = 0;
const marker = () => `m${++seq}`;
const bearerOf = (headers: Record<string, string | string[] | undefined>) => String(headers.authorization ?? '').replace(/^Bearer /, '');
const seenFor = (id: string) => world.upstream.requests.filter((r) => r.url.includes(`m=${id}`));

/** A fresh session and the access token the upstream currently receives for it. */
async function sessionWithToken(): Promise<{ session: LoginResult; token: string }> {
  const session = await login(world.url);
  const id = marker();
  const res = await fetch(`${world.url}/api/echo?m=${id}`, { headers: apiHeaders(session.cookieHeader) });
  expect(res.status).toBe(200);
  await res.body?.cancel();
  return { session, token: bearerOf(seenFor(id)[0]?.headers ?? {}) };
}

test('a rejected token is refreshed once and the request replayed; the browser sees only the 200', async () => {
  const { session, token } = await sessionWithToken();
  world.upstream.rejectTokens.add(token);
  const grants = world.idp.counters.refreshGrants;
  const id = marker();
  const res = await fetch(`${world.url}/api/protected?m=${id}`, { headers: apiHeaders(session.cookieHeader) });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { auth?: { ok: boolean } };
  expect(body.auth?.ok).toBe(true);
  expect(world.idp.counters.refreshGrants - grants).toBe(1);
  const seen = seenFor(id);
  expect(seen).toHaveLength(2);
  expect(bearerOf(seen[0]!.headers)).toBe(token);
  expect(bearerOf(seen[1]!.headers)).not.toBe(token);
  // The refreshed token is the session's token from now on: no further refresh.
  const next = await fetch(`${world.url}/api/protected?m=${marker()}`, { headers: apiHeaders(session.cookieHeader) });
  expect(next.status).toBe(200);
  await next.body?.cancel();
  expect(world.idp.counters.refreshGrants - grants).toBe(1);
});

test('a POST with a JSON body reaches the upstream intact on the replay', async () => {
  const { session, token } = await sessionWithToken();
  world.upstream.rejectTokens.add(token);
  const payload = JSON.stringify({ order: 42, items: ['a', 'b'], note: 'ü'.repeat(1000) });
  const id = marker();
  const res = await fetch(`${world.url}/api/protected?m=${id}`, {
    method: 'POST',
    headers: apiHeaders(session.cookieHeader, { 'content-type': 'application/json' }),
    body: payload,
  });
  expect(res.status).toBe(200);
  const echoed = (await res.json()) as { method: string; body: string };
  expect(echoed.method).toBe('POST');
  expect(echoed.body).toBe(payload);
  const seen = seenFor(id);
  expect(seen).toHaveLength(2);
  expect(seen.map((r) => r.body.toString('utf8'))).toEqual([payload, payload]);
  expect(seen[1]!.headers['content-type']).toBe('application/json');
});

test('the replay is built from the original request again: forwarding headers neither lost nor doubled', async () => {
  const { session, token } = await sessionWithToken();
  world.upstream.rejectTokens.add(token);
  const id = marker();
  const res = await fetch(`${world.url}/api/protected?m=${id}`, { headers: apiHeaders(session.cookieHeader, { 'x-app': 'a' }) });
  expect(res.status).toBe(200);
  await res.body?.cancel();
  const [first, replay] = seenFor(id);
  for (const seen of [first!, replay!]) {
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen.headers['x-forwarded-host']).toBe(new URL(world.url).host);
    expect(seen.headers['x-forwarded-proto']).toBe('http');
    expect(seen.headers['x-app']).toBe('a');
  }
});

test('never loops: when the refreshed token is rejected too, the browser gets that 401 after exactly one refresh', async () => {
  const { session } = await sessionWithToken();
  const rejected = world.upstream.rejectTokens;
  rejected.has = () => true;
  try {
    const grants = world.idp.counters.refreshGrants;
    const id = marker();
    const res = await fetch(`${world.url}/api/protected?m=${id}`, { headers: apiHeaders(session.cookieHeader) });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/invalid_token/);
    await res.body?.cancel();
    expect(world.idp.counters.refreshGrants - grants).toBe(1);
    expect(seenFor(id)).toHaveLength(2);
  } finally {
    delete (rejected as { has?: unknown }).has;
  }
});

test('a chunked body (no content-length) is not replayed: the 401 passes through, no refresh', async () => {
  const { session, token } = await sessionWithToken();
  world.upstream.rejectTokens.add(token);
  const grants = world.idp.counters.refreshGrants;
  const id = marker();
  const chunks = ['{"part":', '1}'];
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      const next = chunks.shift();
      if (next === undefined) controller.close();
      else controller.enqueue(new TextEncoder().encode(next));
    },
  });
  const res = await fetch(`${world.url}/api/protected?m=${id}`, {
    method: 'POST',
    headers: apiHeaders(session.cookieHeader, { 'content-type': 'application/json' }),
    body,
    duplex: 'half',
  } as RequestInit);
  expect(res.status).toBe(401);
  await res.body?.cancel();
  expect(world.idp.counters.refreshGrants - grants).toBe(0);
  const seen = seenFor(id);
  expect(seen).toHaveLength(1);
  // Framing is the gateway's own: chunked, or a content-length when the whole body had
  // already arrived by the time the upstream request was written.
  const framing = seen[0]!.headers['transfer-encoding'] ?? `length ${seen[0]!.headers['content-length']}`;
  expect(['chunked', 'length 10']).toContain(framing);
  expect(seen[0]!.body.toString('utf8')).toBe('{"part":1}');
});

test('a body over 1 MiB is streamed, not buffered, and therefore not replayed', async () => {
  const { session, token } = await sessionWithToken();
  world.upstream.rejectTokens.add(token);
  const grants = world.idp.counters.refreshGrants;
  const id = marker();
  const big = Buffer.alloc(1024 * 1024 + 1, 'a');
  const res = await fetch(`${world.url}/api/protected?m=${id}`, {
    method: 'PUT',
    headers: apiHeaders(session.cookieHeader, { 'content-type': 'application/octet-stream' }),
    body: big,
  });
  expect(res.status).toBe(401);
  await res.body?.cancel();
  expect(world.idp.counters.refreshGrants - grants).toBe(0);
  expect(seenFor(id)).toHaveLength(1);
  expect(seenFor(id)[0]!.body.length).toBe(big.length);
});

test('a 401 without error="invalid_token" is passed through without a refresh', async () => {
  const { session } = await sessionWithToken();
  const grants = world.idp.counters.refreshGrants;
  const res = await fetch(`${world.url}/api/status/401?m=${marker()}`, { headers: apiHeaders(session.cookieHeader) });
  expect(res.status).toBe(401);
  await res.body?.cancel();
  expect(world.idp.counters.refreshGrants - grants).toBe(0);
});

test('with retryOn401 off the upstream 401 reaches the browser and nothing is refreshed', async () => {
  const { session, token } = await sessionWithToken();
  world.upstream.rejectTokens.add(token);
  const grants = world.idp.counters.refreshGrants;
  const id = marker();
  const res = await fetch(`${noRetry.url}/api/protected?m=${id}`, { headers: apiHeaders(session.cookieHeader) });
  expect(res.status).toBe(401);
  await res.body?.cancel();
  expect(world.idp.counters.refreshGrants - grants).toBe(0);
  expect(seenFor(id)).toHaveLength(1);
});
