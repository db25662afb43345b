/**
 * Store bytes per session: what one login leaves in Redis, next to the tokens it holds.
 *
 *   node --import tsx bench/store-bytes.ts [--logins 20] [--memory-logins 200] [--label TEXT] [--out FILE]
 *
 * The real path end to end: one gateway (buildGateway, a Redis session store on its own
 * redis-server) and the embedded IdP (demo/idp.ts), and each session made by a real login
 * through them (test/support/login.ts, a new browser and a new user each time, so the login
 * creates its own per-user index too). After every login the script finds the keys that login
 * created (SCAN before and after) and the keys it grew, and for each records its type,
 * encoding, TTL and `MEMORY USAGE <key> SAMPLES 0` (Redis' own accounting of the key, its
 * value and their overhead, rounded to the allocator's size classes). Next to that: the raw
 * byte length of the tokens the session holds (access, refresh and ID token, read back through
 * the gateway's own session reader). Each session is then refreshed once, over a second after
 * its login (the gateway's own refresher: new access, refresh and ID token), and its record
 * measured again. As a cross-check, a second batch of logins runs back to
 * back with nothing else sent to Redis, and `used_memory` (INFO memory) before and after it is
 * divided by the number of logins.
 *
 * "Steady state" leaves out the login-state claim (`c:{state.…}`): it is the callback's replay
 * guard and expires with the login transaction (10 minutes), so it is per login, not per
 * session kept. Writes bench/results/store-bytes.md (or --out).
 */
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { login } from '../test/support/login.ts';
import { startWorld } from '../test/support/world.ts';

const { values } = parseArgs({
  options: {
    logins: { type: 'string', default: '20' },
    'memory-logins': { type: 'string', default: '200' },
    label: { type: 'string', default: '' },
    out: { type: 'string' },
  },
});
const LOGINS = Math.min(Math.max(Number(values.logins) || 20, 1), 500);
const MEMORY_LOGINS = Math.min(Math.max(Number(values['memory-logins']) || 200, 1), 2000);
const OUTPUT = values.out ? new URL(values.out, `file://${process.cwd()}/`) : new URL('./results/store-bytes.md', import.meta.url);

export interface KeyBytes {
  /** The key with the session-specific part elided, e.g. `bff:s:{…}`. */
  kind: string;
  key: string;
  type: string;
  encoding: string;
  /** Bytes of the value (STRLEN) or the members (summed), as stored. */
  valueBytes: number;
  memoryUsage: number;
  ttlS: number;
}

export interface LoginBytes {
  keys: KeyBytes[];
  tokens: { access: number; refresh: number; id: number };
  /** The record's MEMORY USAGE after one token refresh, and the raw bytes of the new tokens. */
  refreshed: { record: number; tokens: number };
}

/** The key's shape, its variable parts elided: `bff:i:{sub.…}`. */
function kindOf(key: string): string {
  return key.replace(/\{(?:(state|sub|sid|ended|jti|logout)\.)?[^}]*\}/, (_m, name: string | undefined) => `{${name ? `${name}.` : ''}…}`);
}

async function allKeys(redis: Redis): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys;
}

async function hashBytes(redis: Redis, key: string): Promise<number> {
  const fields = await redis.hkeysBuffer(key);
  const values = await redis.hvalsBuffer(key);
  return [...fields, ...values].reduce((sum, part) => sum + part.length, 0);
}

async function describe(redis: Redis, key: string): Promise<KeyBytes> {
  const type = await redis.type(key);
  const encoding = String(await redis.object('ENCODING', key));
  let valueBytes = 0;
  if (type === 'string') valueBytes = await redis.strlen(key);
  else if (type === 'set') valueBytes = (await redis.smembersBuffer(key)).reduce((sum, member) => sum + member.length, 0);
  else if (type === 'hash') valueBytes = await hashBytes(redis, key);
  const memoryUsage = Number(await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'));
  const ttlS = Math.round((await redis.pttl(key)) / 1000);
  return { kind: kindOf(key), key, type, encoding, valueBytes, memoryUsage, ttlS };
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)] ?? Number.NaN;
};
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const ratio = (a: number, b: number) => (a / b).toFixed(2);

