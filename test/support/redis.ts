import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sleep, until } from './time.ts';

export interface RedisInstance {
  url: string;
  port: number;
  stop(): Promise<void>;
  /** SIGKILL without waiting: simulates a crashed server. */
  kill(): void;
}

export interface RedisCluster {
  /** One redis:// URL per master; any of them works as a seed. */
  seeds: string[];
  nodes: RedisInstance[];
  stop(): Promise<void>;
}

export interface RedisSentinel {
  /** Name of the monitored primary, as configured in the sentinel. */
  name: string;
  sentinels: Array<{ host: string; port: number }>;
  primary: RedisInstance;
  sentinel: RedisInstance;
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';
const READY_TIMEOUT_MS = 10_000;

function assertRedisInstalled(): void {
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    throw new Error(
      'redis-server is not on PATH: the integration tests need a real Redis. Install it with `apt-get install -y redis-server`.',
    );
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Sends one inline command and resolves with the raw reply (simple string, error or bulk). */
export function redisCommand(port: number, command: string, timeoutMs = 1_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: HOST, port });
    let buffer = '';
    const done = (err: Error | null, value?: string) => {
      socket.destroy();
      if (err) reject(err);
      else resolve(value ?? '');
    };
    socket.setTimeout(timeoutMs, () => done(new Error(`redis on port ${port} did not answer ${command}`)));
    socket.once('error', (err) => done(err));
    socket.on('data', (chunk) => {
      buffer += chunk.toString('utf8');
      const lineEnd = buffer.indexOf('\r\n');
      if (lineEnd < 0) return;
      if (buffer[0] !== '$') return done(null, buffer.slice(0, lineEnd));
      const length = Number(buffer.slice(1, lineEnd));
      if (length < 0) return done(null, '');
      if (buffer.length >= lineEnd + 2 + length) done(null, buffer.slice(lineEnd + 2, lineEnd + 2 + length));
    });
    socket.once('connect', () => socket.write(`${command}\r\n`));
  });
}

async function waitFor(check: () => Promise<boolean>, what: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new ExitedEarly(`redis-server exited before ${what}:\n${log()}`, log());
    }
    if (await check().catch(() => false)) return;
    await sleep(50);
  }
  child.kill('SIGKILL');
  throw new Error(`timed out waiting for ${what}:\n${log()}`);
}

class ExitedEarly extends Error {
  constructor(
    message: string,
    readonly output: string,
  ) {
    super(message);
  }
}

function wrap(child: ChildProcess, port: number, dir: string | undefined): RedisInstance {
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  const cleanup = () => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  };
  return {
    url: `redis://${HOST}:${port}/0`,
    port,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
        await exited;
        clearTimeout(timer);
      }
      cleanup();
    },
    kill() {
      child.kill('SIGKILL');
    },
  };
}

// Test runs must never leave a server behind, even when a test forgets stop().
const running = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  running.add(child);
  child.once('exit', () => running.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of running) c.kill('SIGKILL');
    });
  }
}

