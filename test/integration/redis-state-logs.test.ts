/**
 * The Redis store says what is wrong: one log line per change of the connection's state
 * (connected, unreachable, lost, recovered, authentication failed) with the cause's code, never
 * one per request and never a credential; a request that fails meanwhile carries the cause
 * instead of ioredis' "Stream isn't writeable".
 */
import { randomBytes } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, test, vi } from 'vitest';
import { GatewayError } from '../../src/errors.ts';
import { createLogger } from '../../src/log.ts';
import { RedisStore } from '../../src/session/redis-store.ts';
import { authedCommand, freePort, startRedis, type RedisInstance } from '../support/redis.ts';
import { until } from '../support/time.ts';
import { redisConfig } from '../support/redis-config.ts';

/** Every JSON line the logger writes, as text and parsed. */
function captureLog() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  const log = createLogger({ level: 'debug', destination: stream });
  return {
    log,
    lines,
    messages: () =>
      lines
        .map(
          (line) =>
            JSON.parse(line) as {
              msg: string;
              level: number;
              store?: string;
              cause?: { code?: string; message: string };
              redis?: Record<string, unknown>;
            },
        )
        .filter((entry) => entry.msg.startsWith('redis:')),
  };
}

/**
 * How many times the store's connection has tried to reconnect (ioredis' `reconnecting` event):
 * the proof that retries happened while the log stayed quiet, instead of a guess at how long
 * ioredis' backoff takes.
 */
function reconnectAttempts(store: RedisStore): () => number {
  let attempts = 0;
  (store as unknown as { client: EventEmitter }).client.on('reconnecting', () => attempts++);
  return () => attempts;
}

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});

