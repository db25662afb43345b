/**
 * One connection attempt to the configured Redis, as the gateway would make it (same
 * credentials, TLS, db, Sentinel or Cluster), then a PING: for `bff-gateway check --connect`.
 * Unlike the store, it does not keep retrying: the first error is the answer.
 */
import type { RedisConfig } from '../config/load.ts';
import { createRedisClient } from './redis-store.ts';
import { causeOf, describeTarget, isAuthFailure, redisSecrets } from './redis-state.ts';

export interface ProbeResult {
  ok: boolean;
  /** Where it connected: mode and hosts, never credentials. */
  target: Record<string, unknown>;
  /** What failed, with the server's or the system's code; credentials masked. */
  problem?: string;
}

export async function probeRedis(config: RedisConfig): Promise<ProbeResult> {
  const target = describeTarget(config);
  const secrets = redisSecrets(config);
  const client = createRedisClient(config, { followFailovers: false });
  const errors: unknown[] = [];
  const onError = (err: unknown) => errors.push(err);
  client.on('error', onError);
  client.on('node error', onError);
  // Long enough for a TCP/TLS connect, AUTH and, with Sentinel, the sentinels' answer.
  const deadlineMs = Math.max(config.commandTimeoutMs, 2_000) + config.commandTimeoutMs;
  const describe = (err: unknown) => {
    const cause = causeOf(err, secrets);
    const kind = isAuthFailure(cause) ? 'authentication failed: ' : '';
    const code = cause.code && !cause.message.startsWith(cause.code) ? `${cause.code}: ` : '';
    return `${kind}${code}${cause.message}`;
  };
  try {
    const failure = await new Promise<unknown>((resolve) => {
      const timer = setTimeout(() => resolve(new Error(`no answer within ${deadlineMs} ms`)), deadlineMs);
      const settle = (value: unknown) => {
        clearTimeout(timer);
        resolve(value);
      };
      client.once('ready', () => settle(undefined));
      client.once('error', settle);
      client.once('node error', settle);
      client.connect().catch(() => {});
    });
    if (failure !== undefined) return { ok: false, target, problem: describe(failure) };
    await client.ping();
    return { ok: true, target };
  } catch (err) {
    // A command refused after connecting (an ACL without PING, a db out of range) or a timeout.
    return { ok: false, target, problem: describe(errors.find((seen) => isAuthFailure(seen as Error)) ?? err) };
  } finally {
    client.disconnect();
  }
}
