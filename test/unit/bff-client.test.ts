/**
 * The parts of bff-client that need no browser, in Node; everything else runs in Chromium
 * (test/e2e/bff-client.test.ts). Importing it here also type-checks client/bff-client.d.ts.
 */
import { expect, test } from 'vitest';
import { createBffClient, type BffClient, type LoginParams } from '../../client/bff-client.js';

test('loginUrl carries the login parameters under their wire names, and nothing else', () => {
  const client: BffClient = createBffClient({ navigate: () => undefined });
  const params: LoginParams & { scope?: string } = {
    returnTo: '/x?y=1',
    prompt: 'login',
    maxAge: 0,
    acrValues: ['mfa', 'pwd'],
    loginHint: 'a@b.c',
    uiLocales: 'de',
    scope: 'admin',
  };
  expect(client.loginUrl(params)).toBe(
    '/auth/login?returnTo=%2Fx%3Fy%3D1&prompt=login&max_age=0&acr_values=mfa+pwd&login_hint=a%40b.c&ui_locales=de',
  );
});

test('login() and checkSession() navigate through the given navigate function', () => {
  const visited: string[] = [];
  const client = createBffClient({ navigate: (url) => visited.push(url) });
  client.login({ returnTo: '/a', acrValues: 'mfa' });
  client.checkSession({ returnTo: '/b' });
  expect(visited).toEqual(['/auth/login?returnTo=%2Fa&acr_values=mfa', '/auth/login?returnTo=%2Fb&prompt=none']);
});
