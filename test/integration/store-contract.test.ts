/**
 * One contract suite for every SessionStore (src/session/store.ts), run against the memory
 * store, Redis standalone, a real three-master Redis Cluster and a Sentinel-managed primary.
 * Whatever the gateway relies on (TTL, set-if-exists, compare-and-set, locks with owners,
 * one-time claims, indexes, binary records) must hold identically everywhere; on a cluster every multi-key
 * command must stay in one slot.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { GatewayError } from '../../src/errors.ts';
import { MemoryStore } from '../../src/session/memory-store.ts';
import { createRedisClient, RedisStore } from '../../src/session/redis-store.ts';
import type { SessionStore } from '../../src/session/store.ts';
import {
  redisCommand,
  startRedis,
  startRedisCluster,
  startSentinel,
  type RedisCluster,
  type RedisInstance,
  type RedisSentinel,
} from '../support/redis.ts';
import { sleep } from '../support/time.ts';
import { redisConfig } from '../support/redis-config.ts';

const id = () => randomBytes(12).toString('base64url');
const SHORT = 150;
const LONG = 60_000;
const expired = { timeout: 3_000, interval: 25 };

async function collect(iterable: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

/**
 * `openPeer` gives a second store on the same data, as another gateway instance has (the
 * memory store's only peer is itself: it is one process).
 */
