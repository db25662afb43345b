import { describe, expect, test } from 'vitest';
import { stepUpChallenge } from '../../src/auth/bearer-challenge.ts';
import { loginParamsFrom } from '../../src/auth/login-params.ts';
import { withError } from '../../src/auth/return-to-error.ts';
import { requirementFromChallenge, stepUpLoginUrl, stepUpRequired, unmetRequirement } from '../../src/auth/step-up.ts';
import { userAgentSummary } from '../../src/auth/user-agent.ts';
import { buildConfig } from '../../src/config/load.ts';
import { errorBody } from '../../src/errors.ts';

const oidc = { loginParams: ['prompt', 'max_age', 'acr_values', 'login_hint', 'ui_locales'] as const, acrValues: ['pwd', 'mfa'] } as never;

describe('login parameters', () => {
  const parse = (query: string) => loginParamsFrom(new URLSearchParams(query), oidc);

  test('allow-listed values pass; anything else is dropped', () => {
    expect(
      parse(
        'prompt=login&max_age=0300&acr_values=mfa%20pwd&login_hint=a%40b.c&ui_locales=de-CH%20en&client_id=x&redirect_uri=y&scope=z&state=s&nonce=n&code_challenge=c&foo=1',
      ),
    ).toEqual({
      prompt: 'login',
      max_age: '300',
      acr_values: 'mfa pwd',
      login_hint: 'a@b.c',
      ui_locales: 'de-CH en',
    });
  });

  test.each([
    'prompt=bogus',
    'prompt=none%20login',
    'prompt=login%20login',
    'prompt=',
    'max_age=-1',
    'max_age=1.5',
    'max_age=abc',
    'acr_values=gold',
    'acr_values=mfa%20gold',
    'login_hint=',
    'login_hint=a%0Ab',
    'ui_locales=en_US',
    'prompt=login&prompt=none',
  ])('%s is 400 invalid_request', (query) => {
    expect(() => parse(query)).toThrow(expect.objectContaining({ code: 'invalid_request', status: 400 }));
  });

  test('a name left out of oidc.loginParams is ignored, even when malformed', () => {
    const narrow = { loginParams: ['prompt'], acrValues: [] } as never;
    expect(loginParamsFrom(new URLSearchParams('prompt=none&max_age=x&acr_values=gold'), narrow)).toEqual({ prompt: 'none' });
  });
});

describe('RFC 9470 challenges', () => {
  test.each([
    [
      'Bearer error="insufficient_user_authentication", error_description="x", acr_values="mfa pwd", max_age=5',
      { acrValues: ['mfa', 'pwd'], maxAgeS: 5 },
    ],
    ['Bearer realm="api", max_age="10", error=insufficient_user_authentication', { maxAgeS: 10 }],
    ['Basic realm="x", DPoP error="insufficient_user_authentication", acr_values="mfa"', { acrValues: ['mfa'] }],
    ['Bearer error="insufficient_user_authentication"', {}],
  ])('%s', (header, expected) => {
    expect(stepUpChallenge(header)).toEqual(expected);
  });

  test.each([
    'Bearer error="invalid_token"',
    'Basic realm="insufficient_user_authentication"',
    'Bearer error_description="insufficient_user_authentication"',
    '',
  ])('not a step-up challenge: %s', (header) => {
    expect(stepUpChallenge(header)).toBeUndefined();
  });

  test('only configured acr values are asked for; a bare challenge asks for a fresh login', () => {
    expect(requirementFromChallenge({ acrValues: ['gold', 'mfa'], maxAgeS: 60 }, ['mfa'])).toEqual({ acr: ['mfa'], maxAgeS: 60 });
    expect(requirementFromChallenge({ acrValues: ['gold'] }, ['mfa'])).toBeUndefined();
    expect(requirementFromChallenge({}, ['mfa'])).toEqual({ maxAgeS: 0 });
  });
});

