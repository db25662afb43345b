/**
 * `bff-gateway check --connect`: the CLI, as a child process, against a real password-protected
 * Redis and a small discovery server: what fails is named (authentication, refused connection,
 * wrong issuer, timeout), exit 1 if anything fails, 0 when both answer; no password printed.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { stringify } from 'yaml';
import { freePort, startRedis, type RedisInstance } from '../support/redis.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const ENTRY = join(ROOT, 'test/support/cli-entry.ts');
const PASSWORD = `pw-${randomBytes(8).toString('hex')}`;
const WRONG = `wrong-${randomBytes(8).toString('hex')}`;

interface Result {
  code: number | null;
  stdout: string[];
  stderr: string[];
}

function check(args: string[], env: NodeJS.ProcessEnv): Promise<Result> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', ENTRY, 'check', ...args],
      { cwd: ROOT, env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, timeout: 30_000 },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: unknown }).code as number | null) : 0;
        done({
          code: typeof code === 'number' ? code : null,
          stdout: stdout.split('\n').filter(Boolean),
          stderr: stderr.split('\n').filter(Boolean),
        });
      },
    );
  });
}

/** Serves a discovery document naming `issuer` (its own URL unless told otherwise); `hang` never answers. */
async function discoveryServer(
  options: { issuer?: (own: string) => string; hang?: boolean } = {},
): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    if (options.hang) return;
    if (req.url !== '/.well-known/openid-configuration') {
      res.writeHead(404).end();
      return;
    }
    const own = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ issuer: options.issuer ? options.issuer(own) : own, authorization_endpoint: `${own}/auth` }));
  });
  await new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server };
}

let dir: string;
let redis: RedisInstance;
let idp: { url: string; server: Server };
let otherIssuer: { url: string; server: Server };
let silent: { url: string; server: Server };
let stoppedIdp: string;

/** Short deadlines only where a test waits for one to pass: a loaded machine must not fail the others. */
function configFile(
  name: string,
  issuer: string,
  deadlines: { timeout: string; commandTimeout: string } = { timeout: '10s', commandTimeout: '5s' },
): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    stringify({
      publicUrl: 'http://localhost:8080',
      oidc: { issuer, clientId: 'spa', clientSecret: 'dev-secret', timeout: deadlines.timeout },
      session: {
        store: 'redis',
        redis: { url: '${REDIS_URL}', commandTimeout: deadlines.commandTimeout },
        secret: 'check-connect-secret-0123456789abcdef',
        encryptionKey: randomBytes(32).toString('base64'),
      },
    }),
  );
  return file;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bff-check-connect-'));
  [redis, idp, otherIssuer, silent] = await Promise.all([
    startRedis({ password: PASSWORD }),
    discoveryServer(),
    discoveryServer({ issuer: () => 'https://someone-else.example.com' }),
    discoveryServer({ hang: true }),
  ]);
  stoppedIdp = `http://127.0.0.1:${await freePort()}`;
});

afterAll(async () => {
  silent?.server.closeAllConnections();
  await Promise.all([
    redis?.stop(),
    ...[idp, otherIssuer, silent].map((entry) => entry && new Promise((closed) => entry.server.close(closed))),
  ]);
  rmSync(dir, { recursive: true, force: true });
});

const goodRedis = () => `redis://:${PASSWORD}@127.0.0.1:${redis.port}/0`;
const expectNoPassword = (result: Result) => {
  const all = [...result.stdout, ...result.stderr].join('\n');
  expect(all).not.toContain(PASSWORD);
  expect(all).not.toContain(WRONG);
};

describe.concurrent('bff-gateway check --connect', () => {
  test('both answer: exit 0, one "ok" line each', async () => {
    const file = configFile('good', idp.url);
    const result = await check(['--connect', '--config', file], { REDIS_URL: goodRedis() });
    expect(result).toEqual({
      code: 0,
      stdout: [
        `${file}: configuration is valid`,
        `session store (redis standalone 127.0.0.1:${redis.port}): ok, PING answered`,
        `identity provider (${idp.url}/.well-known/openid-configuration): ok, issuer matches`,
      ],
      stderr: [],
    });
    expectNoPassword(result);
  });

  test('a wrong Redis password and a stopped IdP: both named, exit 1', async () => {
    const file = configFile('wrong', stoppedIdp);
    const result = await check(['--connect', '--config', file], { REDIS_URL: `redis://:${WRONG}@127.0.0.1:${redis.port}/0` });
    expect(result.code).toBe(1);
    expect(result.stdout).toEqual([`${file}: configuration is valid`]);
    expect(result.stderr).toEqual([
      expect.stringMatching(
        new RegExp(`^session store \\(redis standalone 127\\.0\\.0\\.1:${redis.port}\\): authentication failed: WRONGPASS `),
      ),
      expect.stringMatching(new RegExp(`^identity provider \\(${stoppedIdp}/\\.well-known/openid-configuration\\): ECONNREFUSED`)),
    ]);
    expectNoPassword(result);
  });

  test('no password at all: NOAUTH; an IdP naming another issuer: both named, exit 1', async () => {
    const file = configFile('mismatch', otherIssuer.url);
    const result = await check(['--connect', '--config', file], { REDIS_URL: `redis://127.0.0.1:${redis.port}/0` });
    expect(result.code).toBe(1);
    expect(result.stderr).toEqual([
      expect.stringMatching(/^session store .*: NOAUTH /),
      `identity provider (${otherIssuer.url}/.well-known/openid-configuration): the document names issuer "https://someone-else.example.com", not the configured "${otherIssuer.url}"`,
    ]);
  });

  test('Redis not listening, an IdP that never answers: refused and timed out (oidc.timeout), exit 1', async () => {
    const file = configFile('down', silent.url, { timeout: '700ms', commandTimeout: '500ms' });
    const result = await check(['--connect', '--config', file], { REDIS_URL: `redis://127.0.0.1:${await freePort()}/0` });
    expect(result.code).toBe(1);
    expect(result.stderr).toEqual([
      expect.stringMatching(/^session store \(redis standalone 127\.0\.0\.1:\d+\): ECONNREFUSED/),
      `identity provider (${silent.url}/.well-known/openid-configuration): no answer within 700 ms (oidc.timeout)`,
    ]);
  });

  test('without --connect nothing is contacted: a valid file is exit 0 even with a wrong password', async () => {
    const file = configFile('offline', stoppedIdp);
    const result = await check(['--config', file], { REDIS_URL: `redis://:${WRONG}@127.0.0.1:${redis.port}/0` });
    expect(result).toEqual({ code: 0, stdout: [`${file}: configuration is valid`], stderr: [] });
  });
});
