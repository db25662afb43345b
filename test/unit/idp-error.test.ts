/**
 * Classifying the IdP's failures once (src/oidc/idp-error.ts): by status, OAuth error code and
 * library error code, never by message text; 408 and 429 are "not now", not "no"; Retry-After
 * in both of its forms, bounded.
 */
import fc from 'fast-check';
import { ResponseBodyError } from 'openid-client';
import { expect, test } from 'vitest';
import { classifyIdpFailure, IdpError, InvalidIdTokenSignature, MAX_RETRY_AFTER_MS, parseRetryAfter } from '../../src/oidc/idp-error.ts';

const NOW = Date.UTC(2030, 0, 1, 12, 0, 0);

function oauthError(status: number, error: string, headers: Record<string, string> = {}): ResponseBodyError {
  const response = new Response(JSON.stringify({ error }), { status, headers: { 'content-type': 'application/json', ...headers } });
  return new ResponseBodyError('server responded with an error in the response body', { cause: { error }, response });
}

/** What openid-client throws for an error status without a JSON body: the Response as cause. */
function bareStatus(status: number, headers: Record<string, string> = {}): Error {
  return Object.assign(new Error('unexpected HTTP response status code'), {
    code: 'OAUTH_RESPONSE_IS_NOT_CONFORM',
    cause: new Response(null, { status, headers }),
  });
}

test.each([
  [oauthError(400, 'invalid_grant'), 'invalid_grant'],
  [oauthError(401, 'invalid_client'), 'invalid_client'],
  [oauthError(400, 'invalid_target'), 'invalid_target'],
  [bareStatus(400), 'http_400'],
  [bareStatus(403), 'http_403'],
])('a refusal is rejected with its OAuth code (%#)', (err, code) => {
  const failure = classifyIdpFailure(err, NOW);
  expect(failure).toBeInstanceOf(IdpError);
  expect(failure).toMatchObject({ kind: 'rejected', error: code, retryAfterMs: undefined });
  expect(failure.cause).toBe(err);
});

test.each([
  ['429 with an OAuth body', oauthError(429, 'slow_down')],
  ['429 bare', bareStatus(429)],
  ['408 bare', bareStatus(408)],
  ['500 with an OAuth body', oauthError(500, 'server_error')],
  ['503 bare', bareStatus(503)],
])('%s is unavailable, not a refusal', (_name, err) => {
  expect(classifyIdpFailure(err, NOW)).toMatchObject({ kind: 'unavailable', error: undefined });
});

test('Retry-After of a 429 or 503 is carried, in seconds or as an HTTP-date', () => {
  expect(classifyIdpFailure(bareStatus(429, { 'retry-after': '7' }), NOW).retryAfterMs).toBe(7_000);
  const date = new Date(NOW + 20_000).toUTCString();
  expect(classifyIdpFailure(oauthError(503, 'temporarily_unavailable', { 'retry-after': date }), NOW).retryAfterMs).toBe(20_000);
  expect(classifyIdpFailure(bareStatus(503), NOW).retryAfterMs).toBeUndefined();
});

test.each([
  ['its own timeout', 'unavailable', Object.assign(new Error('timed out'), { code: 'OAUTH_TIMEOUT' })],
  ['an aborted fetch', 'unavailable', Object.assign(new Error('aborted'), { code: 'OAUTH_ABORT' })],
  ['a network failure', 'unavailable', new TypeError('fetch failed')],
  ['a socket error code', 'unavailable', Object.assign(new Error('x'), { code: 'ECONNREFUSED' })],
  ['a claim check', 'invalid', Object.assign(new Error('unexpected JWT "aud"'), { code: 'OAUTH_JWT_CLAIM_COMPARISON_FAILED' })],
  ['a bad signature', 'invalid', new InvalidIdTokenSignature('ERR_JWS_SIGNATURE_VERIFICATION_FAILED')],
])('%s is %s', (_name, kind, err) => {
  expect(classifyIdpFailure(err, NOW).kind).toBe(kind);
});

test('message text plays no part: a network error that mentions invalid_grant is still unavailable', () => {
  expect(classifyIdpFailure(new TypeError('invalid_grant 400 refused'), NOW).kind).toBe('unavailable');
});

test('an IdpError passes through unchanged', () => {
  const err = new IdpError('rejected', 'HTTP 400 invalid_grant', { error: 'invalid_grant' });
  expect(classifyIdpFailure(err)).toBe(err);
});

// What the IdP said, parsed as it is: a past date is 0. The refresher never waits less than its
// own backoff for a still-valid token whatever this says (test/unit/token-refresher.test.ts).
test('parseRetryAfter: delay-seconds, HTTP-dates (past ones are 0), nonsense ignored', () => {
  expect(parseRetryAfter('0', NOW)).toBe(0);
  expect(parseRetryAfter(' 12 ', NOW)).toBe(12_000);
  expect(parseRetryAfter(new Date(NOW - 60_000).toUTCString(), NOW)).toBe(0);
  expect(parseRetryAfter('Sun, 06 Nov 1994 08:49:37 GMT', NOW)).toBe(0);
  for (const nonsense of [undefined, null, '', '-5', '1.5', 'soon', '10s']) expect(parseRetryAfter(nonsense, NOW)).toBeUndefined();
});

test('parseRetryAfter never waits longer than the bound, whatever the IdP says', () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.nat().map(String),
        fc.date().map((d) => (Number.isNaN(d.getTime()) ? 'x' : d.toUTCString())),
        fc.string(),
      ),
      (value) => {
        const ms = parseRetryAfter(value, NOW);
        return ms === undefined || (ms >= 0 && ms <= MAX_RETRY_AFTER_MS);
      },
    ),
  );
  expect(parseRetryAfter('86400', NOW)).toBe(MAX_RETRY_AFTER_MS);
});
