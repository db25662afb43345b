/**
 * Operator tools as an operator runs them: `bff-gateway sessions list|revoke` in a real child
 * process against the same Redis and IdP as a running gateway. Revoking ends the sessions on
 * the gateway (cookie -> 401), revokes their refresh tokens at the IdP, and says what it did.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { main } from '../../src/cli.ts';
import { refreshAtIdp } from '../support/idp-grants.ts';
import { login } from '../support/login.ts';
import { freePort } from '../support/redis.ts';
import { handleOf, logoutsOf, recordOf } from '../support/session-probe.ts';
import { apiHeaders, deepMerge, startWorld, type World } from '../support/world.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const ENTRY = join(ROOT, 'test/support/cli-entry.ts');

let world: World;
let dir: string;
let configFile: string;
beforeAll(async () => {
  world = await startWorld({ store: 'redis' });
  dir = mkdtempSync(join(tmpdir(), 'bff-sessions-cli-'));
  configFile = join(dir, 'gateway.yaml');
  // JSON is YAML: the world's own configuration, as a file.
  writeFileSync(configFile, JSON.stringify(world.rawConfig(), null, 2));
});
afterAll(async () => {
  await world?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The same CLI in this process: for argument handling, where a child adds only start-up time. */
async function cliInProcess(...args: string[]): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { out: (line) => out.push(line), err: (line) => err.push(line) });
  return { code: code ?? null, stdout: out.map((l) => `${l}\n`).join(''), stderr: err.map((l) => `${l}\n`).join('') };
}

function cli(...args: string[]): Promise<Run> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['--import', 'tsx', ENTRY, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.once('error', fail);
    child.once('close', (code) => done({ code, stdout, stderr }));
  });
}

const alive = async (cookie: string) => (await fetch(`${world.url}/auth/user`, { headers: apiHeaders(cookie) })).status === 200;

async function session(user: string) {
  const { cookieHeader: cookie } = await login(world.url, { user });
  const record = (await recordOf(world.gateway, cookie))!;
  return { cookie, handle: handleOf(cookie), idpSid: record.idpSid!, refreshToken: record.tokens.refreshToken! };
}

test("sessions list --sub prints that user's sessions and nobody else's; without a filter, every session", async () => {
  const [a1, a2, bob] = [await session('alice'), await session('alice'), await session('bob')];
  // Child processes are slow to start on a busy machine: independent runs go side by side.
  const [listed, everyone] = await Promise.all([
    cli('sessions', 'list', '--sub', 'alice', '--config', configFile),
    cli('sessions', 'list', '--config', configFile),
  ]);
  expect(listed.code).toBe(0);
  expect(listed.stdout).toContain(a1.handle);
  expect(listed.stdout).toContain(a2.handle);
  expect(listed.stdout).not.toContain(bob.handle);
  expect(listed.stdout).toMatch(/^2 session\(s\)$/m);
  expect(listed.stdout).toMatch(new RegExp(`^${a1.handle}\\s+sub=alice\\s`, 'm'));
  // The browser-side session id never appears, only its hash.
  expect(listed.stdout).not.toContain(a1.cookie.split('=')[1]!.split('.')[0]!);

  expect(everyone.code).toBe(0);
  for (const handle of [a1.handle, a2.handle, bob.handle]) expect(everyone.stdout).toContain(handle);
  for (const s of [a1, a2, bob]) expect(await alive(s.cookie)).toBe(true);
});

test('sessions revoke --sub ends every session of the user and revokes their refresh tokens', async () => {
  const [c1, c2, bob] = [await session('carol'), await session('carol'), await session('bob')];
  const revocationsBefore = world.idp.counters.revocations;
  const run = await cli('sessions', 'revoke', '--sub', 'carol', '--config', configFile);
  expect(run.code).toBe(0);
  expect(run.stdout).toMatch(new RegExp(`^revoked ${c1.handle}\\s+sub=carol`, 'm'));
  expect(run.stdout).toMatch(new RegExp(`^revoked ${c2.handle}\\s+sub=carol`, 'm'));
  expect(run.stdout).toMatch(/^2 session\(s\) revoked$/m);
  expect(run.stdout).not.toContain('not revoked');

  expect(await alive(c1.cookie)).toBe(false);
  expect(await alive(c2.cookie)).toBe(false);
  expect(await alive(bob.cookie)).toBe(true);
  expect(world.idp.counters.revocations).toBeGreaterThanOrEqual(revocationsBefore + 2);
  expect((await refreshAtIdp(world.idp.issuer, c1.refreshToken)).status).toBe(400);
  expect((await refreshAtIdp(world.idp.issuer, c2.refreshToken)).status).toBe(400);
  expect((await refreshAtIdp(world.idp.issuer, bob.refreshToken)).status).toBe(200);
});

