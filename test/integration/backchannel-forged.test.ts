/**
 * POST /auth/backchannel-logout refuses everything but a valid logout token (OIDC Back-Channel
 * Logout 1.0, section 2.6): each forgery below changes one thing in an otherwise valid token
 * aimed at a live session, and must get 400 invalid_request (no-store) and end nothing. The
 * same builder without the change does end that session, so each refusal is the rule's doing.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import {
  BACKCHANNEL_EVENT,
  hmacLogoutToken,
  impostorKey,
  postLogoutToken,
  signLogoutToken,
  unsignedLogoutToken,
} from '../support/logout-tokens.ts';
import { login } from '../support/login.ts';
import { logoutsOf, recordOf } from '../support/session-probe.ts';
import { CLIENT_ID, CLIENT_SECRET, apiHeaders, startWorld, type World } from '../support/world.ts';

let world: World;
let victim: { cookie: string; sid: string; sub: string; idToken: string; accessToken: string };

beforeAll(async () => {
  world = await startWorld();
  const { cookieHeader: cookie } = await login(world.url);
  const record = (await recordOf(world.gateway, cookie))!;
  victim = { cookie, sid: record.idpSid!, sub: record.sub, idToken: record.tokens.idToken!, accessToken: record.tokens.accessToken };
});
afterAll(() => world?.close());

const alive = async (cookie: string) => (await fetch(`${world.url}/auth/user`, { headers: apiHeaders(cookie) })).status === 200;
const target = () => ({ sid: victim.sid, sub: victim.sub });
const now = () => Math.floor(Date.now() / 1000);
const sign = (options: Parameters<typeof signLogoutToken>[3]) => signLogoutToken(world.idp, CLIENT_ID, target(), options);

const forgeries: Array<[string, () => Promise<string> | string]> = [
  ['signed by another key under the IdP key id', async () => sign({ key: await impostorKey(world.idp) })],
  ['signed by another key with an unknown key id', async () => sign({ key: { ...(await impostorKey(world.idp)), kid: 'unknown-kid' } })],
  ['alg none', () => unsignedLogoutToken(world.idp, CLIENT_ID, target())],
  ['HS256 with the client secret', () => hmacLogoutToken(world.idp, CLIENT_ID, CLIENT_SECRET, target())],
  ['wrong iss', () => sign({ claims: { iss: 'https://idp.evil.example' } })],
  ['wrong aud', () => sign({ claims: { aud: 'another-client' } })],
  ['no aud', () => sign({ claims: { aud: undefined } })],
  ['no events', () => sign({ claims: { events: undefined } })],
  ['events without the back-channel member', () => sign({ claims: { events: { 'http://schemas.openid.net/event/other': {} } } })],
  ['back-channel event that is not an object', () => sign({ claims: { events: { [BACKCHANNEL_EVENT]: 'yes' } } })],
  ['a nonce', () => sign({ claims: { nonce: 'n-0S6_WzA2Mj' } })],
  ['expired exp', () => sign({ claims: { iat: now() - 200, exp: now() - 120 } })],
  ['old iat', () => sign({ claims: { iat: now() - 3600, exp: now() + 60 } })],
  ['iat in the future', () => sign({ claims: { iat: now() + 3600, exp: now() + 7200 } })],
  ['no iat', () => sign({ claims: { iat: undefined } })],
  ['no jti', () => sign({ claims: { jti: undefined } })],
  ['neither sid nor sub', () => signLogoutToken(world.idp, CLIENT_ID, {})],
  ['typ at+jwt', () => sign({ header: { typ: 'at+jwt' } })],
  ['typ JOSE', () => sign({ header: { typ: 'JOSE' } })],
  ['a real ID token of the session', () => victim.idToken],
  ['a real access token of the session', () => victim.accessToken],
  ['oversized but validly signed', () => sign({ claims: { padding: 'x'.repeat(20_000) } })],
];

test.each(forgeries)('logout token with %s: 400 invalid_request, nothing ends', async (_name, build) => {
  const before = await logoutsOf(world.gateway, 'backchannel');
  const res = await postLogoutToken(world.url, await build());
  expect(res.status).toBe(400);
  expect(res.headers.get('cache-control')).toBe('no-store');
  expect(await res.json()).toMatchObject({ error: 'invalid_request' });
  expect(await alive(victim.cookie)).toBe(true);
  expect(await logoutsOf(world.gateway, 'backchannel')).toBe(before);
});

const malformedBodies: Array<[string, () => Promise<Response>]> = [
  [
    'a JSON body',
    async () => postLogoutToken(world.url, '', { contentType: 'application/json', body: JSON.stringify({ logout_token: await sign({}) }) }),
  ],
  ['a text/plain body', async () => postLogoutToken(world.url, '', { contentType: 'text/plain', body: `logout_token=${await sign({})}` })],
  ['no logout_token field', () => postLogoutToken(world.url, '', { body: new URLSearchParams({ token: 'x' }) })],
  ['an empty logout_token', () => postLogoutToken(world.url, '')],
  [
    'the field twice',
    async () => postLogoutToken(world.url, '', { body: `logout_token=${await sign({})}&logout_token=${await sign({})}` }),
  ],
  ['an oversized field', () => postLogoutToken(world.url, 'a'.repeat(20_000))],
];

test.each(malformedBodies)('request with %s: 400 invalid_request, nothing ends', async (_name, send) => {
  const res = await send();
  expect(res.status).toBe(400);
  expect(res.headers.get('cache-control')).toBe('no-store');
  expect(await res.json()).toMatchObject({ error: 'invalid_request' });
  expect(await alive(victim.cookie)).toBe(true);
});

test('a valid token for an unknown sid: 200, no-store, and no other session ends', async () => {
  const res = await postLogoutToken(
    world.url,
    await signLogoutToken(world.idp, CLIENT_ID, { sid: 'no-such-idp-session', sub: victim.sub }),
  );
  expect(res.status).toBe(200);
  expect(res.headers.get('cache-control')).toBe('no-store');
  expect(await alive(victim.cookie)).toBe(true);
});

test('typ JWT, lower-case typ and no typ are accepted', async () => {
  for (const typ of ['JWT', 'LOGOUT+JWT', undefined]) {
    const res = await postLogoutToken(world.url, await signLogoutToken(world.idp, CLIENT_ID, { sid: 'nobody' }, { header: { typ } }));
    expect(res.status).toBe(200);
  }
});

test('a replayed token is refused: the same jti a second time is 400', async () => {
  const token = await signLogoutToken(world.idp, CLIENT_ID, { sid: 'replay-target' });
  expect((await postLogoutToken(world.url, token)).status).toBe(200);
  const again = await postLogoutToken(world.url, token);
  expect(again.status).toBe(400);
  expect(await again.json()).toMatchObject({ error: 'invalid_request' });
});

test('the unchanged valid token ends the targeted session (the control for every refusal above)', async () => {
  const bystander = (await login(world.url, { user: 'bob' })).cookieHeader;
  const before = await logoutsOf(world.gateway, 'backchannel');
  // The IdP's EC key signs too: any of its published asymmetric keys is accepted.
  const ecKey = world.idp.privateJwks.keys.find((k) => k.kty === 'EC')!;
  const res = await postLogoutToken(world.url, await sign({ key: ecKey }));
  expect(res.status).toBe(200);
  expect(await alive(victim.cookie)).toBe(false);
  expect(await alive(bystander)).toBe(true);
  expect(await logoutsOf(world.gateway, 'backchannel')).toBe(before + 1);
});

test('a token with only sub ends every session of that sub and no other', async () => {
  const alice1 = (await login(world.url, { user: 'alice' })).cookieHeader;
  const alice2 = (await login(world.url, { user: 'alice' })).cookieHeader;
  const bob = (await login(world.url, { user: 'bob' })).cookieHeader;
  expect((await recordOf(world.gateway, alice1))!.idpSid).not.toBe((await recordOf(world.gateway, alice2))!.idpSid);

  const res = await postLogoutToken(world.url, await signLogoutToken(world.idp, CLIENT_ID, { sub: 'alice' }));
  expect(res.status).toBe(200);
  expect(await alive(alice1)).toBe(false);
  expect(await alive(alice2)).toBe(false);
  expect(await alive(bob)).toBe(true);
});
