/**
 * Sentinel with authentication, on real processes: a primary and a replica with `requirepass`
 * (plus an ACL user for the gateway) watched by three password-protected sentinels. The data
 * nodes get the configured username, password and db (`sentinel.primary`), the sentinels their
 * own password; a wrong one on either side is named by `check --connect`'s probe; the store
 * follows a manual failover (old primary demoted, still up) and survives the primary being
 * killed under load: a bounded burst of errors that stops after the failover, and every session
 * that was replicated before the kill still answers.
 */
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { ConfigError } from '../../src/config/load.ts';
import { createLogger } from '../../src/log.ts';
import { probeRedis } from '../../src/session/redis-probe.ts';
import { RedisStore } from '../../src/session/redis-store.ts';
import { authedCommand, startSentinelSetup, type RedisSentinelSetup } from '../support/redis.ts';
import { redisConfig } from '../support/redis-config.ts';

const DATA_PASSWORD = `data-${randomBytes(8).toString('hex')}`;
const GATEWAY_USER = { name: 'gateway', password: `gw-${randomBytes(8).toString('hex')}` };
const SENTINEL_PASSWORD = `sentinel-${randomBytes(8).toString('hex')}`;
const DB = 3;

const sentinelRedisConfig = (sentinel: Record<string, unknown>) => redisConfig({ sentinel });

let setup: RedisSentinelSetup;
const sentinelConfig = (overrides: Record<string, unknown> = {}) => ({
  name: setup.name,
  nodes: setup.nodeUrls,
  password: SENTINEL_PASSWORD,
  primary: { username: GATEWAY_USER.name, password: GATEWAY_USER.password, db: DB },
  ...overrides,
});

beforeAll(async () => {
  setup = await startSentinelSetup({
    password: DATA_PASSWORD,
    user: GATEWAY_USER,
    sentinelPassword: SENTINEL_PASSWORD,
    replicas: 1,
    sentinels: 3,
  });
}, 60_000);
afterAll(() => setup?.stop());

const dataPorts = () => [setup.primary.port, ...setup.replicas.map((replica) => replica.port)];

/**
 * Waits until the replica has acknowledged everything the primary has written so far: what
 * WAIT does, for writes made on another connection (the store's own).
 */
async function replicated(primaryPort: number, replicaPort: number): Promise<void> {
  const offsetOf = (info: unknown, field: string) => Number(new RegExp(`${field}:(\\d+)`).exec(String(info))?.[1] ?? -1);
  const primaryOffset = offsetOf(await setup.dataCommand(primaryPort, 'INFO', 'replication'), 'master_repl_offset');
  expect(primaryOffset).toBeGreaterThan(0);
  await vi.waitFor(
    async () => {
      const info = String(await setup.dataCommand(replicaPort, 'INFO', 'replication'));
      expect(info).toContain('master_link_status:up');
      expect(offsetOf(info, 'slave_repl_offset')).toBeGreaterThanOrEqual(primaryOffset);
    },
    { timeout: 30_000, interval: 50 },
  );
}

