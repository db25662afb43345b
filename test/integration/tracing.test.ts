/**
 * OpenTelemetry tracing (docs/observability.md), switched on the standard way
 * (OTEL_EXPORTER_OTLP_ENDPOINT) and captured by an in-process OTLP/HTTP receiver: one API call
 * whose token must be refreshed gives one trace with the gateway's request span, the refresh,
 * the IdP call and the upstream hop, and the upstream receives a `traceparent` of that trace.
 * The session read behind the cookie is a `bff.session.load` child of the request's span, with
 * its outcome (active, expired, none) and whether the session cache served it.
 * No span attribute carries a token, the session cookie, id or handle, or an authorization code.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, test, vi } from 'vitest';
import { Sessions } from '../../src/session/sessions.ts';
import { flushTracing, stopTracing } from '../../src/telemetry/tracing.ts';
import { startWorldBehindFront, type HostileIdp } from '../support/hostile-idp.ts';
import { login } from '../support/login.ts';
import { apiHeaders, type RunningGateway, type World } from '../support/world.ts';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: Array<{ key: string; value: Record<string, unknown> }>;
}

const bodies: string[] = [];
let receiver: Server;
let world: World;
let front: HostileIdp;
let stale: RunningGateway;
let late: RunningGateway;

beforeAll(async () => {
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      if (req.url === '/v1/traces') bodies.push(Buffer.concat(chunks).toString('utf8'));
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  process.env.OTEL_SERVICE_NAME = 'bff-gateway-test';
  ({ world, front } = await startWorldBehindFront({ store: 'redis' }));
  // Its clock puts the 300 s token inside the refresh window: its API calls refresh first.
  stale = await world.startGateway({ now: () => Date.now() + 280_000 });
  // Its clock is past every session's idle timeout (2 h): sessions it reads have expired.
  late = await world.startGateway({ now: () => Date.now() + 3 * 3600_000 });
});
afterAll(async () => {
  await world?.close();
  await stopTracing();
  delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  delete process.env.OTEL_SERVICE_NAME;
  await new Promise((resolve) => receiver?.close(resolve));
});

/** The exported spans of the trace of the (only) request to `path`, found by its server span's `url.path`. */
async function traceOfPath(path: string): Promise<OtlpSpan[]> {
  await flushTracing();
  const server = (): OtlpSpan | undefined => exportedSpans().find((span) => span.kind === 2 && attributesOf(span)['url.path'] === path);
  await vi.waitFor(() => expect(server()).toBeDefined(), { timeout: 10_000, interval: 50 });
  const traceId = server()?.traceId;
  return exportedSpans().filter((span) => span.traceId === traceId);
}

function attributesOf(span: OtlpSpan | undefined): Record<string, unknown> {
  return Object.fromEntries((span?.attributes ?? []).map(({ key, value }) => [key, Object.values(value)[0]]));
}

/** The session behind a cookie header, as the store knows it: its id and handle (secrets both). */
function sessionSecrets(cookie: string): string[] {
  const value = decodeURIComponent(cookie.slice(cookie.indexOf('=') + 1));
  const id = value.slice(0, value.lastIndexOf('.'));
  return [id, Sessions.handleOf(id)];
}

function exportedSpans(): OtlpSpan[] {
  return bodies.flatMap((body) => {
    const parsed = JSON.parse(body) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: OtlpSpan[] }> }> };
    return parsed.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans));
  });
}

