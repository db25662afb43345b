/**
 * Request ids (`X-Request-Id`): taken from a trusted front (`trustProxy`) when the value is safe
 * to log and forward, else made here. Safe: 1 to 128 characters of letters, digits and
 * `. _ : = + / -` — enough for UUIDs, ULIDs, hex trace ids and load balancers' own formats,
 * and nothing that could break a log line, a header or a query (no spaces, quotes, `;` or
 * control characters). A browser's own value is never taken: anyone could then make their
 * requests look like someone else's in the logs.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';

export const REQUEST_ID_HEADER = 'x-request-id';
const SAFE = /^[A-Za-z0-9._:=+/-]{1,128}$/;

export function isSafeRequestId(value: string): boolean {
  return SAFE.test(value);
}

/** The request's id: the trusted front's, when safe, or a new UUID. */
export function requestIdOf(headers: IncomingHttpHeaders, trustProxy: boolean): string {
  if (trustProxy) {
    const value = headers[REQUEST_ID_HEADER];
    // Node joins repeated X-Request-Id headers with ", ", which the charset refuses: a new id.
    if (typeof value === 'string' && SAFE.test(value)) return value;
  }
  return randomUUID();
}

const ASSIGNED = Symbol('bff.requestId');

/**
 * The id of `req`, decided once when it reaches the listener and answered to the browser on
 * every response (errors included): both doors (fastify and the proxy's raw one) read it here.
 */
export function assignRequestId(req: IncomingMessage, res: ServerResponse, trustProxy: boolean): string {
  const tagged = req as IncomingMessage & { [ASSIGNED]?: string };
  let id = tagged[ASSIGNED];
  if (id === undefined) {
    id = requestIdOf(req.headers, trustProxy);
    tagged[ASSIGNED] = id;
    res.setHeader(REQUEST_ID_HEADER, id);
  }
  return id;
}

/** The id `assignRequestId` gave `req`; a new one for requests that bypassed the listener (inject). */
export function requestIdFor(req: IncomingMessage, trustProxy: boolean): string {
  return (req as IncomingMessage & { [ASSIGNED]?: string })[ASSIGNED] ?? requestIdOf(req.headers, trustProxy);
}
