/**
 * W3C Trace Context headers on the hop to the upstream. A browser must not choose the trace an
 * upstream joins (it could attach its requests to someone else's trace, or flood a tracing
 * backend with sampled traces), so `traceparent` and `tracestate` pass only from a trusted
 * front (`trustProxy`); from anyone else they are dropped, tracing on or off. With tracing on
 * they are replaced by the upstream hop's own span context (tracing.ts).
 */
export const TRACE_HEADERS = ['traceparent', 'tracestate'] as const;

/** Removes client-sent trace headers unless they came through a trusted front. */
export function dropUntrustedTraceHeaders(headers: Record<string, string | string[]>, trustProxy: boolean): void {
  if (trustProxy) return;
  for (const name of TRACE_HEADERS) delete headers[name];
}