describe('requirements and the step-up answer', () => {
  const now = 1_700_000_000_000;
  test('acr and auth_time judged against the requirement', () => {
    expect(unmetRequirement({ acr: 'mfa', auth_time: now / 1000 - 100 }, { acr: ['mfa'], maxAgeS: 300 }, now)).toBeUndefined();
    expect(unmetRequirement({ acr: 'pwd', auth_time: now / 1000 - 100 }, { acr: ['mfa'], maxAgeS: 300 }, now)).toEqual({ acr: ['mfa'] });
    expect(unmetRequirement({ acr: 'mfa', auth_time: now / 1000 - 1000 }, { acr: ['mfa'], maxAgeS: 300 }, now)).toEqual({ maxAgeS: 300 });
    expect(unmetRequirement({}, { acr: ['mfa'], maxAgeS: 300 }, now)).toEqual({ acr: ['mfa'], maxAgeS: 300 });
    expect(unmetRequirement({ acr: 'x' }, {}, now)).toBeUndefined();
  });

  test('loginUrl is relative, carries the requirement and a safe returnTo', () => {
    expect(stepUpLoginUrl({ acr: ['mfa', 'pwd'], maxAgeS: 300 }, '/api/pay?x=1')).toBe(
      '/auth/login?returnTo=%2Fapi%2Fpay%3Fx%3D1&acr_values=mfa%20pwd&max_age=300',
    );
    expect(stepUpLoginUrl({ maxAgeS: 0 }, '//evil.example/x')).toBe('/auth/login?returnTo=%2F&max_age=0');
    const error = stepUpRequired({ acr: ['mfa'] }, '/api', 'detail');
    expect(error.status).toBe(401);
    expect(errorBody(error.code, error.message, error.fields)).toBe(
      `{"error":"step_up_required","message":"${error.message}","loginUrl":"/auth/login?returnTo=%2Fapi&acr_values=mfa"}`,
    );
    expect(JSON.stringify(error)).toBe(errorBody(error.code, error.message, error.fields));
  });
});

test('error= is appended to returnTo keeping its bytes, once', () => {
  expect(withError('/', 'login_required')).toBe('/?error=login_required');
  expect(withError('/a?b=%20c+d#frag?x', 'access_denied')).toBe('/a?b=%20c+d&error=access_denied#frag?x');
  expect(withError('/a?error=old&errors=1', 'x')).toBe('/a?errors=1&error=x');
});

test('user agent summaries', () => {
  expect(
    userAgentSummary('Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36'),
  ).toBe('Chrome on Linux');
  expect(
    userAgentSummary(
      'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1',
    ),
  ).toBe('Safari on iOS');
  expect(userAgentSummary('Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:120.0) Gecko/20100101 Firefox/120.0')).toBe('Firefox on Windows');
  expect(userAgentSummary(undefined)).toBe('unknown');
  expect(userAgentSummary('node')).toBe('other');
});

describe('configuration', () => {
  const base = {
    publicUrl: 'http://127.0.0.1:8080',
    oidc: { issuer: 'http://127.0.0.1:9000', clientId: 'c', clientSecret: 's' },
    session: { store: 'memory', secret: 'abcdefghijklmnopqrstuvwxyz0123456789', encryptionKey: Buffer.alloc(32, 7).toString('base64') },
  };
  test('defaults and route requirements', () => {
    const config = buildConfig({
      ...base,
      oidc: { ...base.oidc, acrValues: ['mfa'] },
      routes: [{ path: '/pay', upstream: 'http://127.0.0.1:1', require: { acr: ['mfa'], maxAge: '5m' } }],
    });
    expect(config.oidc.loginParams).toEqual(['prompt', 'max_age', 'acr_values', 'login_hint', 'ui_locales']);
    expect(config.routes[0]?.require).toEqual({ acr: ['mfa'], maxAgeS: 300 });
  });
  test.each([
    [{ routes: [{ path: '/pay', upstream: 'http://127.0.0.1:1', require: { acr: ['gold'] } }] }, 'gold is not listed in oidc.acrValues'],
    [{ routes: [{ path: '/pay', upstream: 'http://127.0.0.1:1', token: 'none', require: { maxAge: 60 } }] }, 'needs token: user'],
    [{ routes: [{ path: '/pay', upstream: 'http://127.0.0.1:1', require: {} }] }, 'must set acr, maxAge or both'],
    [{ oidc: { ...base.oidc, loginParams: ['scope'] } }, 'must be one of prompt'],
  ])('refused: %j', (extra, message) => {
    expect(() => buildConfig({ ...base, ...extra })).toThrow(message);
  });
});
