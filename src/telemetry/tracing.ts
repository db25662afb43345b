/**
 * OpenTelemetry tracing, off unless configured through the standard environment variables:
 * on when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set (spans go
 * there by OTLP/HTTP), and neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none`.
 * The SDK itself reads the rest: `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
 * `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS`, `OTEL_BSP_*`.
 *
 * Off costs nothing per request: every helper here first checks one module variable and calls
 * straight through — no span object, no context manager, no header parsing. The tracer is
 * process-wide (like the OpenTelemetry API's own globals), so the IdP client, the refresher
 * and the proxy need no extra dependency to reach it.
 *
 * What spans carry: methods, route patterns, paths without query, status codes, outcomes. Never
 * a query string (codes, states, handoffs live there), a header value, a token or an id of a
 * session: attributes are built here from those few fields only.
 */
import type { IncomingHttpHeaders } from 'node:http';
import {
  context,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Context,
  type Span,
  type TextMapGetter,
  type Tracer,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';

export type Attributes = Record<string, string | number | boolean>;

let tracer: Tracer | undefined;
let provider: BasicTracerProvider | undefined;
let contextManager: AsyncLocalStorageContextManager | undefined;
const propagator = new W3CTraceContextPropagator();

const headerGetter: TextMapGetter<IncomingHttpHeaders> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key],
};

/** Whether the environment asks for traces. */
export function tracingConfigured(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false;
  if (env.OTEL_TRACES_EXPORTER?.split(',').some((name) => name.trim() === 'none')) return false;
  return Boolean(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT);
}

export function tracingOn(): boolean {
  return tracer !== undefined;
}

/**
 * Starts the SDK once per process when the environment asks for it; true when tracing is on.
 * `instanceId` becomes `service.instance.id` (the same value as the log lines' `instance`).
 */
export function startTracing(options: { instanceId: string; env?: NodeJS.ProcessEnv }): boolean {
  if (tracer) return true;
  if (!tracingConfigured(options.env)) return false;
  const resource = defaultResource()
    .merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: 'bff-gateway', 'service.instance.id': options.instanceId }))
    // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over the defaults above.
    .merge(detectResources({ detectors: [envDetector] }));
  provider = new BasicTracerProvider({ resource, spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())] });
  contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  tracer = provider.getTracer('bff-gateway');
  return true;
}

/** Exports what is buffered and stops tracing (at shutdown). */
export async function stopTracing(): Promise<void> {
  const stopping = provider;
  tracer = undefined;
  provider = undefined;
  if (contextManager) {
    context.disable();
    contextManager = undefined;
  }
  await stopping?.shutdown().catch(() => {});
}

/** Exports buffered spans now (tests, shutdown). */
export async function flushTracing(): Promise<void> {
  await provider?.forceFlush();
}

function failed(span: Span, err: unknown): void {
  const code = (err as { code?: unknown } | undefined)?.code;
  span.setStatus({ code: SpanStatusCode.ERROR, message: typeof code === 'string' ? code : 'error' });
  if (typeof code === 'string') span.setAttribute('error.type', code);
}

/**
 * Runs `fn` inside a child span of the current one (or alone when tracing is off). `outcome`
 * names the result in attributes (a refresh's result, say).
 */
export async function inSpan<T>(
  name: string,
  attributes: Attributes,
  fn: () => Promise<T>,
  outcome?: (result: T) => Attributes,
): Promise<T> {
  if (!tracer) return fn();
  const span = tracer.startSpan(name, { attributes });
  try {
    const result = await context.with(trace.setSpan(context.active(), span), fn);
    if (outcome) span.setAttributes(outcome(result));
    return result;
  } catch (err) {
    failed(span, err);
    throw err;
  } finally {
    span.end();
  }
}

/** The span of one incoming request; undefined while tracing is off. */
export interface ServerTrace {
  span: Span;
  context: Context;
  method: string;
}

/**
 * Starts the span of an incoming request. The caller's `traceparent` is its parent only when it
 * came through a trusted front; otherwise the request starts a new trace.
 */
export function startServerSpan(method: string, url: string, headers: IncomingHttpHeaders, trustProxy: boolean): ServerTrace | undefined {
  if (!tracer) return undefined;
  // Never the query: codes, states and hand-offs travel there.
  const path = url.split('?')[0] ?? '/';
  const parent = trustProxy ? propagator.extract(ROOT_CONTEXT, headers, headerGetter) : ROOT_CONTEXT;
  const span = tracer.startSpan(method, { kind: SpanKind.SERVER, attributes: { 'http.request.method': method, 'url.path': path } }, parent);
  return { span, context: trace.setSpan(parent, span), method };
}

/** Runs `fn` (the request's handling) with the request's span as the current one. */
export function withServerSpan<T>(serverTrace: ServerTrace | undefined, fn: () => T): T {
  return serverTrace ? context.with(serverTrace.context, fn) : fn();
}

/** Ends the request's span: named after the route pattern (low cardinality), with the status. */
export function endServerSpan(serverTrace: ServerTrace | undefined, route: string | undefined, status: number): void {
  if (!serverTrace) return;
  const { span, method } = serverTrace;
  if (route) {
    span.setAttribute('http.route', route);
    span.updateName(`${method} ${route}`);
  }
  span.setAttribute('http.response.status_code', status);
  if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
  span.end();
}

/**
 * Starts the span of an outgoing call (upstream hop, IdP) under the current span and writes its
 * `traceparent` (and `tracestate`) into `headers`. Undefined while tracing is off.
 */
export function startClientSpan(name: string, method: string, url: URL, headers: Record<string, string | string[]>): Span | undefined {
  if (!tracer) return undefined;
  const attributes = {
    'http.request.method': method,
    'server.address': url.hostname,
    'server.port': Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
    'url.path': url.pathname,
  };
  const span = tracer.startSpan(name, { kind: SpanKind.CLIENT, attributes });
  propagator.inject(trace.setSpan(context.active(), span), headers, { set: (carrier, key, value) => (carrier[key] = value) });
  return span;
}

/** Ends an outgoing call's span with the answer's status, or the failure. */
export function endClientSpan(span: Span | undefined, status: number | undefined, err?: unknown): void {
  if (!span) return;
  if (status !== undefined) {
    span.setAttribute('http.response.status_code', status);
    if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
  }
  if (err !== undefined) failed(span, err);
  span.end();
}

/** A `fetch` for openid-client whose calls are client spans carrying `traceparent` to the IdP. */
export function tracedFetch(url: string, options: { method?: string; headers?: HeadersInit }): Promise<Response> {
  if (!tracer) return fetch(url, options as RequestInit);
  const target = new URL(url);
  const method = options.method ?? 'GET';
  const carrier: Record<string, string> = {};
  const span = startClientSpan(`idp ${method} ${target.pathname}`, method, target, carrier);
  const headers = new Headers(options.headers);
  for (const [name, value] of Object.entries(carrier)) headers.set(name, value);
  return fetch(url, { ...options, headers } as RequestInit).then(
    (response) => {
      endClientSpan(span, response.status);
      return response;
    },
    (err: unknown) => {
      endClientSpan(span, undefined, err);
      throw err;
    },
  );
}
