/**
 * The failover follower on real connections. Sentinels refuse PUBLISH, so a plain redis-server
 * stands in for the sentinel whose `+switch-master` channel is followed (the channel and
 * message are the same), and a second one is the data node the followed client is on. An
 * announcement of the primary the client is already on leaves it alone (ioredis's own
 * detector drops it on every announcement: one burst of fast 503s per sentinel); one naming
 * another primary moves it, and moves it again each time it comes up elsewhere (a sentinel
 * that has not learnt of the failover yet names the old primary, which still takes writes
 * until Sentinel reconfigures it); one about another primary name is ignored.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { announcedPrimary, followFailovers, mustMove, stopFollowing } from '../../src/session/sentinel-failover.ts';
import { startRedis, type RedisInstance } from '../support/redis.ts';

let announcer: RedisInstance;
let data: RedisInstance;
let admin: Redis;

beforeAll(async () => {
  [announcer, data] = await Promise.all([startRedis(), startRedis()]);
  admin = new Redis({ host: '127.0.0.1', port: announcer.port });
});
afterAll(async () => {
  admin?.disconnect();
  await Promise.all([announcer?.stop(), data?.stop()]);
});

async function followers(count: number) {
  await vi.waitFor(async () => expect(await admin.pubsub('NUMSUB', '+switch-master')).toEqual(['+switch-master', count]), {
    timeout: 5_000,
    interval: 20,
  });
}

async function followedClient() {
  const client = new Redis({ host: '127.0.0.1', port: data.port, lazyConnect: true, retryStrategy: () => 50 });
  client.on('error', () => {});
  const drops: number[] = [];
  client.on('reconnecting', () => drops.push(Date.now()));
  await client.connect();
  followFailovers(client, { name: 'main', sentinels: [{ host: '127.0.0.1', port: announcer.port }] });
  // The follower's subscription is live once the announcer counts a subscriber on the channel.
  await followers(1);
  return { client, drops };
}

const announce = (message: string) => admin.publish('+switch-master', message);

describe('following +switch-master', () => {
  test('an announcement of the primary the client is on, or of another primary name, leaves the connection alone', async () => {
    const { client, drops } = await followedClient();
    try {
      expect(await announce(`main 127.0.0.1 1 127.0.0.1 ${data.port}`)).toBe(1);
      expect(await announce(`other 127.0.0.1 ${data.port} 127.0.0.1 1`)).toBe(1);
      // The message was delivered (PUBLISH counted one receiver); give it time to act.
      await new Promise((done) => setTimeout(done, 300));
      expect(drops).toEqual([]);
      expect(client.status).toBe('ready');
      expect(await client.ping()).toBe('PONG');
    } finally {
      stopFollowing(client);
      client.disconnect();
    }
  });

  test('an announcement of a primary elsewhere moves the connection, again each time it comes up elsewhere, until it is on the announced one', async () => {
    const { client, drops } = await followedClient();
    try {
      // The client can only reach `data` (a sentinel that did not know yet, as it were).
      expect(await announce(`main 127.0.0.1 ${data.port} 127.0.0.1 1`)).toBe(1);
      await vi.waitFor(() => expect(drops.length).toBeGreaterThanOrEqual(2), { timeout: 5_000, interval: 20 });
      // Now the primary it reaches is the announced one: it stays.
      expect(await announce(`main 127.0.0.1 1 127.0.0.1 ${data.port}`)).toBe(1);
      await vi.waitFor(() => expect(client.status).toBe('ready'), { timeout: 5_000, interval: 20 });
      const settled = drops.length;
      await new Promise((done) => setTimeout(done, 500));
      expect(drops.length).toBe(settled);
      expect(await client.ping()).toBe('PONG');
    } finally {
      stopFollowing(client);
      client.disconnect();
    }
  });

  test('the sentinel subscriptions close when the followed client is let go', async () => {
    const { client } = await followedClient();
    stopFollowing(client);
    client.disconnect();
    await followers(0);
  });

  test('the client ending on its own closes them too', async () => {
    const { client } = await followedClient();
    await client.quit();
    await followers(0);
  });
});

describe('reading an announcement', () => {
  test('name, then old and new address; only the new one for the configured name counts', () => {
    expect(announcedPrimary('main 10.0.0.1 6379 10.0.0.2 6380', 'main')).toEqual({ host: '10.0.0.2', port: 6380 });
    expect(announcedPrimary('other 10.0.0.1 6379 10.0.0.2 6380', 'main')).toBeUndefined();
    expect(announcedPrimary('main 10.0.0.1 6379 10.0.0.2', 'main')).toBeUndefined();
    expect(announcedPrimary('main 10.0.0.1 6379 10.0.0.2 port', 'main')).toBeUndefined();
    expect(announcedPrimary('main 10.0.0.1 6379 10.0.0.2 70000', 'main')).toBeUndefined();
  });

  test('a connection moves unless it is on the announced address (IPv4-mapped IPv6 is the same address)', () => {
    const primary = { host: '10.0.0.2', port: 6380 };
    expect(mustMove({ host: '10.0.0.2', port: 6380 }, primary)).toBe(false);
    expect(mustMove({ host: '::ffff:10.0.0.2', port: 6380 }, primary)).toBe(false);
    expect(mustMove({ host: '10.0.0.2', port: 6379 }, primary)).toBe(true);
    expect(mustMove({ host: '10.0.0.1', port: 6380 }, primary)).toBe(true);
    // Not connected, or a socket without a remote end: asking the sentinels again is the safe side.
    expect(mustMove(undefined, primary)).toBe(true);
    expect(mustMove({ host: undefined, port: undefined }, primary)).toBe(true);
  });
});
