/**
 * The proxy pipeline's telemetry steps (src/proxy/pipeline.ts). The request id always goes
 * upstream; the upstream hop's span (with its `traceparent`) exists only while tracing is on —
 * the step is then not even registered, so it costs nothing when off.
 */
import type { Span } from '@opentelemetry/api';
import type { ProxyExchange, ProxyStep } from '../proxy/pipeline.ts';
import { REQUEST_ID_HEADER } from './request-id.ts';
import { endClientSpan, startClientSpan } from './tracing.ts';

/** Sends the request's id upstream, replacing whatever the client sent under that name. */
export const requestIdStep: ProxyStep = {
  name: 'request-id',
  onRoute(exchange) {
    exchange.upstreamHeaders[REQUEST_ID_HEADER] = exchange.id;
  },
};

const ROUTE = Symbol('bff.tracedRoute');

/** The matched route of a traced request (names its server span). */
export function tracedRouteOf(req: object): string | undefined {
  return (req as { [ROUTE]?: string })[ROUTE];
}

/** One CLIENT span for the hop to the upstream, `traceparent` and `tracestate` from it. */
export function upstreamSpanStep(): ProxyStep {
  const spans = new WeakMap<ProxyExchange, Span>();
  return {
    name: 'upstream-span',
    onRoute(exchange) {
      (exchange.req as { [ROUTE]?: string })[ROUTE] = exchange.route?.path;
    },
    onCredentials(exchange) {
      const upstream = exchange.route?.upstream;
      if (!upstream) return;
      const span = startClientSpan(`upstream ${exchange.req.method}`, exchange.req.method ?? 'GET', upstream, exchange.upstreamHeaders);
      if (span) spans.set(exchange, span);
    },
    onDone(exchange) {
      const span = spans.get(exchange);
      if (!span) return;
      spans.delete(exchange);
      endClientSpan(span, exchange.error ? exchange.error.status : exchange.res.statusCode, exchange.error);
    },
  };
}
