/**
 * Moves a Sentinel-mode connection to the new primary after a failover, once.
 *
 * ioredis has a detector of its own (`failoverDetector`), but it drops the connection on every
 * `+switch-master` announcement it hears. Every sentinel announces the same failover when it
 * learns of it (up to a hello period, 2 s, apart), and a store that writes to the demoted node
 * has usually moved already (READONLY reconnects it). Each needless drop is a short window in
 * which every command fails fast with 503, so a failover cost two or three bursts of errors
 * instead of one. Here an announcement moves a connection only when it is not already on the
 * announced primary.
 *
 * One subscriber connection per configured sentinel, closed when every connection it follows
 * has ended or been let go (`stopFollowing`: a client closed while it was reconnecting never
 * reports its end).
 */
import { isIP } from 'node:net';
import { Redis } from 'ioredis';

const CHANNEL = '+switch-master';

export type SentinelAddress = { host: string; port: number };

export type SentinelWatchSettings = {
  /** The primary's name as the sentinels know it. */
  name: string;
  sentinels: SentinelAddress[];
  username?: string | undefined;
  password?: string | undefined;
  tls?: boolean;
};

/**
 * The primary a `+switch-master` message announces for `name`, or undefined when it is about
 * another primary or malformed. Format: `<name> <old-ip> <old-port> <new-ip> <new-port>`.
 */
export function announcedPrimary(message: string, name: string): SentinelAddress | undefined {
  const parts = message.split(' ');
  if (parts.length !== 5 || parts[0] !== name) return undefined;
  const port = Number(parts[4]);
  if (!Number.isInteger(port) || port <= 0 || port > 65_535 || !parts[3]) return undefined;
  return { host: parts[3], port };
}

/** `::ffff:10.0.0.1` and `10.0.0.1` are one address; hostnames are left as they are. */
function normalHost(host: string): string {
  const lower = host.toLowerCase().replace(/^\[|\]$/g, '');
  return lower.startsWith('::ffff:') && isIP(lower.slice(7)) === 4 ? lower.slice(7) : lower;
}

/** Whether a connection at `connected` (its socket's remote end) must move to `primary`. */
export function mustMove(connected: Partial<SentinelAddress> | undefined, primary: SentinelAddress): boolean {
  if (!connected?.host || !connected.port) return true;
  return connected.port !== primary.port || normalHost(connected.host) !== normalHost(primary.host);
}

/**
 * How long after an announcement a connection that came up elsewhere is moved again. The
 * sentinels learn of a failover one after another (up to a hello period apart), and one that
 * has not yet can name the old primary to a reconnecting client: until Sentinel reconfigures
 * it (up to ~10 s later) the old primary still takes writes, which are lost when it resyncs.
 */
const ANNOUNCEMENT_HOLDS_MS = 30_000;

class SwitchMasterWatch {
  private readonly followed = new Set<Redis>();
  private readonly subscribers: Redis[];
  /** The primary last announced, while it holds. */
  private announcement: { primary: SentinelAddress; at: number } | undefined;

  constructor(private readonly settings: SentinelWatchSettings) {
    this.subscribers = settings.sentinels.map((address) => {
      const subscriber = new Redis({
        host: address.host,
        port: address.port,
        username: settings.username,
        password: settings.password,
        tls: settings.tls ? {} : undefined,
        // Re-subscribes by itself after a reconnect; a sentinel that is down is retried.
        retryStrategy: (attempt: number) => Math.min(100 * attempt, 2000),
        maxRetriesPerRequest: null,
      });
      subscriber.on('error', () => {});
      subscriber.on('message', (channel: string, message: string) => {
        if (channel === CHANNEL) this.announced(message);
      });
      subscriber.subscribe(CHANNEL).catch(() => {});
      return subscriber;
    });
  }

  follow(client: Redis): void {
    this.followed.add(client);
    client.once('end', () => this.unfollow(client));
    // A connection that comes up on another node than the one just announced asked a sentinel
    // that did not know yet: it asks again (ioredis backs off between attempts).
    client.on('ready', () => {
      const announcement = this.announcement;
      if (!announcement || Date.now() - announcement.at > ANNOUNCEMENT_HOLDS_MS) return;
      this.moveIfElsewhere(client, announcement.primary);
    });
  }

  unfollow(client: Redis): void {
    if (!this.followed.delete(client) || this.followed.size > 0) return;
    for (const subscriber of this.subscribers) subscriber.disconnect();
  }

  private announced(message: string): void {
    const primary = announcedPrimary(message, this.settings.name);
    if (!primary) return;
    this.announcement = { primary, at: Date.now() };
    for (const client of this.followed) {
      // A connection on its way up is checked when it is ready.
      if (client.status === 'ready' || client.status === 'connect') this.moveIfElsewhere(client, primary);
    }
  }

  private moveIfElsewhere(client: Redis, primary: SentinelAddress): void {
    const socket = client.stream;
    if (mustMove({ host: socket?.remoteAddress, port: socket?.remotePort }, primary)) client.disconnect(true);
  }
}

const watches = new WeakMap<Redis, SwitchMasterWatch>();

/** Follows failovers for `client` (created in Sentinel mode for `settings.name`). */
export function followFailovers(client: Redis, settings: SentinelWatchSettings): void {
  const watch = new SwitchMasterWatch(settings);
  watch.follow(client);
  watches.set(client, watch);
}

/** Lets `copy` (a duplicate of `source`) follow failovers the way `source` does, if it does. */
export function followFailoversLike(source: Redis, copy: Redis): void {
  const watch = watches.get(source);
  if (!watch) return;
  watch.follow(copy);
  watches.set(copy, watch);
}

/** Stops following failovers for `client` (being closed); a no-op for other clients. */
export function stopFollowing(client: Redis | unknown): void {
  if (!(client instanceof Redis)) return;
  watches.get(client)?.unfollow(client);
  watches.delete(client);
}
