/**
 * The one registry of the gateway's error codes. Every error a client can see is one of these:
 * a stable code, a status, and a public message. Private detail goes to the log only, never
 * into a response: `GatewayError.message` IS the public message, so even a serializer that
 * knows nothing about the gateway (fastify's default, `JSON.stringify`) cannot leak the detail.
 * How fastify listeners answer these errors is in listener/error-handlers.ts.
 */
import type { ServerResponse } from 'node:http';

export const ERRORS = {
  unauthenticated: { status: 401, message: 'No valid session: log in first.' },
  step_up_required: { status: 401, message: 'This needs a stronger or more recent login: log in again with loginUrl.' },
  session_expired: { status: 401, message: 'The session has ended: log in again.' },
  csrf_required: { status: 403, message: 'This request needs the anti-forgery header and a same-origin Origin.' },
  forbidden: { status: 403, message: 'You are not allowed to use this route.' },
  invalid_return_to: { status: 400, message: 'returnTo must be a same-origin relative path.' },
  login_failed: { status: 400, message: 'The login could not be completed.' },
  invalid_request: { status: 400, message: 'The request is malformed.' },
  not_found: { status: 404, message: 'No route matches this path.' },
  method_not_allowed: { status: 405, message: 'This method is not allowed here.' },
  request_timeout: { status: 408, message: 'The request did not arrive in time.' },
  payload_too_large: { status: 413, message: 'The request body is too large.' },
  uri_too_long: { status: 414, message: 'The request URL is too long.' },
  expectation_failed: {
    status: 417,
    message: 'The Expect header asks for something the gateway does not do; only 100-continue is supported.',
  },
  too_many_requests: { status: 429, message: 'Too many requests in flight from this client; try again shortly.' },
  headers_too_large: { status: 431, message: 'The request headers are too large.' },
  bad_gateway: { status: 502, message: 'The upstream service could not be reached.' },
  gateway_timeout: { status: 504, message: 'The upstream service did not answer in time.' },
  idp_unavailable: { status: 503, message: 'The identity provider is unavailable; try again shortly.' },
  session_store_unavailable: { status: 503, message: 'The session store is unavailable; try again shortly.' },
  shutting_down: { status: 503, message: 'The gateway is shutting down; try again.' },
  internal_error: { status: 500, message: 'Something went wrong in the gateway.' },
} as const;

export type ErrorCode = keyof typeof ERRORS;

/**
 * An error the gateway answers with its code. `message` is what the client reads; `detail`
 * (what actually went wrong: hosts, Redis replies, IdP answers) is for the log only.
 */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly detail: string;
  /** Public fields added to the body after `error` and `message` (step_up_required's `loginUrl`). */
  readonly fields: Readonly<Record<string, string>> | undefined;
  constructor(code: ErrorCode, options: { message?: string; detail?: string; cause?: unknown; fields?: Record<string, string> } = {}) {
    super(options.message ?? ERRORS[code].message, { cause: options.cause });
    this.name = 'GatewayError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.detail = options.detail ?? code;
    this.fields = options.fields;
  }

  /** What `JSON.stringify` (and any serializer built on it) sees: the public body only. */
  toJSON(): { error: ErrorCode; message: string } & Record<string, string> {
    return { error: this.code, message: this.message, ...this.fields };
  }
}

export function isGatewayError(err: unknown): err is GatewayError {
  return err instanceof GatewayError;
}

/** On every response the gateway itself writes (never added to upstream responses). */
export const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'content-security-policy': "frame-ancestors 'none'",
  'x-frame-options': 'DENY',
} as const;

/** Headers every gateway-authored error carries. */
export const ERROR_HEADERS = {
  'content-type': 'application/json; charset=utf-8',
  'cache-control': 'no-store',
  ...SECURITY_HEADERS,
} as const;

export function errorBody(code: ErrorCode, message?: string, fields?: Readonly<Record<string, string>>): string {
  return JSON.stringify({ error: code, message: message ?? ERRORS[code].message, ...fields });
}

const ANSWERED = Symbol('bff.errorCode');

/**
 * Notes on a response that it carries the gateway error `code` (both writers of error answers
 * do: `writeRawError` and the fastify listeners' `sendError`), for the `bff_errors_total`
 * metric counted when the response finishes.
 */
export function markErrorAnswer(res: ServerResponse, code: ErrorCode): void {
  (res as ServerResponse & { [ANSWERED]?: ErrorCode })[ANSWERED] = code;
}

/** The gateway error code `res` was answered with; undefined for any other answer (the upstream's included). */
export function errorAnswerOf(res: ServerResponse): ErrorCode | undefined {
  return (res as ServerResponse & { [ANSWERED]?: ErrorCode })[ANSWERED];
}

/**
 * Writes an error straight to a raw response: used where fastify's reply is hijacked (the
 * proxy). Does nothing if headers already went out; the caller then destroys the socket.
 */
export function writeRawError(res: ServerResponse, err: GatewayError, extraHeaders: Record<string, string | string[]> = {}): boolean {
  if (res.headersSent || res.destroyed) return false;
  markErrorAnswer(res, err.code);
  const body = errorBody(err.code, err.message, err.fields);
  res.writeHead(err.status, { ...ERROR_HEADERS, ...extraHeaders, 'content-length': Buffer.byteLength(body) });
  res.end(body);
  return true;
}

/**
 * A complete HTTP/1.1 error response as bytes, for places with a socket but no response
 * object: refused WebSocket upgrades and requests the HTTP parser rejected. Always closes.
 */
export function rawHttpError(err: GatewayError): string {
  const body = errorBody(err.code, err.message, err.fields);
  const headers = Object.entries(ERROR_HEADERS)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  const reason = err.code.replace(/_/g, ' ');
  return `HTTP/1.1 ${err.status} ${reason}\r\n${headers}content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
}

/** The private side of any error, for log lines: a GatewayError's detail, else its message. */
export function errorDetail(err: unknown): string {
  if (isGatewayError(err)) return err.detail;
  return err instanceof Error ? err.message : String(err);
}

/**
 * The first system-level code (`ECONNREFUSED`, `ETIMEDOUT`, `UND_ERR_SOCKET`...) in an error's
 * cause chain, with the type that carried it: the field operators search for in Redis and IdP
 * incidents. Only name and code: a cause's other fields (responses, claims) stay out of logs.
 */
export function causeOf(err: GatewayError): { type: string; code: string } | undefined {
  let current: unknown = err.cause;
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    const code = (current as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && code.length > 0) return { type: current.name, code };
    current = current.cause;
  }
  return undefined;
}

/** The fields every log line about an answered error carries. */
export function errorLogFields(error: GatewayError): { code: ErrorCode; detail: string; err?: { type: string; code: string } } {
  const cause = causeOf(error);
  return cause ? { code: error.code, detail: error.detail, err: cause } : { code: error.code, detail: error.detail };
}
