/**
 * One error for every failed call to the identity provider, classified once, here, where the
 * OIDC library's error types are known. Callers decide what a kind means for them (end the
 * session, keep it, answer 503) and never look at the library's errors themselves.
 *
 * Kinds:
 * - `rejected`: the IdP said no. Any 4xx except 408 and 429, with or without a JSON body (some
 *   IdPs send a bare 400). `error` carries the OAuth error code (`invalid_grant`; `http_400`
 *   for a body without one).
 * - `invalid`: the IdP answered, but the answer failed validation (ID token signature or
 *   claims, issuer, a malformed response). Never use it.
 * - `unavailable`: no usable answer right now: network failure, timeout, 5xx, and 408 (request
 *   timeout) and 429 (too many requests), which RFC 9110 section 15.5.9 and RFC 6585 section 4
 *   define as "try again later", not as a refusal. `retryAfterMs` holds the IdP's `Retry-After`
 *   (RFC 9110 section 10.2.3: seconds or an HTTP-date), bounded by MAX_RETRY_AFTER_MS.
 *
 * Classification looks at statuses, OAuth error codes and library error codes, never at
 * message text.
 */
import { ResponseBodyError, WWWAuthenticateChallengeError } from 'openid-client';

export type IdpErrorKind = 'rejected' | 'invalid' | 'unavailable';

/**
 * The longest `Retry-After` honoured. An IdP (or a proxy in front of it) asking for an hour
 * would otherwise keep a session from refreshing long after the IdP is back.
 */
export const MAX_RETRY_AFTER_MS = 60_000;

export class IdpError extends Error {
  readonly kind: IdpErrorKind;
  /** The OAuth error code of a `rejected` answer. */
  readonly error: string | undefined;
  /** How long the IdP asked us to wait before the next attempt (`unavailable` only). */
  readonly retryAfterMs: number | undefined;

  constructor(kind: IdpErrorKind, detail: string, options: { error?: string; retryAfterMs?: number; cause?: unknown } = {}) {
    super(detail, { cause: options.cause });
    this.name = 'IdpError';
    this.kind = kind;
    this.error = options.error;
    this.retryAfterMs = options.retryAfterMs;
  }

  /** What went wrong, for a log line: the OAuth error code when the IdP refused, else the detail. */
  get reason(): string {
    return this.error ?? this.message;
  }
}

/** The ID token's signature does not verify against the IdP's keys (or its algorithm is refused). */
export class InvalidIdTokenSignature extends Error {
  constructor(detail: string, options?: { cause?: unknown }) {
    super(`ID token signature: ${detail}`, options);
    this.name = 'InvalidIdTokenSignature';
  }
}

/** Statuses that mean "not now" rather than "no" (RFC 9110 section 15.5.9, RFC 6585 section 4). */
const RETRYABLE_4XX = new Set([408, 429]);
/** openid-client's own timeout and an aborted fetch: no answer, not a bad answer. */
const TRANSIENT_CODES = new Set(['OAUTH_TIMEOUT', 'OAUTH_ABORT']);

/**
 * `Retry-After` as milliseconds from `now`: delay-seconds or an HTTP-date, clamped to
 * [0, MAX_RETRY_AFTER_MS]; undefined when absent or unparsable.
 */
export function parseRetryAfter(value: string | null | undefined, now: number): number | undefined {
  const text = value?.trim();
  if (!text) return undefined;
  let ms: number;
  if (/^\d+$/.test(text)) ms = Number(text) * 1000;
  else {
    // Every HTTP-date form begins with a day name; Date.parse alone would take "-5" for a year.
    const date = /^[A-Za-z]{3}/.test(text) ? Date.parse(text) : Number.NaN;
    if (Number.isNaN(date)) return undefined;
    ms = date - now;
  }
  return Math.min(Math.max(0, ms), MAX_RETRY_AFTER_MS);
}

function fromStatus(status: number, oauthError: string | undefined, response: Response | undefined, now: number, cause: unknown): IdpError {
  if (status >= 400 && status < 500 && !RETRYABLE_4XX.has(status)) {
    const error = oauthError || `http_${status}`;
    return new IdpError('rejected', `HTTP ${status} ${error}`, { error, cause });
  }
  const retryAfterMs = parseRetryAfter(response?.headers.get('retry-after'), now);
  return new IdpError('unavailable', `HTTP ${status}${oauthError ? ` ${oauthError}` : ''}`, { retryAfterMs, cause });
}

/** Any failure of a call to the IdP, as an IdpError. */
export function classifyIdpFailure(err: unknown, now: number = Date.now()): IdpError {
  if (err instanceof IdpError) return err;
  if (err instanceof ResponseBodyError) return fromStatus(err.status, err.error, err.response, now, err);
  if (err instanceof WWWAuthenticateChallengeError) return fromStatus(err.status, undefined, err.response, now, err);
  const cause = (err as { cause?: unknown } | undefined)?.cause;
  // A 4xx/5xx without a JSON body: openid-client reports the Response as the cause.
  if (cause instanceof Response) return fromStatus(cause.status, undefined, cause, now, err);
  if (err instanceof InvalidIdTokenSignature) return new IdpError('invalid', err.message, { cause: err });
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string') {
    if (TRANSIENT_CODES.has(code)) return new IdpError('unavailable', code, { cause: err });
    if (code.startsWith('OAUTH_')) return new IdpError('invalid', code, { cause: err });
  }
  const name = err instanceof Error ? err.name : 'error';
  return new IdpError('unavailable', typeof code === 'string' ? code : name, { cause: err });
}