describe('Redis connection state in the logs', () => {
  test('a wrong password is logged once as an authentication failure with its code, never per request, never the password', async () => {
    const password = `right-${randomBytes(6).toString('hex')}`;
    const wrong = `wrong-${randomBytes(6).toString('hex')}`;
    const redis = await startRedis({ password });
    cleanups.push(() => redis.stop());
    const capture = captureLog();
    const store = await RedisStore.connect(redisConfig({ url: `redis://:${wrong}@127.0.0.1:${redis.port}/0` }), { log: capture.log });
    cleanups.push(() => store.close());

    const attempts = reconnectAttempts(store);
    // ioredis retries every 100 ms–2 s, each retry refused again; requests keep failing.
    await until(() => attempts() >= 3 && capture.messages().length >= 1, 'three refused reconnects and the authentication line', 15_000);
    const failures: GatewayError[] = [];
    for (let i = 0; i < 20; i++) {
      await store.get(`h${i}`).then(
        () => expect.fail('a store call succeeded with a wrong password'),
        (err: unknown) => failures.push(err as GatewayError),
      );
    }
    // More refused retries after the requests: none of them may log again.
    const afterRequests = attempts();
    await until(() => attempts() >= afterRequests + 2, 'two more refused reconnects after the requests', 15_000);

    expect(failures).toHaveLength(20);
    for (const failure of failures) {
      expect(failure).toBeInstanceOf(GatewayError);
      expect(failure.code).toBe('session_store_unavailable');
      expect(failure.detail).toMatch(/WRONGPASS/);
      expect(failure.detail).not.toMatch(/Stream isn't writeable/);
    }
    const entries = capture.messages();
    expect(entries.map((entry) => entry.msg)).toEqual(['redis: authentication failed; check the configured username and password']);
    expect(entries[0]?.level).toBe(50);
    expect(entries[0]?.cause?.code).toBe('WRONGPASS');
    expect(entries[0]?.redis).toEqual({ mode: 'standalone', node: `127.0.0.1:${redis.port}` });
    const all = capture.lines.join('\n');
    expect(all).not.toContain(wrong);
    expect(all).not.toContain(password);
  });

  test('unreachable at start, recovered, lost and recovered again, lost at shutdown: one line each', async () => {
    const port = await freePort();
    const capture = captureLog();
    const store = await RedisStore.connect(redisConfig({ url: `redis://127.0.0.1:${port}/0` }), { log: capture.log });
    cleanups.push(() => store.close());
    const attempts = reconnectAttempts(store);
    // Several refused attempts (100, 200, 300 ms ...) while nothing listens.
    await until(() => attempts() >= 3, 'three refused connection attempts', 15_000);
    await expect(store.ping()).rejects.toMatchObject({
      code: 'session_store_unavailable',
      detail: expect.stringContaining('ECONNREFUSED'),
    });
    expect(capture.messages().map((entry) => [entry.msg, entry.cause?.code])).toEqual([
      ['redis: unreachable; retrying in the background', 'ECONNREFUSED'],
    ]);

    let redis: RedisInstance = await startRedis({ port });
    cleanups.push(() => redis.stop());
    await vi.waitFor(() => store.ping(), { timeout: 5_000, interval: 50 });
    await vi.waitFor(() => expect(capture.messages().at(-1)?.msg).toBe('redis: connection recovered'), { timeout: 2_000 });

    // The server drops the store's connection; the client reconnects at once.
    const killed = await authedCommand(port, undefined, ['CLIENT', 'KILL', 'TYPE', 'normal']);
    expect(killed).toBeGreaterThanOrEqual(1);
    await vi.waitFor(() => store.ping(), { timeout: 5_000, interval: 50 });
    await vi.waitFor(
      () =>
        expect(
          capture
            .messages()
            .map((entry) => entry.msg)
            .slice(2),
        ).toEqual(['redis: connection lost; reconnecting in the background', 'redis: connection recovered']),
      { timeout: 2_000 },
    );

    // Redis goes away for good: one "lost", then silence however many requests fail.
    await redis.stop();
    await vi.waitFor(() => expect(capture.messages()).toHaveLength(5), { timeout: 3_000 });
    for (let i = 0; i < 20; i++) await expect(store.get(`h${i}`)).rejects.toBeInstanceOf(GatewayError);
    // Refused reconnects after the requests: none of them may log again.
    const afterRequests = attempts();
    await until(() => attempts() >= afterRequests + 2, 'two more refused reconnects after the requests', 15_000);
    expect(capture.messages().map((entry) => entry.msg)).toEqual([
      'redis: unreachable; retrying in the background',
      'redis: connection recovered',
      'redis: connection lost; reconnecting in the background',
      'redis: connection recovered',
      'redis: connection lost; reconnecting in the background',
    ]);
    // And back once more, on the same port.
    redis = await startRedis({ port });
    await vi.waitFor(() => store.ping(), { timeout: 5_000, interval: 50 });
    await vi.waitFor(() => expect(capture.messages().at(-1)?.msg).toBe('redis: connection recovered'), { timeout: 2_000 });
    expect(capture.messages()).toHaveLength(6);
  });

  test('a healthy start logs "connected" once; a deliberate close logs nothing', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const capture = captureLog();
    const store = await RedisStore.connect(redisConfig({ url: redis.url }), { log: capture.log.child({ store: 'closed' }) });
    await store.set('h', 'v', 10_000);
    expect(await store.get('h')).toBe('v');
    await store.close();
    // A known event afterwards, on the same log: a second store connects, then loses its
    // connection when Redis stops. Whatever the closed store said about its close (a "lost"
    // line) would have been written before these.
    const witness = await RedisStore.connect(redisConfig({ url: redis.url }), { log: capture.log.child({ store: 'witness' }) });
    cleanups.push(() => witness.close());
    await until(() => capture.messages().some((entry) => entry.store === 'witness'), 'the witness store connected', 10_000);
    await redis.stop();
    await until(
      () => capture.messages().some((entry) => entry.store === 'witness' && entry.msg.includes('connection lost')),
      'the witness store logged its lost connection',
      10_000,
    );
    expect(capture.messages().map((entry) => [entry.store, entry.msg, entry.level])).toEqual([
      ['closed', 'redis: connected', 30],
      ['witness', 'redis: connected', 30],
      ['witness', 'redis: connection lost; reconnecting in the background', 40],
    ]);
  });
});
