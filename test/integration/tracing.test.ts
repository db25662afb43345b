/**
 * OpenTelemetry tracing (docs/observability.md), switched on the standard way
 * (OTEL_EXPORTER_OTLP_ENDPOINT) and captured by an in-process OTLP/HTTP receiver: one API call
 * whose token must be refreshed gives one trace with the gateway's request span, the refresh,
 * the IdP call and the upstream hop, and the upstream receives a `traceparent` of that trace.
 * No span attribute carries a token, the session cookie or an authorization code.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, test, vi } from 'vitest';
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
});
afterAll(async () => {
  await world?.close();
  await stopTracing();
  delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  delete process.env.OTEL_SERVICE_NAME;
  await new Promise((resolve) => receiver?.close(resolve));
});

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

  const everything = bodies.join('\n');
  expect(everything).toContain('bff-gateway-test');
  const secrets = [
    session.cookie.split('=')[1] ?? '',
    ...front.tokenResponses.flatMap((r) => [r.access_token, r.refresh_token, r.id_token]),
  ];
  for (const secret of secrets) if (typeof secret === 'string' && secret.length > 0) expect(everything).not.toContain(secret);
  expect(everything).not.toMatch(/[?&]code=/);
  expect(everything).not.toContain('x=1');
});
