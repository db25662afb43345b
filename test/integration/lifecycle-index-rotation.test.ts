/**
 * An encryption-key rotation, as docs/operations.md has operators do it, must not hide sessions
 * from back-channel logout or `sessions list --sub`: their sid/sub index entries are HMACs under
 * the key ring, and the last step removes the key the first entries were written under.
 *
 * Real gateway processes started by the CLI, one Redis, the real IdP posting real logout tokens.
 * The gateway is restarted on the same port with each step's key list: [A] (sessions created),
 * [A, B] (step 1, add), [B, A] (step 2, promote: sessions used, so re-sealed under B, and a new
 * one created), [B] (step 4, remove). At every step the operator's `sessions list --sub` finds
 * every live session of the user, and signing out at the IdP ends the session of that IdP
 * session.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, test, vi } from 'vitest';
import { startIdp, type Idp } from '../../fixtures/idp/idp.ts';
import { type CookieJar, login, submitIdpLogout } from '../support/login.ts';
import { freePort, startRedis, type RedisInstance } from '../support/redis.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';
import { CLIENT_ID, CLIENT_SECRET, SESSION_SECRET, apiHeaders, testOidcConfig } from '../support/world.ts';
import { sleep } from '../support/time.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const ENTRY = join(ROOT, 'test/support/cli-entry.ts');
const KEY_A = randomBytes(32).toString('base64');
const KEY_B = randomBytes(32).toString('base64');

let idp: Idp;
let redis: RedisInstance;
let upstream: Upstream;
let dir: string;
let port: number;
let adminPort: number;
let publicUrl: string;
let gateway: { child: ChildProcess; output: string[]; exited: Promise<void> } | undefined;

beforeAll(async () => {
  [port, adminPort] = [await freePort(), await freePort()];
  publicUrl = `http://127.0.0.1:${port}`;
  redis = await startRedis();
  idp = await startIdp({
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    redirectUris: [`${publicUrl}/auth/callback`],
    postLogoutRedirectUris: [`${publicUrl}/`],
    backchannelLogoutUri: `${publicUrl}/auth/backchannel-logout`,
    accessTokenTtl: 300,
  });
  upstream = await startUpstream({ issuer: idp.issuer, jwksUri: `${idp.issuer}/jwks` });
  dir = mkdtempSync(join(tmpdir(), 'bff-index-rotation-'));
});
afterAll(async () => {
  await stopGateway();
  await upstream?.close();
  await idp?.close();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The configuration file for one step of the rotation (JSON is YAML). */
function configFile(keys: string[]): string {
  const file = join(dir, `gateway-${keys.length}-${keys[0] === KEY_A ? 'a' : 'b'}.yaml`);
  const config = {
    listen: { host: '127.0.0.1', port },
    publicUrl,
    shutdownGrace: '1s',
    admin: { host: '127.0.0.1', port: adminPort },
    oidc: testOidcConfig(idp.issuer),
    session: { store: 'redis', redis: { url: redis.url }, secret: SESSION_SECRET, encryptionKey: keys },
    routes: [{ path: '/api', upstream: upstream.url, token: 'user' }],
  };
  writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}

async function stopGateway(): Promise<void> {
  if (!gateway) return;
  const { child, exited } = gateway;
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
  gateway = undefined;
}

