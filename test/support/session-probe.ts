/**
 * Looking behind a session cookie from a test: the browser-side id, the store handle, the
 * decrypted record (through the gateway's own Sessions, so the test reads what the gateway
 * reads), and the raw Redis key with its TTL.
 */
import { Redis } from 'ioredis';
import type { SessionRecord } from '../../src/session/sessions.ts';
import { Sessions } from '../../src/session/sessions.ts';
import { isClearingCookie, loginUpToCallback, type LoginOptions } from './login.ts';
import { redisCommand, type RedisInstance } from './redis.ts';
import type { RunningGateway, World } from './world.ts';

/** `name=value` (or just the value) of a signed session cookie -> the session id inside it. */
export function sessionIdOf(cookie: string): string {
  const value = cookie.includes('=') ? cookie.slice(cookie.indexOf('=') + 1) : cookie;
  const id = value.split('.')[0] ?? '';
  if (!/^[A-Za-z0-9_-]{43}$/.test(id)) throw new Error(`not a session cookie: ${cookie}`);
  return id;
}

export function handleOf(cookie: string): string {
  return Sessions.handleOf(sessionIdOf(cookie));
}

/** The live record behind a cookie, read through the gateway; undefined when there is none. */
export async function recordOf(gateway: RunningGateway, cookie: string): Promise<SessionRecord | undefined> {
  const result = await gateway.gateway.services.sessions.load(sessionIdOf(cookie));
  return result.state === 'active' ? result.record : undefined;
}

export function redisKey(cookie: string, prefix = 'bff:'): string {
  return `${prefix}s:{${handleOf(cookie)}}`;
}

/**
 * The sealed value stored for a cookie's session, or '' when Redis has no such key: a binary
 * string (one char per byte), as the store hands records to the gateway.
 */
export async function storedValue(redis: RedisInstance, cookie: string): Promise<string> {
  const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => {});
  try {
    await client.connect();
    return (await client.getBuffer(redisKey(cookie)))?.toString('latin1') ?? '';
  } finally {
    client.disconnect();
  }
}

/** PTTL of the session key in ms (-2: no such key, -1: no expiry). */
export async function storedTtl(redis: RedisInstance, cookie: string): Promise<number> {
  const reply = await redisCommand(redis.port, `PTTL ${redisKey(cookie)}`);
  if (!reply.startsWith(':')) throw new Error(`unexpected PTTL reply ${reply}`);
  return Number(reply.slice(1));
}

/**
 * The key id of a sealed record: `v1.<kid>.<iv>.<body>` (text), or the 6 bytes after the
 * version byte of a binary envelope, in the same base64url spelling.
 */
export function sealKeyId(sealed: string): string {
  if (sealed.startsWith('v1.')) return sealed.split('.')[1] ?? '';
  return Buffer.from(sealed, 'latin1').toString('base64url', 1, 7);
}

/** `bff_logouts_total{kind=...}` as exposed on /metrics (the registry's text rendering). */
export async function logoutsOf(gateway: RunningGateway, kind: 'rp' | 'backchannel' | 'admin' | 'timeout'): Promise<number> {
  const text = await gateway.gateway.services.metrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`bff_logouts_total{kind="${kind}"}`));
  if (!line) throw new Error(`bff_logouts_total{kind="${kind}"} is not exported`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

/**
 * Logs in through the world's public URL but lets `gateway` (e.g. one started later with an
 * injected clock or other keys, sharing the store) complete the callback, so the session is
 * created by that gateway. Resolves with the `name=value` session cookie.
 */
export async function loginAt(world: World, gateway: RunningGateway, opts: LoginOptions = {}): Promise<string> {
  const pending = await loginUpToCallback(world.url, opts);
  const callback = new URL(pending.callbackUrl);
  const res = await fetch(`${gateway.url}${callback.pathname}${callback.search}`, {
    headers: { cookie: pending.gatewayCookieHeader },
    redirect: 'manual',
  });
  await res.body?.cancel();
  const name = gateway.gateway.services.cookie.name;
  const line = res.headers.getSetCookie().find((l) => l.startsWith(`${name}=`) && !isClearingCookie(l));
  if (res.status !== 302 || !line) throw new Error(`callback at ${gateway.url} answered ${res.status} without a session cookie`);
  return (line.split(';')[0] ?? '').trim();
}
