/**
 * Which token a request carries upstream (src/proxy/credentials.ts), per route mode, on the
 * memory store with a fake IdP: no process, no upstream.
 */
import { expect, test } from 'vitest';
import { GatewayError } from '../../src/errors.ts';
import { tokenWorld } from '../support/token-world.ts';

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  return err instanceof GatewayError ? err.code : undefined;
}

test('token: none carries nothing and needs no session', async () => {
  const w = tokenWorld();
  const credentials = await w.main.credentials.for(w.route('/'), {});
  expect(credentials.accessToken).toBeUndefined();
  expect(await w.main.credentials.authHeaders(credentials, 'GET', 'http://spa.internal/')).toEqual({});
});

test('token: user without a session is 401 unauthenticated; token: optional goes without a token', async () => {
  const w = tokenWorld();
  expect(await codeOf(w.main.credentials.for(w.route('/api'), {}))).toBe('unauthenticated');
  expect((await w.main.credentials.for(w.route('/maybe'), {})).accessToken).toBeUndefined();
});

test("token: user carries the session's access token as a Bearer, and lists every token to scrub", async () => {
  const w = tokenWorld();
  const s = await w.session();
  const credentials = await w.main.credentials.for(w.route('/api'), { cookie: s.cookieHeader });
  expect(credentials.session?.handle).toBe(s.handle);
  expect(await w.main.credentials.authHeaders(credentials, 'GET', 'http://api.internal/x')).toEqual({ authorization: 'Bearer at-0' });
  expect([...credentials.tokens()].sort()).toEqual(['at-0', 'id-0', 'rt-0']);
  // One frozen list, asked for again and again: the redactor's compiled needles are keyed by it.
  expect(credentials.tokens()).toBe(credentials.tokens());
  expect(Object.isFrozen(credentials.tokens())).toBe(true);
});

test('retry after an upstream rejection: a new token, and the old one still scrubbed', async () => {
  const w = tokenWorld();
  const s = await w.session();
  const credentials = await w.main.credentials.for(w.route('/api'), { cookie: s.cookieHeader });
  expect(await credentials.retry()).toBe('at-1');
  expect(credentials.accessToken).toBe('at-1');
  expect(credentials.tokens()).toEqual(expect.arrayContaining(['at-0', 'at-1', 'rt-1']));
});

test('a route with audience/scopes carries its own minted token, not the main one', async () => {
  const w = tokenWorld();
  const s = await w.session();
  const credentials = await w.main.credentials.for(w.route('/orders'), { cookie: s.cookieHeader });
  expect(credentials.accessToken).toBe('at-1');
  expect(credentials.tokens()).toEqual(expect.arrayContaining(['at-0', 'at-1']));
});

test('token: client carries the cached client-credentials token; a retry fetches a new one', async () => {
  const w = tokenWorld();
  const first = await w.main.credentials.for(w.route('/machine'), {});
  const again = await w.main.credentials.for(w.route('/machine'), {});
  expect(first.accessToken).toBe('at-1');
  expect(again.accessToken).toBe('at-1');
  expect(w.idp.calls).toEqual([{ grant: 'clientCredentials', parameters: {} }]);
  expect(await again.retry()).toBe('at-2');
  expect(again.tokens()).toEqual(['at-1', 'at-2']);
});

test('a client token the IdP refuses is 503 idp_unavailable: no user session is involved', async () => {
  const w = tokenWorld();
  const { rejected } = await import('../support/fake-idp.ts');
  w.idp.script.push(rejected('invalid_client'));
  expect(await codeOf(w.main.credentials.for(w.route('/machine'), {}))).toBe('idp_unavailable');
});

test('a DPoP-bound token without a DPoP key is refused (502), never sent as a Bearer', async () => {
  const w = tokenWorld();
  const s = await w.session({ tokenType: 'DPoP' });
  const credentials = await w.main.credentials.for(w.route('/api'), { cookie: s.cookieHeader });
  expect(credentials.dpop).toBe(true);
  expect(await codeOf(w.main.credentials.authHeaders(credentials, 'GET', 'http://api.internal/x'))).toBe('bad_gateway');
});