function storeContract(
  name: string,
  open: () => Promise<SessionStore>,
  openPeer: (store: SessionStore) => Promise<SessionStore> = open,
): void {
  describe(`${name}: SessionStore contract`, () => {
    let store: SessionStore;
    beforeAll(async () => {
      store = await open();
      await store.ping();
    });
    afterAll(() => store?.close());

    test('get/set, and a record is gone after its TTL', async () => {
      const h = id();
      expect(await store.get(h)).toBeNull();
      await store.set(h, 'sealed-1', LONG);
      expect(await store.get(h)).toBe('sealed-1');
      await store.set(h, 'sealed-2', SHORT);
      expect(await store.get(h)).toBe('sealed-2');
      await vi.waitFor(async () => expect(await store.get(h)).toBeNull(), expired);
    });

    test('update writes only while the record exists, and renews its TTL', async () => {
      const h = id();
      expect(await store.update(h, 'ghost', LONG)).toBe(false);
      expect(await store.get(h)).toBeNull();
      await store.set(h, 'v1', SHORT);
      expect(await store.update(h, 'v2', LONG)).toBe(true);
      await sleep(SHORT * 2);
      expect(await store.get(h)).toBe('v2');
      await store.destroy(h);
      expect(await store.update(h, 'v3', LONG)).toBe(false);
      expect(await store.get(h)).toBeNull();
    });

    test('replace is compare-and-set on the whole stored value', async () => {
      const h = id();
      expect(await store.replace(h, 'anything', 'new', LONG)).toBe(false);
      expect(await store.get(h)).toBeNull();
      await store.set(h, 'v1', LONG);
      expect(await store.replace(h, 'v0', 'lost', LONG)).toBe(false);
      expect(await store.get(h)).toBe('v1');
      expect(await store.replace(h, 'v1', 'v2', LONG)).toBe(true);
      expect(await store.get(h)).toBe('v2');
      expect(await store.replace(h, 'v1', 'v3', LONG)).toBe(false);
      expect(await store.get(h)).toBe('v2');
    });

    test('a binary record (one char per byte, every byte value) comes back exactly; compare-and-set holds on it', async () => {
      const h = id();
      const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i)).toString('latin1');
      const sealed = `\x02${all}${randomBytes(64).toString('latin1')}`;
      const next = `\x02${randomBytes(300).toString('latin1')}`;
      await store.set(h, sealed, LONG);
      expect(await store.get(h)).toBe(sealed);
      expect(await store.replace(h, `${sealed.slice(0, -1)}\x00`, next, LONG)).toBe(false);
      expect(await store.replace(h, sealed, next, LONG)).toBe(true);
      expect(await store.get(h)).toBe(next);
      expect(await store.update(h, sealed, LONG)).toBe(true);
      expect(await store.get(h)).toBe(sealed);
    });

    test('destroy removes the record and its lock; destroying nothing is fine', async () => {
      const h = id();
      await store.set(h, 'v', LONG);
      expect(await store.acquireLock(h, LONG)).toEqual(expect.any(String));
      await store.destroy(h);
      expect(await store.get(h)).toBeNull();
      expect(await store.isLocked(h)).toBe(false);
      expect(await store.acquireLock(h, LONG)).toEqual(expect.any(String));
      await store.destroy(id());
    });

    test('index sets: add, members, remove; other indexes are unaffected', async () => {
      const [index, other, h1, h2, h3] = [id(), id(), id(), id(), id()];
      expect(await store.indexMembers(index)).toEqual([]);
      await store.indexAdd(index, h1, LONG);
      await store.indexAdd(index, h2, LONG);
      await store.indexAdd(index, h2, LONG);
      await store.indexAdd(other, h3, LONG);
      expect((await store.indexMembers(index)).sort()).toEqual([h1, h2].sort());
      await store.indexRemove(index, [h1, id()]);
      expect(await store.indexMembers(index)).toEqual([h2]);
      await store.indexRemove(index, []);
      await store.indexRemove(index, [h2]);
      expect(await store.indexMembers(index)).toEqual([]);
      expect(await store.indexMembers(other)).toEqual([h3]);
    });

    test('an index lives at least as long as its longest-lived member, then expires', async () => {
      const [index, shortOnly] = [id(), id()];
      await store.indexAdd(index, 'long-lived', LONG);
      await store.indexAdd(index, 'short-lived', SHORT);
      // An index whose only member has the short TTL, added after it: once the store has expired
      // it, the short member's TTL has run out as well (the store's clock, not a guess).
      await store.indexAdd(shortOnly, 'h', SHORT);
      await vi.waitFor(async () => expect(await store.indexMembers(shortOnly)).toEqual([]), expired);
      // The long-lived member keeps the whole index, short-lived member included, for a minute.
      expect((await store.indexMembers(index)).sort()).toEqual(['long-lived', 'short-lived']);
    });

    test('scanHandles lists every live record, not expired or destroyed ones', async () => {
      const live = [id(), id(), id(), id(), id(), id()];
      const gone = id();
      const dead = id();
      for (const h of live) await store.set(h, 'v', LONG);
      await store.set(gone, 'v', LONG);
      await store.destroy(gone);
      await store.set(dead, 'v', 1);
      await vi.waitFor(async () => expect(await store.get(dead)).toBeNull(), expired);
      const seen = await collect(store.scanHandles());
      expect(seen).toEqual(expect.arrayContaining(live));
      expect(seen).not.toContain(gone);
      expect(seen).not.toContain(dead);
    });

    test('locks are exclusive, released only by their owner, and expire', async () => {
      const h = id();
      expect(await store.isLocked(h)).toBe(false);
      const owner = await store.acquireLock(h, LONG);
      expect(owner).toEqual(expect.any(String));
      expect(await store.isLocked(h)).toBe(true);
      expect(await store.acquireLock(h, LONG)).toBeNull();
      await store.releaseLock(h, 'not-the-owner');
      expect(await store.isLocked(h)).toBe(true);
      await store.releaseLock(h, owner as string);
      expect(await store.isLocked(h)).toBe(false);

      const second = await store.acquireLock(h, SHORT);
      expect(second).toEqual(expect.any(String));
      expect(second).not.toBe(owner);
      await vi.waitFor(async () => expect(await store.isLocked(h)).toBe(false), expired);
      const third = await store.acquireLock(h, LONG);
      expect(third).toEqual(expect.any(String));
      // The expired owner must not release the lock somebody else now holds.
      await store.releaseLock(h, second as string);
      expect(await store.isLocked(h)).toBe(true);
    });

    test('concurrent lock attempts: exactly one wins', async () => {
      const h = id();
      const owners = await Promise.all(Array.from({ length: 20 }, () => store.acquireLock(h, LONG)));
      expect(owners.filter((owner) => owner !== null)).toHaveLength(1);
    });

    test('claimOnce is true once per key until it expires', async () => {
      const key = id();
      const results = await Promise.all(Array.from({ length: 10 }, () => store.claimOnce(key, SHORT)));
      expect(results.filter(Boolean)).toHaveLength(1);
      expect(await store.claimOnce(key, SHORT)).toBe(false);
      expect(await store.claimOnce(id(), SHORT)).toBe(true);
      await vi.waitFor(async () => expect(await store.claimOnce(key, LONG)).toBe(true), expired);
      expect(await store.claimOnce(key, LONG)).toBe(false);
    });

    test('a one-time value is taken once, lives apart from session records and expires', async () => {
      const key = id();
      expect(await store.takeOneTime(key)).toBeNull();
      await store.putOneTime(key, 'sealed-handoff', LONG);
      const heard: string[] = [];
      const stop = store.onEnded((handle) => heard.push(handle));
      try {
        expect(await store.get(key)).toBeNull();
        expect(await collect(store.scanHandles())).not.toContain(key);
        const takes = await Promise.all(Array.from({ length: 10 }, () => store.takeOneTime(key)));
        expect(takes.filter((value) => value !== null)).toEqual(['sealed-handoff']);
        expect(await store.takeOneTime(key)).toBeNull();
        expect(heard).not.toContain(key);
      } finally {
        stop();
      }
      const short = id();
      await store.putOneTime(short, 'soon gone', SHORT);
      await sleep(SHORT * 2);
      expect(await store.takeOneTime(short)).toBeNull();
    });

    test('destroy announces the handle to onEnded listeners of every store on the same data', async () => {
      const peer = await openPeer(store);
      const heardByPeer: string[] = [];
      const heardHere: string[] = [];
      const stopPeer = peer.onEnded((handle) => heardByPeer.push(handle));
      const stopHere = store.onEnded((handle) => heardHere.push(handle));
      try {
        // Subscribing may take a moment (a connection to make): announce until it is heard.
        const probe = id();
        await vi.waitFor(async () => {
          await store.destroy(probe);
          expect(heardByPeer).toContain(probe);
          expect(heardHere).toContain(probe);
        }, expired);
        const h = id();
        await store.set(h, 'v', LONG);
        await store.destroy(h);
        await vi.waitFor(() => expect(heardByPeer).toContain(h), expired);
        await vi.waitFor(() => expect(heardHere).toContain(h), expired);
        expect(await store.get(h)).toBeNull();

        // A removed listener hears nothing more; the others still do.
        stopPeer();
        const later = id();
        await store.destroy(later);
        await vi.waitFor(() => expect(heardHere).toContain(later), expired);
        expect(heardByPeer).not.toContain(later);
      } finally {
        stopPeer();
        stopHere();
        if (peer !== store) await peer.close();
      }
    });

    test('a throwing listener neither fails destroy nor silences the other listeners', async () => {
      const heard: string[] = [];
      const stopThrowing = store.onEnded(() => {
        throw new Error('listener failure');
      });
      const stop = store.onEnded((handle) => heard.push(handle));
      try {
        const h = id();
        await vi.waitFor(async () => {
          await store.destroy(h);
          expect(heard).toContain(h);
        }, expired);
      } finally {
        stopThrowing();
        stop();
      }
    });

    test('records, locks, indexes and claims are separate namespaces', async () => {
      const k = id();
      await store.set(k, 'record', LONG);
      expect(await store.claimOnce(k, LONG)).toBe(true);
      expect(await store.acquireLock(k, LONG)).toEqual(expect.any(String));
      await store.indexAdd(k, 'member', LONG);
      await store.putOneTime(k, 'value', LONG);
      expect(await store.get(k)).toBe('record');
      expect(await store.indexMembers(k)).toEqual(['member']);
      expect(await store.takeOneTime(k)).toBe('value');
      expect(await store.get(k)).toBe('record');
    });
  });
}