test('one API call: gateway, refresh, IdP and upstream spans share a trace id; no secret in any span', async () => {
  const session = await login(world.url);
  const before = world.upstream.requests.length;
  const res = await fetch(`${stale.url}/api/traced?x=1`, { headers: apiHeaders(session.cookieHeader) });
  await res.body?.cancel();
  expect(res.status).toBe(200);
  const traceparent = String(world.upstream.requests.slice(before).at(-1)?.headers.traceparent ?? '');
  expect(traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  const traceId = traceparent.split('-')[1];

  await flushTracing();
  await vi.waitFor(() => expect(exportedSpans().some((span) => span.traceId === traceId && span.kind === 2)).toBe(true), {
    timeout: 10_000,
    interval: 50,
  });
  const trace = exportedSpans().filter((span) => span.traceId === traceId);
  const names = trace.map((span) => span.name);
  const server = trace.find((span) => span.kind === 2);
  expect(server?.name).toBe('GET /api');
  expect(server?.parentSpanId || undefined).toBeUndefined();
  expect(names).toContain('bff.token_refresh');
  expect(names).toContain('idp POST /token');
  const upstream = trace.find((span) => span.name === 'upstream GET');
  expect(upstream?.kind).toBe(3);
  // The upstream's parent is the span the upstream was told about.
  expect(traceparent.split('-')[2]).toBe(upstream?.spanId);
  // The session read behind the cookie: a child of the request's span, with its outcome only.
  const loads = trace.filter((span) => span.name === 'bff.session.load');
  expect(loads.length).toBeGreaterThan(0);
  for (const load of loads) {
    expect(load.parentSpanId).toBe(server?.spanId);
    expect(load.kind).toBe(1);
    expect(Object.keys(attributesOf(load)).sort()).toEqual(['bff.session.cached', 'bff.session.outcome']);
  }
  expect(attributesOf(loads[0])).toEqual({ 'bff.session.outcome': 'active', 'bff.session.cached': expect.any(Boolean) });

  const everything = bodies.join('\n');
  expect(everything).toContain('bff-gateway-test');
  const secrets = [
    session.cookie.split('=')[1] ?? '',
    ...sessionSecrets(session.cookie),
    ...front.tokenResponses.flatMap((r) => [r.access_token, r.refresh_token, r.id_token]),
  ];
  for (const secret of secrets) if (typeof secret === 'string' && secret.length > 0) expect(everything).not.toContain(secret);
  expect(everything).not.toMatch(/[?&]code=/);
  expect(everything).not.toContain('x=1');
});

test('the session load says whether the session was active, expired or not there; no span without a cookie', async () => {
  const session = await login(world.url);
  // Past its idle timeout on this gateway's clock: ended now (401 session_expired).
  const expired = await fetch(`${late.url}/api/session-expired`, { headers: apiHeaders(session.cookieHeader) });
  await expired.body?.cancel();
  expect(expired.status).toBe(401);
  // The record is gone now: the same cookie finds nothing.
  const gone = await fetch(`${world.url}/api/session-gone`, { headers: apiHeaders(session.cookieHeader) });
  await gone.body?.cancel();
  expect(gone.status).toBe(401);
  // No cookie: nothing to load.
  const anonymous = await fetch(`${world.url}/api/session-anonymous`, { headers: { 'x-csrf': '1' } });
  await anonymous.body?.cancel();
  expect(anonymous.status).toBe(401);

  for (const [path, outcome] of [
    ['/api/session-expired', 'expired'],
    ['/api/session-gone', 'none'],
  ] as const) {
    const trace = await traceOfPath(path);
    const server = trace.find((span) => span.kind === 2);
    const load = trace.find((span) => span.name === 'bff.session.load');
    expect(load?.parentSpanId, path).toBe(server?.spanId);
    expect(attributesOf(load), path).toEqual({ 'bff.session.outcome': outcome, 'bff.session.cached': false });
  }
  const anonymousTrace = await traceOfPath('/api/session-anonymous');
  expect(anonymousTrace.length).toBeGreaterThan(0);
  expect(anonymousTrace.map((span) => span.name)).not.toContain('bff.session.load');

  const everything = bodies.join('\n');
  for (const secret of [session.cookie.split('=')[1] ?? '', ...sessionSecrets(session.cookie)]) expect(everything).not.toContain(secret);
});

test('a session the session cache serves is a load with bff.session.cached = true', async () => {
  const session = await login(world.url);
  // The first read goes to Redis and fills the cache; the ones after it are served from it.
  for (const n of [1, 2, 3]) {
    const res = await fetch(`${world.url}/api/session-cached-${n}`, { headers: apiHeaders(session.cookieHeader) });
    await res.body?.cancel();
    expect(res.status).toBe(200);
  }
  const cached: boolean[] = [];
  for (const n of [1, 2, 3]) {
    const load = (await traceOfPath(`/api/session-cached-${n}`)).find((span) => span.name === 'bff.session.load');
    expect(attributesOf(load)['bff.session.outcome']).toBe('active');
    cached.push(attributesOf(load)['bff.session.cached'] as boolean);
  }
  expect(cached[0]).toBe(false);
  expect(cached.slice(1)).toContain(true);
});
