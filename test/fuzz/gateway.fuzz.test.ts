/**
 * Property-based fuzzing of a running gateway (real IdP, real upstream, real sockets).
 * Requests are written as raw bytes, so malformed request lines, hostile cookies and odd
 * header values reach the gateway exactly as an attacker would send them. Properties:
 *   - input never causes a 5xx (the upstream here always answers 200, so any 5xx is ours);
 *   - no response, header or body, ever contains one of the session's tokens — the upstream
 *     echoes everything it receives, including the Authorization header the gateway adds;
 *   - the gateway still serves a normal request afterwards.
 * `npm test` runs a short budget; `npm run fuzz` (FUZZ_RUNS=2000) a long one.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { login } from '../support/login.ts';
import { apiHeaders, startWorld, type World } from '../support/world.ts';
import { rawRequest, type RawResponse } from './raw-http.ts';

const RUNS = Number(process.env.FUZZ_RUNS ?? 60);

let world: World;
let echo: Server;
let cookieHeader: string;
let tokens: string[];
let port: number;

beforeAll(async () => {
  // An upstream that reflects the whole request back, so any token the gateway forwards
  // would come straight back unless the response path scrubs it.
  echo = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = JSON.stringify({ url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString('latin1') });
      res.writeHead(200, { 'content-type': 'application/json', 'x-echo-auth': req.headers.authorization ?? '' });
      res.end(body);
    });
  });
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
  const echoUrl = `http://127.0.0.1:${(echo.address() as AddressInfo).port}`;
  world = await startWorld({
    config: {
      routes: [
        { path: '/api', upstream: echoUrl, token: 'user' },
        { path: '/maybe', upstream: echoUrl, token: 'optional' },
        { path: '/', upstream: echoUrl, token: 'none' },
      ],
    },
  });
  port = world.gateway.port;
  const session = await login(world.url);
  cookieHeader = session.cookieHeader;
  const probe = await fetch(`${world.url}/api/probe`, { headers: apiHeaders(cookieHeader) });
  expect(probe.status).toBe(200);
  const record = (await world.gateway.gateway.services.sessions.load(cookieHeader.split('=')[1]?.split('.')[0] ?? '')) as {
    state: string;
    record?: { tokens: Record<string, unknown> };
  };
  expect(record.state).toBe('active');
  tokens = Object.values(record.record?.tokens ?? {}).filter((value): value is string => typeof value === 'string' && value.length > 20);
  expect(tokens.length).toBeGreaterThanOrEqual(2);
}, 60_000);

afterAll(async () => {
  await world?.close();
  await new Promise((resolve) => echo?.close(resolve));
});

function assertSafe(response: RawResponse): void {
  expect(response.status, response.raw.slice(0, 300)).toBeLessThan(500);
  for (const token of tokens) expect(response.raw.includes(token)).toBe(false);
}

/** Path characters an attacker would try: separators, encodings, dots, controls, unicode. */
const pathPiece = fc.oneof(
  fc.constantFrom(
    '/',
    '//',
    '/..',
    '/.',
    '%2e',
    '%2E%2e',
    '%2f',
    '%5c',
    '\\',
    ';',
    '%00',
    '%252e',
    '@',
    '?',
    '#',
    '%',
    '%zz',
    'api',
    'maybe',
    'auth',
    'login',
    'callback',
    'user',
    '..;',
    '~',
    '%u002e',
    '\u2215',
    '\uff0f',
  ),
  fc.string({ maxLength: 6 }),
);
const path = fc.array(pathPiece, { maxLength: 8 }).map((parts) => `/${parts.join('')}`.replace(/[\s\r\n]/g, '_'));
const headerValue = fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('1', '0', 'null', 'https://evil.example', '', 'Bearer x'));
const cookie = fc.oneof(
  fc.constant<string | undefined>(undefined),
  fc.constant('VALID'),
  fc.string({ maxLength: 120 }),
  fc.constantFrom('bff-session=', 'bff-session=a.b', 'bff-session="', ';;;;', 'bff-session=VALID; bff-session=x', '=', '\u00ff\u00fe'),
);

function cookieFor(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  return value.replace('VALID', cookieHeader).replace(/[\r\n]/g, '');
}

describe('fuzz: the gateway under hostile input', () => {
  test('paths, methods, cookies and headers never cause a 5xx or leak a token', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'TRACE', 'PROPFIND', 'get'),
        fc.constantFrom('/api', '/maybe', '', '/auth'),
        path,
        cookie,
        fc.record({
          csrf: fc.option(headerValue),
          origin: fc.option(headerValue),
          authorization: fc.option(headerValue),
          forwarded: fc.option(headerValue),
        }),
        async (method, prefix, tail, cookieValue, extra) => {
          const headers: Record<string, string> = {};
          const cookieLine = cookieFor(cookieValue);
          if (cookieLine !== undefined) headers.cookie = cookieLine;
          if (extra.csrf !== null) headers['x-csrf'] = extra.csrf;
          if (extra.origin !== null) headers.origin = extra.origin;
          if (extra.authorization !== null) headers.authorization = extra.authorization;
          if (extra.forwarded !== null) headers['x-forwarded-host'] = extra.forwarded;
          assertSafe(await rawRequest(port, method, `${prefix}${tail}`, headers));
        },
      ),
      { numRuns: RUNS },
    );
  });

  test('an authenticated session never sees its tokens, whatever it asks the upstream to echo', async () => {
    await fc.assert(
      fc.asyncProperty(path, fc.string({ maxLength: 200 }), async (tail, body) => {
        const response = await rawRequest(
          port,
          'POST',
          `/api${tail}`,
          { cookie: cookieHeader, 'x-csrf': '1', 'content-type': 'text/plain' },
          body,
        );
        assertSafe(response);
      }),
      { numRuns: RUNS },
    );
  });

  test('callback and login parameters never cause a 5xx', async () => {
    const param = fc.tuple(fc.constantFrom('code', 'state', 'iss', 'error', 'returnTo', 'sid', 'x'), fc.string({ maxLength: 30 }));
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('/auth/callback', '/auth/login', '/auth/logout', '/auth/user'),
        fc.array(param, { maxLength: 6 }),
        cookie,
        async (endpoint, params, cookieValue) => {
          const query = params.map(([name, value]) => `${name}=${encodeURIComponent(value)}`).join('&');
          const headers: Record<string, string> = { 'x-csrf': '1' };
          const cookieLine = cookieFor(cookieValue === 'VALID' ? undefined : cookieValue);
          if (cookieLine !== undefined) headers.cookie = cookieLine;
          const response = await rawRequest(port, 'GET', `${endpoint}?${query}`, headers);
          // The IdP is healthy, so even login (which needs it) must not fail with a 5xx.
          assertSafe(response);
        },
      ),
      { numRuns: RUNS },
    );
  });

  test('the gateway still serves normal traffic afterwards', async () => {
    const response = await fetch(`${world.url}/api/after`, { headers: apiHeaders(cookieHeader) });
    expect(response.status).toBe(200);
  });
});