test('sessions revoke --sid and --handle each end exactly the selected sessions', async () => {
  const [d1, d2, e1, e2] = [await session('dave'), await session('dave'), await session('erin'), await session('erin')];
  expect(d1.idpSid).not.toBe(d2.idpSid);
  // `--opt=VALUE`: IdP sids and handles are base64url and may begin with '-' (see the next test).
  const [bySid, byHandle] = await Promise.all([
    cli('sessions', 'revoke', `--sid=${d1.idpSid}`, '--config', configFile),
    cli('sessions', 'revoke', `--handle=${e2.handle}`, '--config', configFile),
  ]);
  expect(bySid.code).toBe(0);
  expect(bySid.stdout).toContain(`revoked ${d1.handle}`);
  expect(bySid.stdout).toMatch(/^1 session\(s\) revoked$/m);
  expect(byHandle.code).toBe(0);
  expect(byHandle.stdout).toContain(`revoked ${e2.handle}`);
  expect(byHandle.stdout).toMatch(/^1 session\(s\) revoked$/m);
  expect(await alive(d1.cookie)).toBe(false);
  expect(await alive(d2.cookie)).toBe(true);
  expect(await alive(e2.cookie)).toBe(false);
  expect(await alive(e1.cookie)).toBe(true);
  expect((await refreshAtIdp(world.idp.issuer, e2.refreshToken)).status).toBe(400);
  expect((await refreshAtIdp(world.idp.issuer, d2.refreshToken)).status).toBe(200);
});

test('a handle or sid that begins with "-" (base64url allows it) is taken as the option value', async () => {
  // About one handle in 64 begins with '-': an operator pastes it from `sessions list` as is.
  const byHandle = await cliInProcess('sessions', 'revoke', '--handle', '-no-such-handle', '--config', configFile);
  expect(byHandle.stderr).toBe('');
  expect(byHandle.code).toBe(0);
  expect(byHandle.stdout).toMatch(/^0 session\(s\) revoked$/m);
});

test('sessions revoke --all ends every session', async () => {
  const some = [await session('frank'), await session('grace')];
  const run = await cli('sessions', 'revoke', '--all', '--config', configFile);
  expect(run.code).toBe(0);
  for (const s of some) {
    expect(run.stdout).toContain(`revoked ${s.handle}`);
    expect(await alive(s.cookie)).toBe(false);
  }
  const left: string[] = [];
  for await (const live of world.gateway.gateway.services.sessions.all()) left.push(live.handle);
  expect(left).toEqual([]);
});

test('with the IdP unreachable, revoke still ends the sessions and says the tokens were not revoked', async () => {
  const { cookie, handle } = await session('judy');
  const deadIdp = `http://127.0.0.1:${await freePort()}`;
  const offline = join(dir, 'idp-down.yaml');
  writeFileSync(offline, JSON.stringify(deepMerge(world.rawConfig(), { oidc: { issuer: deadIdp, timeout: '1s' } })));
  const run = await cliInProcess('sessions', 'revoke', '--sub', 'judy', '--config', offline);
  expect(run.code).toBe(0);
  expect(run.stdout).toMatch(new RegExp(`^revoked ${handle}\\s.*tokens not revoked at the IdP`, 'm'));
  expect(await alive(cookie)).toBe(false);
});

test('usage errors exit 1 and end nothing', async () => {
  const kept = await session('heidi');
  // One real process proves the exit status; the other refusals run the same code in-process.
  const noSelector = await cli('sessions', 'revoke', '--config', configFile);
  const badAction = await cliInProcess('sessions', 'purge', '--all', '--config', configFile);
  const missingConfig = await cliInProcess('sessions', 'revoke', '--all', '--config', join(dir, 'missing.yaml'));
  expect(noSelector.code).toBe(1);
  expect(noSelector.stderr).toMatch(/--sub|--sid|--handle|--all/);
  expect(badAction.code).toBe(1);
  expect(missingConfig.code).toBe(1);
  expect(missingConfig.stderr).toContain('missing.yaml');
  expect(await alive(kept.cookie)).toBe(true);
});

test('an operator-ended session counts as bff_logouts_total{kind="admin"}', async () => {
  // The CLI's own counter dies with its process; the kind is checked on a live gateway context.
  const { cookie } = await session('ivan');
  const before = await logoutsOf(world.gateway, 'admin');
  const result = await world.gateway.gateway.services.sessions.load(cookie.split('=')[1]!.split('.')[0]!);
  expect(result.state).toBe('active');
  if (result.state !== 'active') return;
  await world.gateway.gateway.services.ending.end(result, 'admin');
  expect(await logoutsOf(world.gateway, 'admin')).toBe(before + 1);
  expect(await alive(cookie)).toBe(false);
});
