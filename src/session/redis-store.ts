/**
 * Redis store (standalone, Sentinel or Cluster) on ioredis.
 *
 * "Redis is down" must be a fast 503, never a hung request: commands time out after
 * `commandTimeout`, are not queued while disconnected (`enableOfflineQueue: false`) and are not
 * retried across reconnects. The connection itself keeps reconnecting in the background.
 *
 * Key layout (prefix `bff:` by default), every multi-key command stays inside one hash slot:
 *   s:{handle}  sealed session record        l:{handle}  refresh lock (same slot as s:)
 *   h:{index}   handles for a sid/sub        c:{key}     one-time claims (state, jti)
 *   o:{key}     one-time values (logout hand-off), taken with one atomic get-and-delete
 *   i:{index}   handles for a sid/sub as written before h: (read and pruned, no longer written)
 *
 * Session records are binary (record-codec.ts): the store's strings carry one byte per char
 * (latin1) and go to and from Redis as Buffers, so Redis holds the raw bytes. A record written
 * as text by an older version is ASCII and reads back unchanged.
 *
 * An index is a hash of handle -> '' rather than a set: Redis keeps a small hash as a listpack
 * (a small set of strings only from Redis 7.2), about 100 bytes less per index key. Indexes
 * written as sets (`i:`) by an older version are still read and pruned until they expire.
 *
 * Ended sessions are announced on the pub/sub channel `<prefix>ended` (the handle as message):
 * `destroy` publishes, and a store with `onEnded` listeners holds one extra, dedicated subscriber
 * connection (a connection in subscriber mode can run nothing else). Plain PUBLISH reaches every
 * subscriber of a standalone server, of a Sentinel-managed primary, and on a cluster every
 * node's subscribers (cluster buses forward it). The subscriber re-subscribes whenever it
 * reconnects; what is published while it is down is lost, which listeners allow for.
 *
 * Record writes (set, update, replace) are announced on `<prefix>changed` the same way, for
 * the in-process session caches of every instance (session-cache.ts). The change feed is live
 * only while both channels are subscribed on a connected subscriber; every loss of that state
 * (and every recovery) is told to the watchers as "anything may have changed".
 */
import { Redis, Cluster, type RedisOptions, type ClusterOptions } from 'ioredis';
import { GatewayError } from '../errors.ts';
import type { RedisConfig } from '../config/load.ts';
import type { ChangeFeed, SessionStore } from './store.ts';
import { randomUUID } from 'node:crypto';
import type { Logger } from '../log.ts';
import { followFailovers, followFailoversLike, stopFollowing } from './sentinel-failover.ts';
import { causeOf, describeTarget, redisSecrets, watchConnection, type ConnectionWatch } from './redis-state.ts';

type Client = Redis | Cluster;