// Spawns redis-server with `args` (the port is appended) and waits for PONG; a port taken
// between freePort() and bind is retried with a new one.
async function spawnRedis(
  makeArgs: (port: number, dir: string) => string[],
  ready: (port: number) => Promise<boolean> = async (port) => (await redisCommand(port, 'PING')) === '+PONG',
  fixedPort?: number,
): Promise<RedisInstance> {
  assertRedisInstalled();
  let lastError: unknown;
  for (let attempt = 0; attempt < (fixedPort ? 1 : 5); attempt++) {
    const port = fixedPort ?? (await freePort());
    const dir = mkdtempSync(join(tmpdir(), 'bff-redis-'));
    const child = spawn('redis-server', makeArgs(port, dir), { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-4_000);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    track(child);
    try {
      await waitFor(
        () => ready(port),
        `port ${port} to answer`,
        child,
        () => output,
      );
      return wrap(child, port, dir);
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      lastError = err;
      if (!(err instanceof ExitedEarly && /address already in use/i.test(err.output))) throw err;
    }
  }
  throw lastError;
}

const baseArgs = (port: number): string[] => [
  '--port',
  String(port),
  '--bind',
  HOST,
  '--protected-mode',
  'no',
  '--save',
  '',
  '--appendonly',
  'no',
  '--loglevel',
  'warning',
];

/**
 * A standalone server. `password` sets `requirepass` (the instance's `url` stays without it);
 * `port` binds a given port (e.g. one a client is already trying), without retrying another.
 */
export async function startRedis(options: { password?: string; port?: number } = {}): Promise<RedisInstance> {
  const { password, port: fixedPort } = options;
  if (!password) return spawnRedis((port) => baseArgs(port), undefined, fixedPort);
  return spawnRedis(
    (port) => [...baseArgs(port), '--requirepass', password],
    async (port) => /^(\+PONG|-NOAUTH)/.test(await redisCommand(port, 'PING')),
    fixedPort,
  );
}

/** Three masters, no replicas, all 16384 slots assigned. */
export async function startRedisCluster(): Promise<RedisCluster> {
  const nodes: RedisInstance[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      // The bus port is set explicitly: the default (port + 10000) overflows for high ports.
      const busPort = await freePort();
      nodes.push(
        await spawnRedis((port) => [
          ...baseArgs(port),
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          `nodes-${port}.conf`,
          '--cluster-port',
          String(busPort),
          '--cluster-node-timeout',
          '2000',
        ]),
      );
    }
    const create = spawnSync(
      'redis-cli',
      ['--cluster', 'create', ...nodes.map((n) => `${HOST}:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'],
      { encoding: 'utf8', timeout: 30_000 },
    );
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed:\n${create.stdout}\n${create.stderr}`);
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (const node of nodes) {
      while (!(await redisCommand(node.port, 'CLUSTER INFO').catch(() => '')).includes('cluster_state:ok')) {
        if (Date.now() > deadline) throw new Error(`cluster node ${node.port} never reached cluster_state:ok`);
        await sleep(100);
      }
    }
  } catch (err) {
    await Promise.all(nodes.map((n) => n.stop()));
    throw err;
  }
  return {
    seeds: nodes.map((n) => n.url),
    nodes,
    stop: async () => {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
}

/** One primary watched by one sentinel (quorum 1) under the name `bff-primary`. */
export async function startSentinel(): Promise<RedisSentinel> {
  const name = 'bff-primary';
  const primary = await startRedis();
  let sentinel: RedisInstance;
  try {
    sentinel = await spawnRedis(
      (port, dir) => {
        // Sentinel insists on a writable config file it can rewrite.
        const file = join(dir, 'sentinel.conf');
        writeFileSync(
          file,
          [
            `port ${port}`,
            `bind ${HOST}`,
            'protected-mode no',
            `sentinel monitor ${name} ${HOST} ${primary.port} 1`,
            `sentinel down-after-milliseconds ${name} 1000`,
            `sentinel failover-timeout ${name} 5000`,
            '',
          ].join('\n'),
        );
        return [file, '--sentinel'];
      },
      // An array header of two means the primary's address is known.
      async (port) => (await redisCommand(port, `SENTINEL get-master-addr-by-name ${name}`)) === '*2',
    );
  } catch (err) {
    await primary.stop();
    throw err;
  }
  return {
    name,
    sentinels: [{ host: HOST, port: sentinel.port }],
    primary,
    sentinel,
    stop: async () => {
      await sentinel.stop();
      await primary.stop();
    },
  };
}

export interface SentinelSetupOptions {
  /** `requirepass` on the data nodes (the `default` user), also used between them. */
  password?: string;
  /** An extra ACL user on the data nodes, for clients that log in with a username. */
  user?: { name: string; password: string };
  /** `requirepass` on the sentinels themselves. */
  sentinelPassword?: string;
  /** Replicas of the primary (default 1). */
  replicas?: number;
  /** Sentinels (default 3, quorum 2; one sentinel has quorum 1). */
  sentinels?: number;
}

export interface RedisSentinelSetup {
  name: string;
  primary: RedisInstance;
  replicas: RedisInstance[];
  sentinelNodes: RedisInstance[];
  sentinels: Array<{ host: string; port: number }>;
  /** `redis://127.0.0.1:<port>` per sentinel, as `session.redis.sentinel.nodes` takes them. */
  nodeUrls: string[];
  /** The port Sentinel currently names as the primary. */
  primaryPort(): Promise<number>;
  /** A command on a data node, logged in as the `default` user with the data-node password. */
  dataCommand(port: number, ...args: Array<string | number>): Promise<unknown>;
  stop(): Promise<void>;
}

/** One command over an authenticated connection (ioredis, no retries). */
export async function authedCommand(
  port: number,
  password: string | undefined,
  args: Array<string | number>,
  username?: string,
): Promise<unknown> {
  const { Redis } = await import('ioredis');
  const client = new Redis({
    host: HOST,
    port,
    username,
    password,
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    connectTimeout: 2_000,
    commandTimeout: 5_000,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    const [command, ...rest] = args;
    return await client.call(String(command), ...rest);
  } finally {
    client.disconnect();
  }
}

/** Any reply (PONG or NOAUTH) means the server is up. */
const answers = async (port: number) => /^(\+PONG|-NOAUTH)/.test(await redisCommand(port, 'PING'));

/** The shared bounded wait, a failing check counting as "not yet" (a process still starting). */
const settled = (check: () => Promise<boolean>, what: string): Promise<boolean> => until(() => check().catch(() => false), what, 20_000);

/**
 * A primary with replicas (`requirepass` when `password` is set) watched by several sentinels,
 * every piece a real process on 127.0.0.1. Resolves once every sentinel knows the primary, every
 * replica and the other sentinels, so a failover can start at once.
 */
export async function startSentinelSetup(options: SentinelSetupOptions = {}): Promise<RedisSentinelSetup> {
  const name = 'bff-primary';
  const { password, user, sentinelPassword } = options;
  const replicaCount = options.replicas ?? 1;
  const sentinelCount = options.sentinels ?? 3;
  const quorum = sentinelCount === 1 ? 1 : Math.floor(sentinelCount / 2) + 1;
  const started: RedisInstance[] = [];
  const dataArgs = (port: number) => [
    ...baseArgs(port),
    ...(password ? ['--requirepass', password, '--masterauth', password] : []),
    ...(user ? ['--user', user.name, 'on', `>${user.password}`, '~*', '&*', '+@all'] : []),
  ];
  const dataCommand = (port: number, ...args: Array<string | number>) => authedCommand(port, password, args);
  try {
    const primary = await spawnRedis((port) => dataArgs(port), answers);
    started.push(primary);
    const replicas: RedisInstance[] = [];
    for (let i = 0; i < replicaCount; i++) {
      const replica = await spawnRedis((port) => [...dataArgs(port), '--replicaof', HOST, String(primary.port)], answers);
      started.push(replica);
      replicas.push(replica);
    }
    for (const replica of replicas) {
      await settled(
        async () => String(await dataCommand(replica.port, 'INFO', 'replication')).includes('master_link_status:up'),
        `replica ${replica.port} to sync`,
      );
    }
    const sentinelNodes: RedisInstance[] = [];
    const sentinelCommand = (port: number, ...args: Array<string | number>) => authedCommand(port, sentinelPassword, args);
    for (let i = 0; i < sentinelCount; i++) {
      const node = await spawnRedis((port, dir) => {
        const file = join(dir, 'sentinel.conf');
        writeFileSync(
          file,
          [
            `port ${port}`,
            `bind ${HOST}`,
            'protected-mode no',
            ...(sentinelPassword ? [`requirepass ${sentinelPassword}`, `sentinel sentinel-pass ${sentinelPassword}`] : []),
            `sentinel monitor ${name} ${HOST} ${primary.port} ${quorum}`,
            ...(password ? [`sentinel auth-pass ${name} ${password}`] : []),
            `sentinel down-after-milliseconds ${name} 1000`,
            `sentinel failover-timeout ${name} 5000`,
            '',
          ].join('\n'),
        );
        return [file, '--sentinel'];
      }, answers);
      started.push(node);
      sentinelNodes.push(node);
    }
    for (const node of sentinelNodes) {
      await settled(
        async () => {
          const replicasSeen = (await sentinelCommand(node.port, 'SENTINEL', 'replicas', name)) as unknown[];
          const peers = (await sentinelCommand(node.port, 'SENTINEL', 'sentinels', name)) as unknown[];
          return replicasSeen.length === replicaCount && peers.length === sentinelCount - 1;
        },
        `sentinel ${node.port} to see ${replicaCount} replica(s) and ${sentinelCount - 1} other sentinel(s)`,
      );
    }
    return {
      name,
      primary,
      replicas,
      sentinelNodes,
      sentinels: sentinelNodes.map((node) => ({ host: HOST, port: node.port })),
      nodeUrls: sentinelNodes.map((node) => `redis://${HOST}:${node.port}`),
      async primaryPort() {
        for (const node of sentinelNodes) {
          const reply = await sentinelCommand(node.port, 'SENTINEL', 'get-master-addr-by-name', name).catch(() => undefined);
          if (Array.isArray(reply)) return Number(reply[1]);
        }
        throw new Error('no sentinel answered');
      },
      dataCommand,
      stop: async () => {
        await Promise.all(started.map((instance) => instance.stop()));
      },
    };
  } catch (err) {
    await Promise.all(started.map((instance) => instance.stop()));
    throw err;
  }
}