/** A restart of the (single) instance with the step's keys; resolves once /readyz answers 200. */
async function restartWith(keys: string[]): Promise<void> {
  await stopGateway();
  const child = spawn(process.execPath, ['--import', 'tsx', ENTRY, '--config', configFile(keys)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  child.stdout?.on('data', (chunk: Buffer) => output.push(chunk.toString('utf8')));
  child.stderr?.on('data', (chunk: Buffer) => output.push(chunk.toString('utf8')));
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  gateway = { child, output, exited };
  for (let attempt = 0; attempt < 600; attempt++) {
    if (child.exitCode !== null) throw new Error(`gateway exited:\n${output.join('')}`);
    const ready = await fetch(`http://127.0.0.1:${adminPort}/readyz`).then(
      (res) => res.status === 200,
      () => false,
    );
    if (ready) return;
    await sleep(50);
  }
  throw new Error(`gateway not ready:\n${output.join('')}`);
}

/** `bff-gateway sessions list --sub SUB` in its own process, with the step's configuration. */
function listSessions(keys: string[], sub: string): Promise<string[]> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['--import', 'tsx', ENTRY, 'sessions', 'list', '--sub', sub, '--config', configFile(keys)], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.once('error', fail);
    child.once('close', (code) => {
      if (code !== 0) fail(new Error(`sessions list exited ${code}: ${stderr}`));
      // One line per session (`<handle>  sub=…`), then the count.
      else
        done(
          stdout
            .split('\n')
            .filter((line) => line.includes(`  sub=${sub}  `))
            .map((line) => line.split(' ')[0]!),
        );
    });
  });
}

const status = async (cookie: string) => (await fetch(`${publicUrl}/auth/user`, { headers: apiHeaders(cookie) })).status;
const useSession = async (cookie: string) => (await fetch(`${publicUrl}/api/echo`, { headers: apiHeaders(cookie) })).status;

interface Browser {
  cookie: string;
  jar: CookieJar;
}

/** A browser's session; its cookie as re-signed by the gateway is kept (secrets do not rotate here). */
async function browser(user: string): Promise<Browser> {
  const result = await login(publicUrl, { user });
  return { cookie: result.cookieHeader, jar: result.jar };
}

/** The user signs out at the IdP's own page; the IdP posts a logout token to the gateway. */
async function signOutAtIdp(session: Browser): Promise<void> {
  const sent = idp.logoutTokensSent;
  const answer = await submitIdpLogout(`${idp.issuer}/session/end`, session.jar);
  expect(answer.status).toBeLessThan(400);
  expect(idp.logoutTokensSent).toBe(sent + 1);
  await vi.waitFor(async () => expect(await status(session.cookie)).toBe(401), { timeout: 5_000, interval: 50 });
}

test('sessions list --sub and back-channel logout find every session before, during and after a key rotation', {
  timeout: 120_000,
}, async () => {
  // Before: everything under A.
  await restartWith([KEY_A]);
  const alice = await Promise.all([browser('alice'), browser('alice'), browser('alice'), browser('alice')]);
  const bob = await browser('bob');
  expect((await listSessions([KEY_A], 'alice')).length).toBe(4);

  // Step 1, add B as the second key: nothing is re-sealed yet.
  await restartWith([KEY_A, KEY_B]);
  for (const session of [...alice, bob]) expect(await useSession(session.cookie)).toBe(200);
  expect((await listSessions([KEY_A, KEY_B], 'alice')).length).toBe(4);

  // Step 2, promote B: every session used is re-sealed under B; a new login is made under B.
  await restartWith([KEY_B, KEY_A]);
  for (const session of [...alice, bob]) expect(await useSession(session.cookie)).toBe(200);
  const late = await browser('alice');
  expect((await listSessions([KEY_B, KEY_A], 'alice')).length).toBe(5);
  // During: a back-channel logout ends its session.
  await signOutAtIdp(alice[0]!);
  expect(await status(alice[1]!.cookie)).toBe(200);

  // Step 4, remove A.
  await restartWith([KEY_B]);
  const listed = await listSessions([KEY_B], 'alice');
  expect(listed.length).toBe(4);
  expect(await listSessions([KEY_B], 'bob')).toHaveLength(1);
  // After: back-channel logout still finds sessions indexed before the rotation, and the new one.
  await signOutAtIdp(alice[1]!);
  await signOutAtIdp(bob);
  await signOutAtIdp(late);
  for (const session of [alice[2]!, alice[3]!]) expect(await status(session.cookie)).toBe(200);
  expect((await listSessions([KEY_B], 'alice')).length).toBe(2);
});
