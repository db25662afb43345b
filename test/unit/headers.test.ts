import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { describe, expect, test } from 'vitest';
import {
  browserResponseHeaders,
  exchangeHeaders,
  TOKEN_RESPONSE_HEADERS,
  upstreamRequestHeaders,
  type RequestHeaderOptions,
} from '../../src/proxy/headers.ts';

const GATEWAY_COOKIES = new Set(['__Host-Http-bff-session', '__Host-bff-login']);
const ACCESS = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln';
const REFRESH = 'refresh-0123456789abcdef';

function request(headers: IncomingHttpHeaders, options: Partial<RequestHeaderOptions> = {}) {
  return upstreamRequestHeaders(headers, {
    trustProxy: false,
    removeCookies: GATEWAY_COOKIES,
    remoteAddress: '203.0.113.7',
    publicUrl: new URL('https://app.example.com'),
    tokenRoute: true,
    ...options,
  });
}

function response(headers: IncomingHttpHeaders, options: { dropNames?: string[]; tokens?: string[] } = {}) {
  return browserResponseHeaders(headers, {
    dropNames: new Set([...TOKEN_RESPONSE_HEADERS, ...(options.dropNames ?? [])]),
    gatewayCookies: GATEWAY_COOKIES,
    tokens: options.tokens ?? [],
  });
}

const HOP_BY_HOP = {
  connection: 'keep-alive',
  'keep-alive': 'timeout=5',
  'proxy-connection': 'keep-alive',
  'transfer-encoding': 'chunked',
  te: 'trailers',
  trailer: 'x-t',
  upgrade: 'h2c',
  'proxy-authorization': 'Basic eDp5',
};