async function main(): Promise<void> {
  const started = new Date();
  const loadStart = loadavg();
  const world = await startWorld({ store: 'redis' });
  const redisUrl = world.redis?.url;
  if (!redisUrl) throw new Error('no redis');
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0 });
  await redis.connect();
  const { sessions, refresher } = world.gateway.gateway.services;
  const server = await redis.info('server');
  const memoryInfo = await redis.info('memory');
  const field = (text: string, name: string) => new RegExp(`^${name}:(.*)$`, 'm').exec(text)?.[1]?.trim() ?? '?';
  const redisVersion = field(server, 'redis_version');
  const allocator = field(memoryInfo, 'mem_allocator');
  const usedMemory = async () => Number(field(await redis.info('memory'), 'used_memory'));

  try {
    // One login first, unmeasured: the gateway's first requests warm up connections and caches.
    await login(world.url);
    const results: LoginBytes[] = [];
    const loginsMade: Array<{ handle: string; recordKey: string }> = [];
    const grown: KeyBytes[] = [];
    const sizes = async (keys: string[]) => new Map(await Promise.all(keys.map(async (key) => [key, await describe(redis, key)] as const)));
    let known = await sizes(await allKeys(redis));
    for (let i = 0; i < LOGINS; i++) {
      await login(world.url, { user: `bench${String(i).padStart(3, '0')}` });
      const now = await sizes(await allKeys(redis));
      const created = [...now.keys()].filter((key) => !known.has(key)).sort();
      // A key that existed before but takes more memory now (an index set another login made).
      for (const [key, after] of now) {
        const before = known.get(key);
        if (before && after.memoryUsage > before.memoryUsage) grown.push({ ...after, memoryUsage: after.memoryUsage - before.memoryUsage });
      }
      known = now;
      const keys = created.map((key) => now.get(key) as KeyBytes);
      const recordKey = keys.find((k) => k.kind.includes(':s:'));
      if (!recordKey) throw new Error(`login ${i + 1} created no session record: ${created.join(', ')}`);
      const handle = recordKey.key.slice(recordKey.key.indexOf('{') + 1, -1);
      const loaded = await sessions.loadHandle(handle);
      if (loaded.state !== 'active') throw new Error(`session ${handle} did not load: ${loaded.state}`);
      const { tokens } = loaded.record;
      loginsMade.push({ handle, recordKey: recordKey.key });
      results.push({
        keys,
        tokens: {
          access: Buffer.byteLength(tokens.accessToken),
          refresh: Buffer.byteLength(tokens.refreshToken ?? ''),
          id: Buffer.byteLength(tokens.idToken ?? ''),
        },
        refreshed: { record: 0, tokens: 0 },
      });
    }
    // Then one token refresh per session (a new access, refresh and ID token), over a second
    // after its login as any real refresh is: the new ID token's iat and exp differ from the
    // claims the session keeps from its login, which are then stored rather than referenced.
    await new Promise((done) => setTimeout(done, 1_100));
    for (const [i, made] of loginsMade.entries()) {
      const loaded = await sessions.loadHandle(made.handle);
      if (loaded.state !== 'active') throw new Error(`session ${made.handle} did not load: ${loaded.state}`);
      const before = loaded.record.tokens.accessToken;
      const refreshed = await refresher.refreshAfterRejection(loaded, before);
      if (refreshed.tokens.accessToken === before) throw new Error(`session ${made.handle} was not refreshed`);
      (results[i] as LoginBytes).refreshed = {
        record: (await describe(redis, made.recordKey)).memoryUsage,
        tokens:
          Buffer.byteLength(refreshed.tokens.accessToken) +
          Buffer.byteLength(refreshed.tokens.refreshToken ?? '') +
          Buffer.byteLength(refreshed.tokens.idToken ?? ''),
      };
    }
    // The cross-check: logins back to back, nothing else sent to Redis meanwhile.
    const memoryBefore = await usedMemory();
    for (let i = 0; i < MEMORY_LOGINS; i++) await login(world.url, { user: `mem${String(i).padStart(4, '0')}` });
    const memoryAfter = await usedMemory();
    const loadEnd = loadavg();

    const tokenBytes = results.map((r) => r.tokens.access + r.tokens.refresh + r.tokens.id);
    const totalBytes = results.map((r) => sum(r.keys.map((k) => k.memoryUsage)));
    const steadyBytes = results.map((r) => sum(r.keys.filter((k) => !k.kind.includes('{state.')).map((k) => k.memoryUsage)));
    // Steady state after a refresh: the index keys as they were, the record as it is now.
    const refreshedBytes = results.map(
      (r) =>
        sum(r.keys.filter((k) => !k.kind.includes('{state.') && !k.kind.includes(':s:')).map((k) => k.memoryUsage)) + r.refreshed.record,
    );
    const refreshedTokens = results.map((r) => r.refreshed.tokens);
    const ratios = results.map((_, i) => (totalBytes[i] as number) / (tokenBytes[i] as number));
    const kinds = [...new Set(results.flatMap((r) => r.keys.map((k) => k.kind)))];
    const keyRows = kinds.map((kind) => {
      const of = results.flatMap((r) => r.keys.filter((k) => k.kind === kind));
      const first = of[0] as KeyBytes;
      return `| \`${kind}\` | ${of.length} / ${LOGINS} | ${first.type} (${first.encoding}) | ${fmt(median(of.map((k) => k.valueBytes)))} | ${fmt(median(of.map((k) => k.memoryUsage)))} (${fmt(Math.min(...of.map((k) => k.memoryUsage)))}–${fmt(Math.max(...of.map((k) => k.memoryUsage)))}) | ${fmt(median(of.map((k) => k.ttlS)))} s |`;
    });
    const perLoginMemory = (memoryAfter - memoryBefore) / MEMORY_LOGINS;
    const cpu = cpus()[0]?.model ?? 'unknown CPU';
    const lines = [
      '# Store bytes per session',
      '',
      `Generated by \`node --import tsx bench/store-bytes.ts --logins ${LOGINS} --memory-logins ${MEMORY_LOGINS}\` on ${started.toISOString().slice(0, 10)}${values.label ? ` (${values.label})` : ''}: Node ${process.version}, Redis ${redisVersion} (${allocator}), ${cpu}, ${cpus().length} cores, load average ${loadStart.map((x) => x.toFixed(1)).join(' / ')} at start, ${loadEnd.map((x) => x.toFixed(1)).join(' / ')} at end.`,
      '',
      `What was measured: ${LOGINS} real logins (a new browser and a new user each, user names of 8 characters) through one gateway (buildGateway, Redis store) against the embedded IdP (demo/idp.ts; JWT access and ID tokens, opaque refresh token, userinfo on), after one unmeasured warm-up login. For each login, every key it created in Redis (SCAN before and after) with \`MEMORY USAGE <key> SAMPLES 0\`, summed; the tokens' raw bytes (access + refresh + ID token as the IdP issued them) are read back through the gateway's own session reader. Steady state leaves out the login-state claim, which only guards the callback against replay and expires with the login transaction. Then each session's tokens are refreshed once, over a second after its login (the gateway's own refresher, as after an upstream 401), and its record measured again.`,
      '',
      '| | median | min | max |',
      '|---|---:|---:|---:|',
      `| raw token bytes (access + refresh + ID) | ${fmt(median(tokenBytes))} | ${fmt(Math.min(...tokenBytes))} | ${fmt(Math.max(...tokenBytes))} |`,
      `| store bytes per login (every key, MEMORY USAGE summed) | ${fmt(median(totalBytes))} | ${fmt(Math.min(...totalBytes))} | ${fmt(Math.max(...totalBytes))} |`,
      `| ratio store / tokens (goal ≤ 1.5) | ${median(ratios).toFixed(2)} | ${Math.min(...ratios).toFixed(2)} | ${Math.max(...ratios).toFixed(2)} |`,
      `| steady state, without the login-state claim | ${fmt(median(steadyBytes))} | ${fmt(Math.min(...steadyBytes))} | ${fmt(Math.max(...steadyBytes))} |`,
      `| ratio steady state / tokens | ${ratio(median(steadyBytes), median(tokenBytes))} | | |`,
      `| after one token refresh: raw token bytes | ${fmt(median(refreshedTokens))} | ${fmt(Math.min(...refreshedTokens))} | ${fmt(Math.max(...refreshedTokens))} |`,
      `| after one token refresh: steady-state store bytes | ${fmt(median(refreshedBytes))} | ${fmt(Math.min(...refreshedBytes))} | ${fmt(Math.max(...refreshedBytes))} |`,
      `| ratio after one refresh / its tokens | ${ratio(median(refreshedBytes), median(refreshedTokens))} | | |`,
      `| cross-check: INFO used_memory delta / login (${MEMORY_LOGINS} more logins back to back) | ${fmt(perLoginMemory)} | | |`,
      '',
      `Tokens (median bytes): access ${fmt(median(results.map((r) => r.tokens.access)))}, refresh ${fmt(median(results.map((r) => r.tokens.refresh)))}, ID ${fmt(median(results.map((r) => r.tokens.id)))}.`,
      '',
      'Every key one login creates:',
      '',
      '| key | created by | type (encoding) | value bytes (median) | MEMORY USAGE, median (min–max) | TTL |',
      '|---|---:|---|---:|---:|---:|',
      ...keyRows,
      '',
      grown.length === 0
        ? 'No login grew a key that existed before it.'
        : `Keys that existed before a login and grew with it (not counted above): ${grown.map((k) => `\`${k.kind}\` +${k.memoryUsage}`).join(', ')}.`,
      '',
      `A million sessions at the steady-state median: ${((median(steadyBytes) * 1e6) / 1e9).toFixed(2)} GB of keys by MEMORY USAGE. MEMORY USAGE leaves out Redis' own per-key overhead outside the key (the main dictionary's and the expiry dictionary's entries and buckets); the used_memory delta includes it, and the login-state claims of those logins (alive for 10 minutes): ${((perLoginMemory * 1e6) / 1e9).toFixed(2)} GB per million logins at that rate.`,
      '',
    ];
    writeFileSync(OUTPUT, lines.join('\n'));
    process.stdout.write(`${lines.join('\n')}\nwritten to ${OUTPUT.pathname}\n`);
  } finally {
    redis.disconnect();
    await world.close();
  }
}

await main();
