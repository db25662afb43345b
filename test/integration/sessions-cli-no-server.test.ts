/**
 * `bff-gateway sessions list|revoke` run on the services alone (src/services.ts): they read and
 * end sessions in the shared store without building a web server. Here fastify cannot even be
 * loaded — any import of it fails this file — and the commands still list and revoke a session
 * that a gateway's services stored in a real Redis.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test, vi } from 'vitest';
import { main } from '../../src/cli.ts';
import { buildConfig } from '../../src/config/load.ts';
import { createLogger } from '../../src/log.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { buildServices, type Services } from '../../src/services.ts';
import { freePort, startRedis, type RedisInstance } from '../support/redis.ts';

vi.mock('fastify', () => {
  throw new Error('fastify was loaded: the sessions commands must not build a web server');
});

let redis: RedisInstance;
let dir: string;
let configFile: string;
let services: Services;

beforeAll(async () => {
  redis = await startRedis();
  // An issuer nobody answers at: revoking must not need the IdP (it says so instead).
  const raw = {
    publicUrl: 'http://127.0.0.1:8080',
    oidc: { issuer: `http://127.0.0.1:${await freePort()}`, clientId: 'spa', clientSecret: 'cli-secret', timeout: '300ms' },
    session: {
      store: 'redis',
      redis: { url: redis.url },
      secret: 'cli-session-secret-0123456789-abcdefghij',
      encryptionKey: randomBytes(32).toString('base64'),
    },
    routes: [{ path: '/', upstream: 'http://127.0.0.1:9', token: 'none' }],
  };
  dir = mkdtempSync(join(tmpdir(), 'bff-sessions-no-server-'));
  configFile = join(dir, 'gateway.yaml');
  writeFileSync(configFile, JSON.stringify(raw));
  services = await buildServices(buildConfig(raw), { log: createLogger({ level: 'silent' }), metrics: new Metrics() });
});
afterAll(async () => {
  await services?.close();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function cli(...args: string[]): Promise<{ code: number | undefined; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { out: (line) => out.push(line), err: (line) => err.push(line) });
  return { code, out, err };
}

test('sessions list and revoke work with no web server to build', async () => {
  const tokens = { accessToken: 'at', tokenType: 'bearer', expiresAt: null };
  const created = await services.sessions.create({ sub: 'carol', claims: {}, tokens });

  const listed = await cli('sessions', 'list', '--config', configFile);
  expect(listed.err).toEqual([]);
  expect(listed.code).toBe(0);
  expect(listed.out.some((line) => line.startsWith(`${created.handle}  sub=carol`))).toBe(true);

  const revoked = await cli('sessions', 'revoke', '--sub', 'carol', '--config', configFile);
  expect(revoked.code).toBe(0);
  expect(revoked.out.at(-1)).toBe('1 session(s) revoked');
  expect((await services.sessions.loadHandle(created.handle)).state).toBe('none');
});