describe.sequential('Sentinel with authentication', () => {
  test('the data node gets the configured username, password and db; the sentinels their own password', async () => {
    const store = await RedisStore.connect(sentinelRedisConfig(sentinelConfig()));
    try {
      await vi.waitFor(() => store.ping(), { timeout: 5_000, interval: 50 });
      await store.set('db-check', 'v', 60_000);
      expect(await store.get('db-check')).toBe('v');
      const keyspace = String(await setup.dataCommand(setup.primary.port, 'INFO', 'keyspace'));
      expect(keyspace).toMatch(new RegExp(`^db${DB}:keys=\\d+`, 'm'));
      expect(keyspace).not.toMatch(/^db0:/m);
      const clients = String(await setup.dataCommand(setup.primary.port, 'CLIENT', 'LIST'));
      expect(clients.split('\n').some((line) => line.includes(`user=${GATEWAY_USER.name}`) && line.includes(` db=${DB} `))).toBe(true);
    } finally {
      await store.close();
    }
  });

  test('the probe behind check --connect answers, and names a wrong password on either side', async () => {
    expect(await probeRedis(sentinelRedisConfig(sentinelConfig()))).toMatchObject({
      ok: true,
      target: { mode: 'sentinel', name: setup.name },
    });

    const wrongData = await probeRedis(
      sentinelRedisConfig(sentinelConfig({ primary: { username: GATEWAY_USER.name, password: 'not-the-password', db: DB } })),
    );
    expect(wrongData.ok).toBe(false);
    expect(wrongData.problem).toMatch(/^authentication failed: .*WRONGPASS/);

    const noData = await probeRedis(sentinelRedisConfig(sentinelConfig({ primary: { db: DB } })));
    expect(noData.ok).toBe(false);
    expect(noData.problem).toMatch(/NOAUTH/);

    const wrongSentinel = await probeRedis(sentinelRedisConfig(sentinelConfig({ password: 'not-the-sentinel-password' })));
    expect(wrongSentinel.ok).toBe(false);
    expect(wrongSentinel.problem).toMatch(/^authentication failed: .*sentinels.*WRONGPASS/);
    for (const result of [wrongData, noData, wrongSentinel]) {
      expect(result.problem).not.toContain('not-the-');
      expect(result.problem).not.toContain(DATA_PASSWORD);
    }
  });

  test('a manual failover (the old primary stays up, demoted): the store follows to the new primary', async () => {
    const store = await RedisStore.connect(sentinelRedisConfig(sentinelConfig()));
    try {
      await vi.waitFor(() => store.ping(), { timeout: 5_000, interval: 50 });
      const before = await setup.primaryPort();
      const [other] = dataPorts().filter((port) => port !== before);
      await store.set('manual-before', 'kept', 600_000);
      await replicated(before, other!);
      await authedCommand(setup.sentinelNodes[0]!.port, SENTINEL_PASSWORD, ['SENTINEL', 'FAILOVER', setup.name]);
      await vi.waitFor(async () => expect(await setup.primaryPort()).toBe(other), { timeout: 30_000, interval: 200 });
      // The store's writes land on the new primary (its SET count moves): until Sentinel
      // reconfigures it, the old primary still takes writes, so a write that succeeds proves
      // nothing by itself. A store still talking to the demoted node gets READONLY afterwards.
      const setsOn = async (port: number) =>
        Number(/cmdstat_set:calls=(\d+)/.exec(String(await setup.dataCommand(port, 'INFO', 'commandstats')))?.[1] ?? 0);
      await vi.waitFor(
        async () => {
          const before = await setsOn(other!);
          await store.set('manual-after', 'v', 600_000);
          expect(await setsOn(other!)).toBeGreaterThan(before);
        },
        { timeout: 20_000, interval: 100 },
      );
      // Once on the new primary it stays there: every sentinel announces the failover when it
      // learns of it (up to a hello period, 2 s, apart), and none of those may drop the
      // connection again (each drop is a window of fast 503s). Three hello periods of calls.
      const failures: string[] = [];
      const until = Date.now() + 6_000;
      for (let i = 0; Date.now() < until; i++) {
        await store.set(`manual-${i}`, 'v', 600_000).catch((err: Error) => failures.push(err.message));
        await new Promise((done) => setTimeout(done, 5));
      }
      expect(failures).toEqual([]);
      expect(String(await setup.dataCommand(other!, 'INFO', 'replication'))).toContain('role:master');
      expect(await store.get('manual-before')).toBe('kept');
      // The demoted node syncs from the new primary, ready to be promoted again (Sentinel
      // reconfigures it at its next INFO round, up to ~10 s later).
      await replicated(other!, before);
    } finally {
      await store.close();
    }
  }, 90_000);

  test('the primary killed under load: a bounded burst of errors that stops after the failover, no replicated session lost', async () => {
    const lines: string[] = [];
    const log = createLogger({
      level: 'info',
      destination: new Writable({
        write(chunk: Buffer, _encoding, done) {
          lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
          done();
        },
      }),
    });
    const store = await RedisStore.connect(sentinelRedisConfig(sentinelConfig()), { log });
    try {
      await vi.waitFor(() => store.ping(), { timeout: 5_000, interval: 50 });
      const sessions = new Map<string, string>();
      for (let i = 0; i < 200; i++) sessions.set(`before-${i}-${randomBytes(6).toString('hex')}`, `sealed-${i}`);
      for (const [handle, sealed] of sessions) await store.set(handle, sealed, 600_000);
      const oldPrimary = await setup.primaryPort();
      const replicaPort = dataPorts().find((port) => port !== oldPrimary)!;
      await replicated(oldPrimary, replicaPort);

      // Eight clients reading the replicated sessions and writing new ones, nonstop.
      const handles = [...sessions.keys()];
      const errors: number[] = [];
      let lost = 0;
      let succeeded = 0;
      let running = true;
      const worker = async (n: number) => {
        for (let i = 0; running; i++) {
          const handle = handles[(n * 31 + i) % handles.length]!;
          try {
            const value = await store.get(handle);
            if (value !== sessions.get(handle)) lost += 1;
            await store.set(`load-${n}-${i}`, 'v', 60_000);
            succeeded += 1;
          } catch {
            errors.push(Date.now());
            await new Promise((done) => setTimeout(done, 20));
          }
        }
      };
      const workers = Array.from({ length: 8 }, (_, n) => worker(n));
      await new Promise((done) => setTimeout(done, 300));
      expect(errors).toEqual([]);

      const killedAt = Date.now();
      [setup.primary, ...setup.replicas].find((instance) => instance.port === oldPrimary)!.kill();
      await vi.waitFor(async () => expect(await setup.primaryPort()).toBe(replicaPort), { timeout: 30_000, interval: 200 });
      // Served by the new primary: a write succeeds through the store again.
      await vi.waitFor(() => store.set('after-failover', 'v', 60_000), { timeout: 15_000, interval: 50 });
      const recoveredAt = Date.now();
      const succeededBeforeTail = succeeded;
      await new Promise((done) => setTimeout(done, 2_000));
      running = false;
      await Promise.all(workers);

      // The burst happened, and it is over: nothing failed once the store was answering again
      // (a little slack for calls already in flight at that moment), and work went on.
      expect(errors.length).toBeGreaterThan(0);
      expect(errors.filter((at) => at > recoveredAt + 250)).toEqual([]);
      expect(Math.max(...errors) - killedAt).toBeLessThan(20_000);
      expect(succeeded - succeededBeforeTail).toBeGreaterThan(50);
      expect(lost).toBe(0);
      for (const [handle, sealed] of sessions) expect(await store.get(handle)).toBe(sealed);

      // Logged per change of state, not per failed call.
      const redisLines = lines.map((line) => JSON.parse(line) as { msg: string }).filter((entry) => entry.msg.startsWith('redis:'));
      expect(redisLines[0]?.msg).toBe('redis: connected');
      expect(redisLines.some((entry) => entry.msg.startsWith('redis: connection lost'))).toBe(true);
      expect(redisLines.at(-1)?.msg).toBe('redis: connection recovered');
      expect(redisLines.length).toBeLessThanOrEqual(6);
      expect(errors.length).toBeGreaterThan(redisLines.length);
      expect(lines.join('\n')).not.toContain(GATEWAY_USER.password);
    } finally {
      await store.close();
    }
  }, 90_000);
});