const RELEASE_LOCK = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0`;
const REPLACE = `if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end return 0`;
/** GETDEL needs Redis 6.2; a script is atomic on every version. */
const TAKE = `local value = redis.call('get', KEYS[1]) if value then redis.call('del', KEYS[1]) end return value`;
const INDEX_ADD = `redis.call('hset', KEYS[1], ARGV[1], '')
if redis.call('pttl', KEYS[1]) < tonumber(ARGV[2]) then redis.call('pexpire', KEYS[1], ARGV[2]) end
return 1`;

/** A store string (one char per byte) as the bytes it stands for. */
function bytes(value: string): Buffer {
  return Buffer.from(value, 'latin1');
}

function hostPort(url: string, defaultPort = 6379): { host: string; port: number } {
  const parsed = new URL(url);
  return { host: parsed.hostname.replace(/^\[|\]$/g, ''), port: Number(parsed.port || defaultPort) };
}

function connectionOptions(url: string | undefined, commandTimeoutMs: number): RedisOptions {
  const parsed = url ? new URL(url) : undefined;
  const db = parsed && parsed.pathname.length > 1 ? Number(parsed.pathname.slice(1)) : 0;
  return {
    username: parsed?.username ? decodeURIComponent(parsed.username) : undefined,
    password: parsed?.password ? decodeURIComponent(parsed.password) : undefined,
    db: Number.isInteger(db) ? db : 0,
    tls: parsed?.protocol === 'rediss:' ? {} : undefined,
    commandTimeout: commandTimeoutMs,
    connectTimeout: Math.max(commandTimeoutMs, 2000),
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    lazyConnect: true,
    retryStrategy: (attempt: number) => Math.min(100 * attempt, 2000),
  };
}

/**
 * `followFailovers: false` for a short-lived client (a probe) that needs no sentinel
 * subscriptions of its own.
 */
export function createRedisClient(config: RedisConfig, options: { followFailovers?: boolean } = {}): Client {
  if (config.cluster) {
    const options: ClusterOptions = {
      redisOptions: connectionOptions(config.cluster[0], config.commandTimeoutMs),
      enableOfflineQueue: false,
      lazyConnect: true,
      clusterRetryStrategy: (attempt: number) => Math.min(100 * attempt, 2000),
    };
    return new Cluster(config.cluster.map(hostPort), options);
  }
  if (config.sentinel) {
    const { sentinel } = config;
    const primary = sentinel.primary;
    const sentinels = sentinel.nodes.map((node) => hostPort(node, 26379));
    const sentinelTLS = sentinel.nodes[0]?.startsWith('rediss:') === true;
    const client = new Redis({
      ...connectionOptions(undefined, config.commandTimeoutMs),
      // The data nodes (the primary Sentinel names, and any it names after a failover).
      username: primary?.username,
      password: primary?.password || undefined,
      db: primary?.db ?? 0,
      tls: primary?.tls ? {} : undefined,
      enableTLSForSentinelMode: primary?.tls === true,
      // The sentinels themselves: their own credentials and TLS.
      sentinels,
      name: sentinel.name,
      sentinelUsername: sentinel.username,
      sentinelPassword: sentinel.password || undefined,
      sentinelTLS: sentinelTLS ? {} : undefined,
      sentinelCommandTimeout: config.commandTimeoutMs,
      // A failover that leaves the old primary running (manual, or a partition that heals)
      // would otherwise keep this connection on a node that is now a read-only replica: the
      // first write there moves it, and so does the sentinels' announcement of the failover.
      reconnectOnError: (err: Error) => err.message.startsWith('READONLY'),
    });
    if (options.followFailovers === false) return client;
    followFailovers(client, {
      name: sentinel.name,
      sentinels,
      username: sentinel.username,
      password: sentinel.password || undefined,
      tls: sentinelTLS,
    });
    return client;
  }
  return new Redis(config.url as string, connectionOptions(config.url, config.commandTimeoutMs));
}

/** A second connection like `client` (same nodes, credentials, Sentinel or Cluster) for SUBSCRIBE. */
function subscriberFor(client: Client): Client {
  // Unlike commands, a subscription may wait for a connection: it is re-made on every reconnect.
  const overrides = { lazyConnect: false, enableOfflineQueue: true, autoResubscribe: false, commandTimeout: undefined };
  if (client instanceof Cluster) {
    return client.duplicate([], { ...overrides, redisOptions: { ...client.options.redisOptions, ...overrides } });
  }
  const copy = client.duplicate(overrides);
  followFailoversLike(client, copy);
  return copy;
}

export class RedisStore implements SessionStore {
  private readonly prefix: string;
  private readonly endedChannel: string;
  private readonly endedListeners = new Set<(handle: string) => void>();
  private readonly changedChannel: string;
  private readonly changeListeners = new Set<(handle: string | null) => void>();
  /** Both channels subscribed on a connected subscriber: announcements will be heard. */
  private feedLive = false;
  private subscriber: Client | undefined;

  private readonly log: Logger | undefined;
  private readonly watch: ConnectionWatch | undefined;

  /**
   * `options.watch` follows the connection's state (see redis-state.ts); without it, connection
   * errors are merely swallowed (ioredis would print every reconnect attempt).
   */
  constructor(
    private readonly client: Client,
    keyPrefix: string,
    options: { log?: Logger | undefined; watch?: ConnectionWatch | undefined } = {},
  ) {
    this.prefix = keyPrefix;
    this.endedChannel = `${keyPrefix}ended`;
    this.changedChannel = `${keyPrefix}changed`;
    this.log = options.log;
    this.watch = options.watch;
    if (!this.watch) client.on('error', () => {});
  }

  /**
   * `options.log` receives one line per change of the connection's state (connected, lost,
   * recovered, unreachable, authentication failed) with the cause, never one per request.
   */
  static async connect(config: RedisConfig, options: { log?: Logger | undefined } = {}): Promise<RedisStore> {
    const client = createRedisClient(config);
    const watch = watchConnection(client, { log: options.log, target: describeTarget(config), secrets: redisSecrets(config) });
    const store = new RedisStore(client, config.keyPrefix, { log: options.log, watch });
    // A gateway may start before Redis does: the first connect is allowed to fail, the client
    // keeps retrying in the background and /readyz reports "session store" until it answers.
    await client.connect().catch(() => {});
    return store;
  }

  private key(kind: 's' | 'l' | 'h' | 'i' | 'c' | 'o', id: string): string {
    return `${this.prefix}${kind}:{${id}}`;
  }

  private async run<T>(operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (err) {
      // While disconnected ioredis only says "Stream isn't writeable": name the reason instead.
      const reason = this.watch && this.watch.state !== 'up' ? this.watch.lastCause : undefined;
      const detail = reason ? `redis: not connected (${reason.message})` : `redis: ${(err as Error).message}`;
      throw new GatewayError('session_store_unavailable', { detail, cause: err });
    }
  }

  async get(handle: string): Promise<string | null> {
    const value = await this.run(() => this.client.getBuffer(this.key('s', handle)));
    return value === null ? null : value.toString('latin1');
  }

  async set(handle: string, sealed: string, ttlMs: number): Promise<void> {
    await this.run(() => this.client.set(this.key('s', handle), bytes(sealed), 'PX', Math.max(1, Math.ceil(ttlMs))));
    await this.announceChange(handle);
  }

  async update(handle: string, sealed: string, ttlMs: number): Promise<boolean> {
    const result = await this.run(() => this.client.set(this.key('s', handle), bytes(sealed), 'PX', Math.max(1, Math.ceil(ttlMs)), 'XX'));
    if (result === 'OK') await this.announceChange(handle);
    return result === 'OK';
  }

  async replace(handle: string, expected: string, sealed: string, ttlMs: number): Promise<boolean> {
    const result = await this.run(() =>
      this.client.eval(REPLACE, 1, this.key('s', handle), bytes(expected), bytes(sealed), String(Math.max(1, Math.ceil(ttlMs)))),
    );
    if (result === 1) await this.announceChange(handle);
    return result === 1;
  }

  /** After the write, so a cache that drops its copy and re-reads finds the new record. */
  private async announceChange(handle: string): Promise<void> {
    this.notifyChange(handle);
    await this.client.publish(this.changedChannel, handle).catch(() => 0);
  }

  private notifyChange(handle: string | null): void {
    for (const listener of this.changeListeners) {
      try {
        listener(handle);
      } catch {
        // The listener's own business.
      }
    }
  }

  watchChanges(listener: (handle: string | null) => void): ChangeFeed {
    this.changeListeners.add(listener);
    this.subscribe();
    const store = this;
    return {
      get live() {
        return store.feedLive && store.changeListeners.has(listener);
      },
      close: () => {
        this.changeListeners.delete(listener);
      },
    };
  }

  private setFeedLive(live: boolean): void {
    if (this.feedLive === live) return;
    this.feedLive = live;
    // Going down: drop everything now. Coming back: whatever was announced meanwhile is lost.
    this.notifyChange(null);
  }

  async destroy(handle: string): Promise<void> {
    await this.run(() => this.client.del(this.key('s', handle), this.key('l', handle)));
    this.notifyChange(handle);
    // After the delete, so a listener that re-reads the record finds it gone. A failed publish
    // does not undo the logout: listeners re-check records by themselves.
    await this.client.publish(this.endedChannel, handle).catch(() => 0);
  }

  onEnded(listener: (handle: string) => void): () => void {
    this.endedListeners.add(listener);
    this.subscribe();
    return () => this.endedListeners.delete(listener);
  }

  private subscribe(): void {
    if (this.subscriber) return;
    const subscriber = subscriberFor(this.client);
    this.subscriber = subscriber;
    subscriber.on('error', () => {});
    // 'ready' comes after every (re)connect; subscribing twice to one channel is harmless. A
    // refusal (an ACL without the channel) is told once: it persists until someone fixes it.
    let refusal: string | undefined;
    let changeRefusal: string | undefined;
    // Any sign of the connection going away: the change feed is no longer certain.
    for (const event of ['close', 'end', 'reconnecting', 'error']) subscriber.on(event, () => this.setFeedLive(false));
    subscriber.on('ready', () => {
      this.setFeedLive(false);
      let subscribed = 0;
      const both = () => {
        subscribed += 1;
        if (subscribed === 2 && subscriber.status === 'ready') this.setFeedLive(true);
      };
      subscriber.subscribe(this.changedChannel).then(
        () => {
          changeRefusal = undefined;
          both();
        },
        (err: unknown) => {
          const cause = causeOf(err, []);
          if (cause.message === changeRefusal) return;
          changeRefusal = cause.message;
          this.log?.warn(
            { channel: this.changedChannel, cause },
            'redis: cannot subscribe to session-change announcements; the in-process session cache stays off',
          );
        },
      );
      subscriber.subscribe(this.endedChannel).then(
        () => {
          refusal = undefined;
          both();
        },
        (err: unknown) => {
          const cause = causeOf(err, []);
          if (cause.message === refusal) return;
          refusal = cause.message;
          this.log?.warn(
            { channel: this.endedChannel, cause },
            'redis: cannot subscribe to ended-session announcements; open WebSockets close only at their periodic re-check',
          );
        },
      );
    });
    subscriber.on('message', (channel: string, handle: string) => {
      if (channel === this.changedChannel) {
        this.notifyChange(handle);
        return;
      }
      if (channel !== this.endedChannel) return;
      this.notifyChange(handle);
      for (const listener of [...this.endedListeners]) {
        try {
          listener(handle);
        } catch {
          // The listener's own business; other listeners still hear it.
        }
      }
    });
  }

  async indexAdd(index: string, handle: string, ttlMs: number): Promise<void> {
    await this.run(() => this.client.eval(INDEX_ADD, 1, this.key('h', index), handle, String(Math.ceil(ttlMs))));
  }

  async indexMembers(index: string): Promise<string[]> {
    const [current, older] = await this.run(() =>
      Promise.all([this.client.hkeys(this.key('h', index)), this.client.smembers(this.key('i', index))]),
    );
    return older.length === 0 ? current : [...new Set([...current, ...older])];
  }

  async indexRemove(index: string, handles: string[]): Promise<void> {
    if (handles.length === 0) return;
    await this.run(() =>
      Promise.all([this.client.hdel(this.key('h', index), ...handles), this.client.srem(this.key('i', index), ...handles)]),
    );
  }

  async *scanHandles(): AsyncIterable<string> {
    const nodes = this.client instanceof Cluster ? this.client.nodes('master') : [this.client];
    const pattern = `${this.prefix}s:{*}`;
    const offset = `${this.prefix}s:{`.length;
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, keys] = await this.run(() => node.scan(cursor, 'MATCH', pattern, 'COUNT', 500));
        cursor = next;
        for (const key of keys) yield key.slice(offset, -1);
      } while (cursor !== '0');
    }
  }

  async acquireLock(handle: string, ttlMs: number): Promise<string | null> {
    const owner = randomUUID();
    const result = await this.run(() => this.client.set(this.key('l', handle), owner, 'PX', Math.ceil(ttlMs), 'NX'));
    return result === 'OK' ? owner : null;
  }

  async releaseLock(handle: string, owner: string): Promise<void> {
    await this.run(() => this.client.eval(RELEASE_LOCK, 1, this.key('l', handle), owner));
  }

  async isLocked(handle: string): Promise<boolean> {
    return (await this.run(() => this.client.exists(this.key('l', handle)))) === 1;
  }

  async claimOnce(key: string, ttlMs: number): Promise<boolean> {
    const result = await this.run(() => this.client.set(this.key('c', key), '1', 'PX', Math.ceil(ttlMs), 'NX'));
    return result === 'OK';
  }

  async putOneTime(key: string, value: string, ttlMs: number): Promise<void> {
    await this.run(() => this.client.set(this.key('o', key), value, 'PX', Math.max(1, Math.ceil(ttlMs))));
  }

  async takeOneTime(key: string): Promise<string | null> {
    const value = await this.run(() => this.client.eval(TAKE, 1, this.key('o', key)));
    return typeof value === 'string' ? value : null;
  }

  /** From the connection's state: false while it is lost, unreachable or refused. */
  get reachable(): boolean | undefined {
    if (!this.watch) return undefined;
    return this.watch.state !== 'down' && this.watch.state !== 'auth_failed';
  }

  async ping(): Promise<void> {
    await this.run(() => this.client.ping());
  }

  async close(): Promise<void> {
    this.watch?.stop();
    this.endedListeners.clear();
    this.setFeedLive(false);
    this.changeListeners.clear();
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    stopFollowing(this.client);
    stopFollowing(subscriber);
    await Promise.all([this.client.quit().catch(() => this.client.disconnect()), subscriber?.quit().catch(() => subscriber.disconnect())]);
  }
}
