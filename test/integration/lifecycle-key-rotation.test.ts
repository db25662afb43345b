/**
 * Key rotation without logging anyone out (docs/configuration.md): `session.secret` and
 * `session.encryptionKey` as lists, the first signs/seals, all verify/open. Three gateways share
 * one Redis: `old` (the keys sessions were created with), `rotated` ([new, old]) and `newOnly`.
 * A session from `old` keeps working on `rotated`, which re-signs its cookie and re-seals its
 * record under the new key; `newOnly` accepts it only after that.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Signer } from '@fastify/cookie';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { login } from '../support/login.ts';
import { signLogoutToken, postLogoutToken } from '../support/logout-tokens.ts';
import { sealKeyId, sessionIdOf, storedValue } from '../support/session-probe.ts';
import { CLIENT_ID, SESSION_KEY, SESSION_SECRET, apiHeaders, startWorld, type RunningGateway, type World } from '../support/world.ts';

const NEW_SECRET = `rotated-session-secret-${randomBytes(16).toString('hex')}`;
const NEW_KEY = randomBytes(32).toString('base64');
const keyId = (base64: string) => createHash('sha256').update(Buffer.from(base64, 'base64')).digest('base64url').slice(0, 8);

let world: World;
let rotated: RunningGateway;
let newOnly: RunningGateway;
beforeAll(async () => {
  world = await startWorld({ store: 'redis' });
  rotated = await world.startGateway({}, { session: { secret: [NEW_SECRET, SESSION_SECRET], encryptionKey: [NEW_KEY, SESSION_KEY] } });
  newOnly = await world.startGateway({}, { session: { secret: NEW_SECRET, encryptionKey: NEW_KEY } });
});
afterAll(() => world?.close());

const oldSession = async (user = 'alice') => (await login(world.url, { user })).cookieHeader;
const userStatus = async (gateway: RunningGateway, cookie: string) =>
  (await fetch(`${gateway.url}/auth/user`, { headers: apiHeaders(cookie) })).status;

test('a rotated gateway accepts an old cookie, re-signs it with the new secret and re-seals the record under the new key', async () => {
  const cookie = await oldSession();
  expect(sealKeyId(await storedValue(world.redis!, cookie))).toBe(keyId(SESSION_KEY));
  expect(await userStatus(newOnly, cookie)).toBe(401);

  const res = await fetch(`${rotated.url}/api/echo`, { headers: apiHeaders(cookie) });
  expect(res.status).toBe(200);
  const name = rotated.gateway.services.cookie.name;
  const renewed = res.headers.getSetCookie().find((line) => line.startsWith(`${name}=`));
  expect(renewed).toBeDefined();
  const renewedCookie = renewed!.split(';')[0]!;
  expect(renewedCookie).not.toBe(cookie);
  expect(sessionIdOf(renewedCookie)).toBe(sessionIdOf(cookie));
  expect(sealKeyId(await storedValue(world.redis!, cookie))).toBe(keyId(NEW_KEY));

  // Both halves are now under the new keys: the gateway that knows only those accepts it.
  expect(await userStatus(newOnly, renewedCookie)).toBe(200);
  expect(await userStatus(rotated, cookie)).toBe(200);
});

test('reading a session on /auth/user re-seals a record sealed under the retired key', async () => {
  const cookie = await oldSession();
  expect(await userStatus(rotated, cookie)).toBe(200);
  expect(sealKeyId(await storedValue(world.redis!, cookie))).toBe(keyId(NEW_KEY));
  expect(await userStatus(world.gateway, cookie)).toBe(401);
});

test('/auth/user also re-signs a cookie signed by the retired secret', async () => {
  const cookie = await oldSession();
  const res = await fetch(`${rotated.url}/auth/user`, { headers: apiHeaders(cookie) });
  expect(res.status).toBe(200);
  const renewed = res.headers.getSetCookie().find((line) => line.startsWith(`${rotated.gateway.services.cookie.name}=`));
  expect(renewed).toBeDefined();
  expect(await userStatus(newOnly, renewed!.split(';')[0]!)).toBe(200);
});

test('a gateway with only the new keys refuses an old cookie (401)', async () => {
  const cookie = await oldSession();
  const res = await fetch(`${newOnly.url}/api/echo`, { headers: apiHeaders(cookie) });
  expect(res.status).toBe(401);
  expect(await res.json()).toMatchObject({ error: 'unauthenticated' });
  expect(await userStatus(world.gateway, cookie)).toBe(200);
});

test('a record sealed under the old key does not open without it, even behind a valid new-secret cookie', async () => {
  const cookie = await oldSession();
  const name = rotated.gateway.services.cookie.name;
  const newlySigned = `${name}=${new Signer([NEW_SECRET]).sign(sessionIdOf(cookie))}`;
  expect(await userStatus(newOnly, newlySigned)).toBe(401);
  // The same cookie is fine where the old encryption key is still in the ring.
  expect(await userStatus(rotated, newlySigned)).toBe(200);
});

test('back-channel logout by sub still finds sessions indexed under the retired key', async () => {
  const carol = await oldSession('carol');
  const res = await postLogoutToken(rotated.url, await signLogoutToken(world.idp, CLIENT_ID, { sub: 'carol' }));
  expect(res.status).toBe(200);
  expect(await userStatus(world.gateway, carol)).toBe(401);
});
