/**
 * Error codes survive log redaction. Redaction names the paths that carry secrets (the
 * callback's `code` in query and form body, tokens, cookies, secrets); it must not censor
 * `err.code` (ECONNREFUSED: the field an operator searches for in an incident) nor the
 * gateway's own error `code`.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createLogger } from '../../src/log.ts';
import { freePort } from '../support/redis.ts';
import { logCapture, startWorld, type World } from '../support/world.ts';

describe('a refused upstream connection', () => {
  let world: World;

  beforeAll(async () => {
    const closedPort = await freePort();
    world = await startWorld({
      routes: (upstream) => [
        { path: '/down', upstream: `http://127.0.0.1:${closedPort}`, token: 'none' },
        { path: '/', upstream: upstream.url, token: 'none' },
      ],
    });
  });
  afterAll(() => world?.close());

  test('is logged with the gateway code and err.code ECONNREFUSED, uncensored', async () => {
    const res = await fetch(`${world.url}/down/orders`);
    expect(res.status).toBe(502);
    expect(((await res.json()) as { error: string }).error).toBe('bad_gateway');
    const failed = world.gateway.logs
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((entry) => entry.msg === 'proxy request failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ code: 'bad_gateway', route: '/down', err: { code: 'ECONNREFUSED' } });
  });
});

describe('redaction paths', () => {
  function logged(fields: Record<string, unknown>): Record<string, unknown> {
    const capture = logCapture();
    createLogger({ level: 'info', destination: capture.stream }).info(fields, 'line');
    return JSON.parse(capture.lines[0] as string) as Record<string, unknown>;
  }

  test('error codes at any level are kept', () => {
    const entry = logged({
      code: 'session_store_unavailable',
      err: { type: 'Error', code: 'ECONNREFUSED' },
      upstream: { code: 'ETIMEDOUT' },
    });
    expect(entry).toMatchObject({ code: 'session_store_unavailable', err: { code: 'ECONNREFUSED' }, upstream: { code: 'ETIMEDOUT' } });
  });

  test('an Error object logged as err keeps its code', () => {
    const entry = logged({ err: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' }) });
    expect(entry.err).toMatchObject({ code: 'ECONNREFUSED', message: 'connect ECONNREFUSED 127.0.0.1:6379' });
  });

  test('the callback’s authorization code, tokens, cookies and secrets are censored', () => {
    const entry = logged({
      query: { code: 'auth-code-1', state: 's' },
      body: { code: 'auth-code-2' },
      req: {
        query: { code: 'auth-code-3' },
        body: { code: 'auth-code-4' },
        headers: { cookie: 'bff-session=x', authorization: 'Bearer t' },
      },
      headers: { 'set-cookie': 'bff-session=y', 'proxy-authorization': 'Basic z' },
      tokens: { accessToken: 'at', refresh_token: 'rt', id_token: 'it' },
      accessToken: 'at2',
      oidc: { clientSecret: 'cs', privateKey: 'pk' },
      session: { secret: 'ss', encryptionKey: 'ek' },
      logout_token: 'lt',
    });
    const text = JSON.stringify(entry);
    for (const secret of [
      'auth-code-1',
      'auth-code-2',
      'auth-code-3',
      'auth-code-4',
      'bff-session=x',
      'Bearer t',
      'bff-session=y',
      'Basic z',
      '"at"',
      '"rt"',
      '"it"',
      'at2',
      '"cs"',
      '"pk"',
      '"ss"',
      '"ek"',
      '"lt"',
    ]) {
      expect(text).not.toContain(secret);
    }
    expect(entry).toMatchObject({ query: { code: '[redacted]', state: 's' }, body: { code: '[redacted]' } });
  });
});