describe('request headers', () => {
  test('hop-by-hop headers and those nominated by Connection are removed', () => {
    const out = request({
      ...HOP_BY_HOP,
      connection: 'keep-alive, X-Secret-Hop, x-other',
      'x-secret-hop': '1',
      'x-other': '2',
      accept: 'text/html',
    });
    for (const name of [...Object.keys(HOP_BY_HOP), 'x-secret-hop', 'x-other']) expect(out).not.toHaveProperty(name);
    expect(out.accept).toBe('text/html');
  });

  test('a WebSocket upgrade keeps Upgrade (which Connection nominates) and a bare Connection: Upgrade', () => {
    const out = request(
      { connection: 'keep-alive, Upgrade, x-hop', upgrade: 'websocket', 'x-hop': '1', 'sec-websocket-key': 'k' },
      { keepUpgrade: true },
    );
    expect(out).toMatchObject({ connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': 'k' });
    expect(out).not.toHaveProperty('x-hop');
    expect(request({ connection: 'Upgrade', upgrade: 'websocket' })).not.toHaveProperty('upgrade');
  });

  test('without trustProxy, forwarding headers come from publicUrl and the peer, never from the client', () => {
    const out = request({
      host: 'evil.example',
      'x-forwarded-for': '6.6.6.6',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': 'evil.com',
      'x-forwarded-port': '1',
      'x-forwarded-prefix': '/evil',
      forwarded: 'for=6.6.6.6',
      'x-real-ip': '6.6.6.6',
    });
    expect(out['x-forwarded-for']).toBe('203.0.113.7');
    expect(out['x-forwarded-proto']).toBe('https');
    expect(out['x-forwarded-host']).toBe('app.example.com');
    for (const name of ['forwarded', 'x-real-ip', 'x-forwarded-port', 'x-forwarded-prefix', 'host']) expect(out).not.toHaveProperty(name);
  });

  test('with trustProxy, the balancer chain is kept and extended; host and proto still come from publicUrl', () => {
    const out = request(
      {
        host: 'internal:8080',
        'x-forwarded-for': '198.51.100.1, 10.0.0.2',
        'x-forwarded-host': 'evil.example',
        'x-forwarded-proto': 'http',
        forwarded: 'for=198.51.100.1',
        'x-real-ip': '1.2.3.4',
        'x-forwarded-prefix': '/p',
        'x-forwarded-port': '1',
      },
      { trustProxy: true, remoteAddress: '10.0.0.3', publicUrl: new URL('http://localhost:8080') },
    );
    expect(out['x-forwarded-for']).toBe('198.51.100.1, 10.0.0.2, 10.0.0.3');
    expect(out['x-forwarded-host']).toBe('localhost:8080');
    expect(out['x-forwarded-proto']).toBe('http');
    for (const name of ['forwarded', 'x-real-ip', 'x-forwarded-port', 'x-forwarded-prefix', 'host']) expect(out).not.toHaveProperty(name);
  });

  test('framing headers, Expect and Host never pass, even when Connection nominates them', () => {
    const out = request({
      host: 'a',
      'content-length': '5',
      'transfer-encoding': 'chunked',
      expect: '100-continue',
      connection: 'content-length, transfer-encoding, host',
      accept: '*/*',
    });
    for (const name of ['host', 'content-length', 'transfer-encoding', 'expect', 'connection']) expect(out).not.toHaveProperty(name);
    expect(out.accept).toBe('*/*');
  });

  test.each([
    'x_forwarded_for',
    'x_forwarded_host',
    'x_access_token',
    'x_auth_request_email',
    'x_amzn_oidc_identity',
    'x_user',
    'x_real_ip',
    'x_id_token',
    'x_forwarded_access_token',
  ])('underscore spelling %s is dropped', (name) => {
    const out = request({ [name]: 'spoofed', x_custom_thing: 'kept' }, { tokenRoute: false, trustProxy: true });
    expect(out).not.toHaveProperty(name);
    expect(out.x_custom_thing).toBe('kept');
  });

  test('identity headers never come from the browser, on any route', () => {
    const spoof = {
      'x-access-token': 'a',
      'x-id-token': 'i',
      'x-refresh-token': 'r',
      'x-auth-request-user': 'admin',
      'x-amzn-oidc-identity': 'admin',
      'x-forwarded-user': 'admin',
      'x-forwarded-access-token': 't',
      'x-user': 'admin',
      'x-email': 'a@b',
    };
    for (const tokenRoute of [true, false]) {
      const out = request(spoof, { tokenRoute, trustProxy: true });
      for (const name of Object.keys(spoof)) expect(out).not.toHaveProperty(name);
    }
  });

  // Client-address, scheme, host and URL overrides that common frameworks and servers trust
  // (IIS/Symfony X-Original-URL, Akamai/Cloudflare/Fastly client IPs, Rails/Rack X-Forwarded-Ssl,
  // WebLogic/IIS Front-End-Https), and method overrides, which bypass a route's `methods`.
  const TRUSTED_ELSEWHERE = [
    'true-client-ip',
    'x-client-ip',
    'client-ip',
    'cf-connecting-ip',
    'fastly-client-ip',
    'x-cluster-client-ip',
    'x-original-forwarded-for',
    'x-forwarded',
    'x-forwarded-server',
    'x-forwarded-ssl',
    'x-remote-ip',
    'x-remote-addr',
    'x-originating-ip',
    'x-host',
    'x-original-host',
    'x-original-url',
    'x-rewrite-url',
    'x-original-uri',
    'x-original-method',
    'front-end-https',
    'x-url-scheme',
    'x-scheme',
    'x-http-method-override',
    'x-http-method',
    'x-method-override',
  ];
  test.each(TRUSTED_ELSEWHERE)('%s never comes from the browser, trusted front or not, on any route, in any spelling', (name) => {
    for (const tokenRoute of [true, false]) {
      for (const trustProxy of [true, false]) {
        const out = request({ [name]: 'spoofed', [name.replace(/-/g, '_')]: 'spoofed', accept: '*/*' }, { tokenRoute, trustProxy });
        expect(out).not.toHaveProperty(name);
        expect(out).not.toHaveProperty(name.replace(/-/g, '_'));
        expect(out.accept).toBe('*/*');
      }
    }
  });

  test('names that only begin like an identity header pass', () => {
    const out = request(
      { 'x-hostname': 'a', 'x-forwarded-looking': 'b', 'x-client-ipsum': 'c', 'x-http-methods': 'd' },
      { tokenRoute: false },
    );
    expect(out).toMatchObject({ 'x-hostname': 'a', 'x-client-ipsum': 'c', 'x-http-methods': 'd' });
  });

  test('the gateway cookies are cut from Cookie; other cookies pass in order', () => {
    const out = request({ cookie: 'a=1; __Host-Http-bff-session=s%3Asigned; b=2;__Host-bff-login=x ; c="q"' });
    expect(out.cookie).toBe('a=1; b=2; c="q"');
    expect(request({ cookie: '__Host-Http-bff-session=x; __Host-bff-login=y' })).not.toHaveProperty('cookie');
    expect(request({ cookie: '__Host-Http-bff-session-other=kept' }).cookie).toBe('__Host-Http-bff-session-other=kept');
  });

  test('a Cookie header nominated by Connection does not come back', () => {
    expect(request({ connection: 'cookie', cookie: 'a=1' })).not.toHaveProperty('cookie');
  });

  test('on token routes the browser Authorization is replaced by the gateway token, or removed', () => {
    expect(request({ authorization: 'Bearer browser' }, { authorization: `Bearer ${ACCESS}` }).authorization).toBe(`Bearer ${ACCESS}`);
    expect(request({ authorization: 'Bearer browser' })).not.toHaveProperty('authorization');
  });

  test('on token: none routes the browser Authorization passes', () => {
    expect(request({ authorization: 'Basic dXNlcjpwdw==' }, { tokenRoute: false }).authorization).toBe('Basic dXNlcjpwdw==');
  });

  test('ordinary headers pass untouched', () => {
    const headers = {
      accept: 'application/json',
      'content-type': 'application/json',
      'x-request-id': 'r1',
      'user-agent': 'ua',
      'x-csrf': '1',
    };
    expect(request(headers)).toMatchObject(headers);
  });
});

describe('response headers', () => {
  test('hop-by-hop and nominated headers are removed', () => {
    const out = response({ ...HOP_BY_HOP, connection: 'close, x-hop', 'x-hop': '1', 'content-type': 'text/plain' });
    for (const name of [...Object.keys(HOP_BY_HOP), 'x-hop']) expect(out).not.toHaveProperty(name);
    expect(out['content-type']).toBe('text/plain');
  });

  test('every header of the documented list is dropped, plus scrub.responseHeaders', () => {
    expect(TOKEN_RESPONSE_HEADERS).toEqual(
      expect.arrayContaining([
        'authorization',
        'proxy-authorization',
        'x-access-token',
        'x-id-token',
        'x-refresh-token',
        'x-auth-request-access-token',
        'x-amzn-oidc-accesstoken',
        'x-forwarded-access-token',
      ]),
    );
    const upstream = Object.fromEntries([...TOKEN_RESPONSE_HEADERS, 'x-custom-secret'].map((name) => [name, 'value']));
    const out = response({ ...upstream, 'x-kept': 'yes' }, { dropNames: ['x-custom-secret'] });
    expect(out).toEqual({ 'x-kept': 'yes' });
  });

  test('any header whose value contains a session token is dropped', () => {
    const out = response(
      {
        location: `https://app.example.com/cb#access_token=${ACCESS}`,
        link: `<x>; token=${REFRESH}`,
        'x-debug': ['fine', `Bearer ${ACCESS}`],
        etag: '"abc"',
      },
      { tokens: [ACCESS, REFRESH] },
    );
    expect(out).toEqual({ etag: '"abc"' });
  });

  test('an empty token never matches everything', () => {
    expect(response({ etag: '"abc"' }, { tokens: [''] })).toEqual({ etag: '"abc"' });
  });

  test('Set-Cookie for the gateway cookie names is dropped, others kept', () => {
    const out = response(
      {
        'set-cookie': [
          '__Host-Http-bff-session=forged; Path=/',
          'theme=dark; Path=/',
          '__Host-bff-login=x; Path=/',
          `leak=${ACCESS}`,
          'lang=en',
        ],
      },
      { tokens: [ACCESS] },
    );
    expect(out['set-cookie']).toEqual(['theme=dark; Path=/', 'lang=en']);
    expect(response({ 'set-cookie': ['__Host-Http-bff-session=forged'] })).not.toHaveProperty('set-cookie');
  });
});

describe('exchangeHeaders (HTTP and WebSocket alike)', () => {
  const rules = exchangeHeaders({
    trustProxy: false,
    publicUrl: 'https://app.example.com',
    gatewayCookies: [...GATEWAY_COOKIES],
    scrubResponseHeaders: ['x-debug'],
  });
  const req = (headers: IncomingHttpHeaders) => ({ headers, socket: { remoteAddress: '203.0.113.7' } }) as unknown as IncomingMessage;

  test("on token routes the browser's Authorization and DPoP are replaced by the gateway's", () => {
    const out = rules.request(req({ authorization: 'Bearer browser', dpop: 'browser-proof', cookie: '__Host-Http-bff-session=s; a=1' }), {
      tokenRoute: true,
      auth: { authorization: `DPoP ${ACCESS}`, dpop: 'gateway-proof' },
    });
    expect(out).toMatchObject({
      authorization: `DPoP ${ACCESS}`,
      dpop: 'gateway-proof',
      cookie: 'a=1',
      'x-forwarded-for': '203.0.113.7',
      'x-forwarded-host': 'app.example.com',
    });
    const bare = rules.request(req({ dpop: 'browser-proof' }), { tokenRoute: true, auth: {} });
    expect(bare).not.toHaveProperty('dpop');
    expect(bare).not.toHaveProperty('authorization');
  });

  test('on none routes the browser DPoP header passes; Upgrade only when asked for', () => {
    const out = rules.request(req({ dpop: 'p', connection: 'Upgrade', upgrade: 'websocket' }), { tokenRoute: false, auth: {} });
    expect(out.dpop).toBe('p');
    expect(out).not.toHaveProperty('upgrade');
    expect(
      rules.request(req({ connection: 'Upgrade', upgrade: 'websocket' }), { tokenRoute: false, auth: {}, keepUpgrade: true }),
    ).toMatchObject({ connection: 'Upgrade', upgrade: 'websocket' });
  });

  test('response rules: the built-in token headers, scrub.responseHeaders, the gateway cookies and the exchange tokens', () => {
    const options = rules.response([ACCESS]);
    expect(options.tokens).toEqual([ACCESS]);
    expect(
      browserResponseHeaders(
        { 'x-access-token': 'a', 'x-debug': 'b', 'set-cookie': ['__Host-bff-login=x', 'theme=dark'], link: ACCESS, etag: '"e"' },
        options,
      ),
    ).toEqual({ 'set-cookie': ['theme=dark'], etag: '"e"' });
  });
});
