import { createServer, request, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, test } from 'vitest';
import {
  causeOf,
  ERROR_HEADERS,
  ERRORS,
  errorBody,
  errorDetail,
  errorLogFields,
  GatewayError,
  isGatewayError,
  writeRawError,
} from '../../src/errors.ts';

/** Every code with its status (docs/http-interface.md#errors). */
const CONTRACT: Record<string, number> = {
  unauthenticated: 401,
  session_expired: 401,
  step_up_required: 401,
  csrf_required: 403,
  forbidden: 403,
  invalid_return_to: 400,
  login_failed: 400,
  invalid_request: 400,
  not_found: 404,
  payload_too_large: 413,
  bad_gateway: 502,
  gateway_timeout: 504,
  idp_unavailable: 503,
  session_store_unavailable: 503,
  request_timeout: 408,
  expectation_failed: 417,
  too_many_requests: 429,
  shutting_down: 503,
};

describe('error registry', () => {
  test.each(Object.entries(CONTRACT))('%s is %i', (code, status) => {
    expect(ERRORS[code as keyof typeof ERRORS]?.status).toBe(status);
    const err = new GatewayError(code as keyof typeof ERRORS);
    expect(err.status).toBe(status);
    expect(err.code).toBe(code);
  });

  test('every registered code has a 4xx/5xx status and a human message', () => {
    for (const [code, entry] of Object.entries(ERRORS)) {
      expect(code).toMatch(/^[a-z_]+$/);
      expect(entry.status).toBeGreaterThanOrEqual(400);
      expect(entry.status).toBeLessThan(600);
      expect(entry.message.length).toBeGreaterThan(5);
    }
  });

  test('private detail stays out of the public message and the body', () => {
    const err = new GatewayError('bad_gateway', { detail: 'ECONNREFUSED 10.0.0.5:3000 token=abc' });
    expect(err.detail).toContain('ECONNREFUSED');
    expect(err.message).toBe(ERRORS.bad_gateway.message);
    expect(errorBody(err.code, err.message)).not.toContain('ECONNREFUSED');
    expect(isGatewayError(err)).toBe(true);
    expect(isGatewayError(new Error('x'))).toBe(false);
  });

  test('a serializer that knows nothing of the gateway sees the public body only', () => {
    const err = new GatewayError('session_store_unavailable', {
      detail: 'redis: Connection is closed.',
      cause: new Error('Connection is closed.'),
    });
    expect(JSON.parse(JSON.stringify(err))).toEqual({
      error: 'session_store_unavailable',
      message: ERRORS.session_store_unavailable.message,
    });
    expect(JSON.stringify({ wrapped: err })).not.toContain('Connection is closed');
    expect(String(err)).not.toContain('Connection is closed');
    // fastify's default error serializer reads `message` (and `code`, `statusCode`) off the error.
    expect(err.message).not.toContain('Connection is closed');
  });

  test('public fields (step_up_required loginUrl) follow error and message in every serialisation', () => {
    const err = new GatewayError('step_up_required', {
      detail: 'route /pay',
      fields: { loginUrl: '/auth/login?returnTo=%2Fpay&acr_values=mfa' },
    });
    const expected = `{"error":"step_up_required","message":"${ERRORS.step_up_required.message}","loginUrl":"/auth/login?returnTo=%2Fpay&acr_values=mfa"}`;
    expect(JSON.stringify(err)).toBe(expected);
    expect(errorBody(err.code, err.message, err.fields)).toBe(expected);
    expect(expected).not.toContain('route /pay');
  });

  test('a custom public message replaces the registry one; detail defaults to the code', () => {
    const err = new GatewayError('invalid_request', { message: 'The logout token is not valid.' });
    expect(err.message).toBe('The logout token is not valid.');
    expect(err.detail).toBe('invalid_request');
  });

  test('errorDetail reads the private side of any error', () => {
    expect(errorDetail(new GatewayError('bad_gateway', { detail: 'upstream http://10.0.0.5: ECONNRESET' }))).toBe(
      'upstream http://10.0.0.5: ECONNRESET',
    );
    expect(errorDetail(new Error('plain'))).toBe('plain');
    expect(errorDetail('text')).toBe('text');
  });

  test('log fields carry the first system error code of the cause chain, and nothing else of the cause', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED', response: { body: 'secret' } });
    const wrapped = new Error('wrapper', { cause: refused });
    const error = new GatewayError('session_store_unavailable', { detail: 'redis: connect ECONNREFUSED', cause: wrapped });
    expect(causeOf(error)).toEqual({ type: 'Error', code: 'ECONNREFUSED' });
    expect(errorLogFields(error)).toEqual({
      code: 'session_store_unavailable',
      detail: 'redis: connect ECONNREFUSED',
      err: { type: 'Error', code: 'ECONNREFUSED' },
    });
    expect(errorLogFields(new GatewayError('not_found'))).toEqual({ code: 'not_found', detail: 'not_found' });
  });

  test('the body is exactly {"error", "message"}', () => {
    expect(JSON.parse(errorBody('not_found'))).toEqual({ error: 'not_found', message: ERRORS.not_found.message });
    expect(JSON.parse(errorBody('login_failed', 'access_denied'))).toEqual({ error: 'login_failed', message: 'access_denied' });
  });
});

describe('writeRawError', () => {
  async function serve(
    handler: (res: ServerResponse) => void,
  ): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
    const server = createServer((_req, res) => handler(res));
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    try {
      const { port } = server.address() as AddressInfo;
      return await new Promise((done, fail) => {
        request({ host: '127.0.0.1', port, agent: false }, (res) => {
          let body = '';
          res.on('data', (chunk: Buffer) => (body += chunk.toString()));
          res.on('end', () => done({ status: res.statusCode ?? 0, headers: res.headers, body }));
        })
          .once('error', fail)
          .end();
      });
    } finally {
      server.close();
    }
  }

  test('writes status, JSON body, no-store and a matching content-length', async () => {
    const answer = await serve((res) => writeRawError(res, new GatewayError('gateway_timeout'), { 'x-extra': '1' }));
    expect(answer.status).toBe(504);
    expect(answer.headers).toMatchObject({ ...ERROR_HEADERS, 'x-extra': '1', 'content-length': String(Buffer.byteLength(answer.body)) });
    expect(JSON.parse(answer.body)).toEqual({ error: 'gateway_timeout', message: ERRORS.gateway_timeout.message });
  });

  test('does nothing once headers went out', async () => {
    let wrote: boolean | undefined;
    const answer = await serve((res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      wrote = writeRawError(res, new GatewayError('bad_gateway'));
      res.end('partial');
    });
    expect(wrote).toBe(false);
    expect(answer).toMatchObject({ status: 200, body: 'partial' });
  });
});