storeContract(
  'MemoryStore',
  async () => new MemoryStore(),
  async (store) => store,
);

let redis: RedisInstance;
let cluster: RedisCluster;
let sentinel: RedisSentinel;
beforeAll(async () => {
  [redis, cluster, sentinel] = await Promise.all([startRedis(), startRedisCluster(), startSentinel()]);
}, 60_000);
afterAll(async () => {
  await Promise.all([redis?.stop(), cluster?.stop(), sentinel?.stop()]);
});

storeContract('RedisStore (standalone)', () => RedisStore.connect(redisConfig({ url: redis.url })));
storeContract('RedisStore (cluster)', () => RedisStore.connect(redisConfig({ cluster: cluster.seeds })));
// The primary is found through Sentinel (`session.redis.sentinel`), as an operator configures it.
storeContract('RedisStore (sentinel)', () =>
  RedisStore.connect(
    redisConfig({ sentinel: { name: sentinel.name, nodes: sentinel.sentinels.map(({ host, port }) => `redis://${host}:${port}`) } }),
  ),
);

describe('Redis specifics', () => {
  test('on a cluster, every key of one session hashes to one slot', async () => {
    const config = redisConfig({ cluster: cluster.seeds });
    const store = await RedisStore.connect(config);
    const client = createRedisClient(config);
    try {
      await client.connect();
      const handle = id();
      await store.set(handle, 'v', LONG);
      expect(await store.acquireLock(handle, LONG)).toEqual(expect.any(String));
      const keys: string[] = [];
      for (const node of (client as import('ioredis').Cluster).nodes('master')) {
        keys.push(...(await node.keys(`*${handle}*`)));
      }
      expect(keys).toHaveLength(2);
      const slots = await Promise.all(keys.map((key) => client.call('CLUSTER', 'KEYSLOT', key)));
      expect(new Set(slots).size).toBe(1);
      await store.destroy(handle);
      expect(await store.isLocked(handle)).toBe(false);
    } finally {
      client.disconnect();
      await store.close();
    }
  });

  test('a record is stored as its bytes, and one written as text by an older version reads back unchanged', async () => {
    const store = await RedisStore.connect(redisConfig({ url: redis.url }));
    try {
      const h = id();
      await store.set(h, '\x02\xff\x00\x80', LONG);
      expect(await redisCommand(redis.port, `STRLEN bff:s:{${h}}`)).toBe(':4');
      const old = id();
      const text = `v1.AAAAAAAA.${randomBytes(12).toString('base64url')}.${randomBytes(40).toString('base64url')}`;
      expect(await redisCommand(redis.port, `SET bff:s:{${old}} ${text}`)).toBe('+OK');
      expect(await store.get(old)).toBe(text);
    } finally {
      await store.close();
    }
  });

  test('index sets written by an older version (`i:` sets) are still read and pruned; new entries go to `h:` hashes', async () => {
    const store = await RedisStore.connect(redisConfig({ url: redis.url }));
    try {
      const [index, before, after] = [id(), id(), id()];
      expect(await redisCommand(redis.port, `SADD bff:i:{${index}} ${before}`)).toBe(':1');
      await store.indexAdd(index, after, LONG);
      expect(await redisCommand(redis.port, `TYPE bff:h:{${index}}`)).toBe('+hash');
      expect(await redisCommand(redis.port, `SCARD bff:i:{${index}}`)).toBe(':1');
      expect((await store.indexMembers(index)).sort()).toEqual([before, after].sort());
      await store.indexAdd(index, before, LONG);
      expect((await store.indexMembers(index)).sort()).toEqual([before, after].sort());
      await store.indexRemove(index, [before]);
      expect(await store.indexMembers(index)).toEqual([after]);
      expect(await redisCommand(redis.port, `SCARD bff:i:{${index}}`)).toBe(':0');
    } finally {
      await store.close();
    }
  });

  test('stored keys carry the prefix; two prefixes do not see each other', async () => {
    const a = await RedisStore.connect(redisConfig({ url: redis.url, keyPrefix: 'tenant-a:' }));
    const b = await RedisStore.connect(redisConfig({ url: redis.url, keyPrefix: 'tenant-b:' }));
    try {
      const h = id();
      await a.set(h, 'a-record', LONG);
      expect(await b.get(h)).toBeNull();
      expect(await collect(b.scanHandles())).not.toContain(h);
      const keys = await redisCommand(redis.port, `KEYS *${h}*`);
      expect(keys).toMatch(/^\*1$/);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  test('a subscriber whose connection is cut subscribes again and hears later announcements', async () => {
    const store = await RedisStore.connect(redisConfig({ url: redis.url }));
    const heard: string[] = [];
    const stop = store.onEnded((handle) => heard.push(handle));
    try {
      const probe = id();
      await vi.waitFor(async () => {
        await store.destroy(probe);
        expect(heard).toContain(probe);
      }, expired);
      expect(await redisCommand(redis.port, 'CLIENT KILL TYPE pubsub')).toMatch(/^:[1-9]/);
      const after = id();
      await vi.waitFor(
        async () => {
          await store.destroy(after);
          expect(heard).toContain(after);
        },
        { timeout: 10_000, interval: 100 },
      );
    } finally {
      stop();
      await store.close();
    }
  });

  test('a paused server answers session_store_unavailable after commandTimeout, not never', async () => {
    const store = await RedisStore.connect(redisConfig({ url: redis.url, commandTimeout: '300ms' }));
    try {
      await store.ping();
      expect(await redisCommand(redis.port, 'CLIENT PAUSE 2000 ALL')).toBe('+OK');
      const hung = new Promise((_, reject) => setTimeout(() => reject(new Error('store call hung')), 1_500));
      const error = await Promise.race([store.get(id()), hung]).catch((err: unknown) => err);
      expect(error).toBeInstanceOf(GatewayError);
      expect(error).toMatchObject({ code: 'session_store_unavailable', status: 503 });
    } finally {
      await redisCommand(redis.port, 'CLIENT UNPAUSE').catch(() => {});
      await store.close();
    }
  });

  test('a stopped server answers session_store_unavailable promptly, for every operation', async () => {
    const doomed = await startRedis();
    const store = await RedisStore.connect(redisConfig({ url: doomed.url, commandTimeout: '300ms' }));
    try {
      await store.set('h', 'v', LONG);
      await doomed.stop();
      const calls: Array<() => Promise<unknown>> = [
        () => store.get('h'),
        () => store.set('h', 'v', LONG),
        () => store.update('h', 'v', LONG),
        () => store.replace('h', 'v', 'w', LONG),
        () => store.destroy('h'),
        () => store.acquireLock('h', LONG),
        () => store.claimOnce('c', LONG),
        () => store.indexMembers('i'),
        () => store.ping(),
        () => collect(store.scanHandles()),
      ];
      for (const call of calls) {
        const hung = new Promise((_, reject) => setTimeout(() => reject(new Error('store call hung')), 1_500));
        const error = await Promise.race([call(), hung]).catch((err: unknown) => err);
        expect(error).toMatchObject({ code: 'session_store_unavailable' });
      }
    } finally {
      await store.close();
      await doomed.stop();
    }
  });
});