describe('Sentinel settings are checked', () => {
  const problems = (sentinel: Record<string, unknown>): string[] => {
    try {
      sentinelRedisConfig(sentinel);
      return [];
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      return err.problems;
    }
  };

  test('credentials or a db in a sentinel URL, mixed TLS, a user without password, a bad db: each named with its key', () => {
    expect(
      problems({
        name: 'mymaster',
        nodes: ['redis://:secret@10.0.0.1:26379', 'redis://10.0.0.2:26379/2', 'rediss://10.0.0.3:26379'],
        username: 'watcher',
        primary: { username: 'gateway', db: -1, tls: 'yes' },
      }).sort(),
    ).toEqual(
      [
        'session.redis.sentinel.nodes[0]: must not carry credentials: set sentinel.username/password for the sentinels, sentinel.primary.username/password for the data nodes',
        'session.redis.sentinel.nodes[1]: must not carry a database number or options: set sentinel.primary.db',
        'session.redis.sentinel.primary.db: must be a database number (0, 1, ...)',
        'session.redis.sentinel.primary.tls: must be true or false',
      ].sort(),
    );
    expect(
      problems({
        name: 'mymaster',
        nodes: ['redis://10.0.0.2:26379', 'rediss://10.0.0.3:26379'],
        username: 'watcher',
        primary: { username: 'gateway' },
      }).sort(),
    ).toEqual([
      'session.redis.sentinel.nodes: must all be redis:// or all rediss://',
      'session.redis.sentinel.password: is required with username',
      'session.redis.sentinel.primary.password: is required with primary.username',
    ]);
  });

  test('the full shape: sentinels and data nodes each get their own settings', () => {
    const config = sentinelRedisConfig({
      name: 'mymaster',
      nodes: ['rediss://10.0.0.1', 'rediss://10.0.0.2:26380'],
      username: 'watcher',
      password: 's',
      primary: { username: 'gateway', password: 'p', db: 2, tls: true },
    });
    expect(config.sentinel).toEqual({
      name: 'mymaster',
      nodes: ['rediss://10.0.0.1', 'rediss://10.0.0.2:26380'],
      username: 'watcher',
      password: 's',
      primary: { username: 'gateway', password: 'p', db: 2, tls: true },
    });
    expect(sentinelRedisConfig({ name: 'mymaster', nodes: ['redis://10.0.0.1:26379'], primary: {} }).sentinel?.primary).toEqual({
      db: 0,
      tls: false,
    });
  });
});
