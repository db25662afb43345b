/**
 * What the Redis connection is doing, told once per change of state, never per request.
 *
 * ioredis reports every failed reconnect attempt as an `error` event (one every 100 ms–2 s
 * while Redis is down) and answers commands made meanwhile with "Stream isn't writeable".
 * This watcher turns that into four log lines an operator can act on:
 *   connected            the first time the connection is ready            (info)
 *   unreachable / lost   cannot connect at start / a ready connection broke (warn)
 *   authentication failed the server refused the credentials               (error)
 *   recovered            ready again after unreachable, lost or auth failed (info)
 * each with the cause's code and message (WRONGPASS, NOAUTH, ECONNREFUSED, ...). Credentials
 * never appear: the target is host:port or the Sentinel name, and any configured password
 * that an error message might echo is masked.
 */
import type { EventEmitter } from 'node:events';
import type { Logger } from '../log.ts';
import type { RedisConfig } from '../config/load.ts';

/** The event surface shared by ioredis' Redis and Cluster. */
type Emitter = Pick<EventEmitter, 'on' | 'off'>;

export type RedisConnectionState = 'starting' | 'up' | 'down' | 'auth_failed';

export interface RedisCause {
  code?: string;
  message: string;
}

/** Refusals of the credentials (also inside Sentinel's "All sentinels are unreachable ... Last error: ..."). */
const AUTH_FAILURE = /\b(WRONGPASS|NOAUTH|NOPERM)\b|invalid password|invalid username-password/i;

export function isAuthFailure(err: { message?: string; code?: string } | undefined): boolean {
  return !!err && AUTH_FAILURE.test(`${err.code ?? ''} ${err.message ?? ''}`);
}

/** Where the store connects, for log lines: hosts and ports only. */
export function describeTarget(config: RedisConfig): Record<string, unknown> {
  const address = (url: string) => {
    const parsed = new URL(url);
    return `${parsed.hostname}${parsed.port ? `:${parsed.port}` : ''}`;
  };
  if (config.cluster) return { mode: 'cluster', nodes: config.cluster.map(address) };
  if (config.sentinel) return { mode: 'sentinel', name: config.sentinel.name, sentinels: config.sentinel.nodes.map(address) };
  return { mode: 'standalone', node: address(config.url as string) };
}

/** Every secret that could identify the store's credentials, longest first. */
export function redisSecrets(config: RedisConfig): string[] {
  const secrets: string[] = [];
  const fromUrl = (url: string | undefined) => {
    if (!url) return;
    const parsed = new URL(url);
    if (parsed.password) secrets.push(parsed.password, decodeURIComponent(parsed.password));
  };
  fromUrl(config.url);
  config.cluster?.forEach(fromUrl);
  if (config.sentinel?.password) secrets.push(config.sentinel.password);
  if (config.sentinel?.primary?.password) secrets.push(config.sentinel.primary.password);
  return [...new Set(secrets.filter((secret) => secret.length > 0))].sort((a, b) => b.length - a.length);
}

/** The cause as it may be logged: code and message, configured passwords masked. */
export function causeOf(err: unknown, secrets: readonly string[]): RedisCause {
  const error = err as { code?: unknown; message?: unknown } | undefined;
  let message = typeof error?.message === 'string' ? error.message : String(err);
  for (const secret of secrets) message = message.split(secret).join('[redacted]');
  const code = typeof error?.code === 'string' ? error.code : /^[A-Z]+\b/.exec(message)?.[0];
  return code ? { code, message } : { message };
}

export interface ConnectionWatch {
  readonly state: RedisConnectionState;
  /** The last error seen while not connected, for answers to failed commands. */
  readonly lastCause: RedisCause | undefined;
  /** Stops watching (before a deliberate close, which is no "lost" connection). */
  stop(): void;
}

/**
 * Follows `client`'s events. Without a logger it still tracks the state and the last cause
 * (and it always swallows `error` events, which ioredis would otherwise print).
 */
export function watchConnection(
  client: Emitter,
  options: { log?: Logger | undefined; target: Record<string, unknown>; secrets: readonly string[] },
): ConnectionWatch {
  const { log, target, secrets } = options;
  let state: RedisConnectionState = 'starting';
  let lastCause: RedisCause | undefined;
  let downSince = 0;
  let stopped = false;

  const move = (next: RedisConnectionState, cause: RedisCause | undefined) => {
    const previous = state;
    if (next === previous || stopped) return;
    state = next;
    if (next === 'up') {
      if (previous === 'starting') log?.info({ redis: target }, 'redis: connected');
      else log?.info({ redis: target, downMs: Date.now() - downSince }, 'redis: connection recovered');
      lastCause = undefined;
      return;
    }
    if (previous === 'up' || previous === 'starting') downSince = Date.now();
    if (next === 'auth_failed') {
      log?.error({ redis: target, cause }, 'redis: authentication failed; check the configured username and password');
    } else if (previous === 'up') {
      log?.warn({ redis: target, cause }, 'redis: connection lost; reconnecting in the background');
    } else {
      log?.warn({ redis: target, cause }, 'redis: unreachable; retrying in the background');
    }
  };

  const onReady = () => move('up', undefined);
  const onError = (err: Error) => {
    const cause = causeOf(err, secrets);
    lastCause = cause;
    if (isAuthFailure(err)) move('auth_failed', cause);
    // An error on a ready connection (ECONNRESET) is followed by `close`; the cause is kept.
    else if (state !== 'up') move('down', cause);
  };
  const onClose = () => {
    if (state === 'up') move('down', lastCause ?? { message: 'connection closed' });
  };
  client.on('ready', onReady);
  client.on('error', onError);
  client.on('close', onClose);
  // A cluster reports a broken node separately; it counts like the connection's own error.
  client.on('node error', onError);

  return {
    get state() {
      return state;
    },
    get lastCause() {
      return lastCause;
    },
    stop() {
      stopped = true;
      client.off('ready', onReady);
      client.off('close', onClose);
      client.off('node error', onError);
      // `error` stays swallowed: a closing client may still report its last reconnect attempt.
      client.off('error', onError);
      client.on('error', () => {});
    },
  };
}
