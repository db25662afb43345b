/**
 * Soak: N real gateway processes (the CLI, Redis store) under steady load from many sessions
 * whose access tokens expire every few seconds, with a Redis restart in the middle.
 *
 *   npm run soak                                    # 10 minutes, 1,000 sessions (the defaults)
 *   npm run soak -- --duration 120 --label short-2min
 *
 * Options: --duration s (600), --sessions n (1000), --token-ttl s (30: the IdP's access-token
 * lifetime, so every token expires every 30 s), --refresh-window s (10: tokens.refreshBeforeExpiry),
 * --interval s (8: each session sends two parallel API calls this often, to two instances),
 * --instances n (2), --redis-restart-at s (duration/2), --redis-down s (3), --sample s (5),
 * --gateway dist|sources (dist: bin/bff-gateway.js, what production runs; `npm run soak`
 * builds it first), --log-level (warn), --label (default "<minutes>min"), --node-args "…" (more
 * Node flags for the gateways), --heap-snapshots s,s,… (a V8 heap snapshot of every instance at
 * these seconds into the load, 5 s apart, into $TMPDIR/bff-soak-heap-<label>/; compare them with
 * soak/heap-diff.ts. A snapshot stops the process for seconds and leaves its RSS higher, so a run
 * with snapshots says nothing about latency or RSS).
 *
 * Redis keeps its data across the restart (append-only file), as a production Redis with
 * persistence does: the restart tests reconnection, not session loss.
 *
 * Measured every --sample seconds: RSS, V8 heap (used, capacity, external) from each instance's
 * /metrics, open file descriptors and TCP sockets of every gateway process by peer (clients,
 * Redis, upstream, IdP), Redis client connections, refresh locks held in Redis, requests,
 * failures and latency, refreshes at the IdP and token changes seen by the upstream. The gateways
 * run with --trace-gc: the live heap after every full GC is read from it. Written to
 * soak/results/<label>.{md,json,svg}.
 *
 * Goals: no retained growth (the live heap after full GCs has no trend beyond ±10 % of its mean
 * after warm-up), memory outside the JS heap (RSS − V8 heap capacity) flat (±10 % between the
 * first minute after warm-up and the last minute), no socket, Redis-connection or lock leak,
 * exactly one refresh per session per expiry, no failure outside the Redis outage, no session
 * lost. RSS itself is reported, not judged: it contains V8's heap capacity, which its GC sizes to
 * the allocation rate and which moves by tens of MB with no object retained (soak/results/memory.md).
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { startIdp, type Idp } from '../fixtures/idp/idp.ts';
import { login } from '../test/support/login.ts';
import { freePort, redisCommand } from '../test/support/redis.ts';
import { svgChart, type PanelSpec } from './chart.ts';
import type { FromLoad, Report, Stats, ToLoad } from './load.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const RESULTS = join(ROOT, 'soak/results');

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '600' },
    sessions: { type: 'string', default: '1000' },
    'token-ttl': { type: 'string', default: '30' },
    'refresh-window': { type: 'string', default: '10' },
    interval: { type: 'string', default: '8' },
    instances: { type: 'string', default: '2' },
    'redis-restart-at': { type: 'string' },
    'redis-down': { type: 'string', default: '3' },
    sample: { type: 'string', default: '5' },
    gateway: { type: 'string', default: 'dist' },
    'log-level': { type: 'string', default: 'warn' },
    'login-concurrency': { type: 'string', default: '16' },
    label: { type: 'string' },
    'node-args': { type: 'string', default: '' },
    'heap-snapshots': { type: 'string', default: '' },
  },
});

const num = (name: string, min: number, max: number): number => {
  const value = Number(values[name as keyof typeof values]);
  if (!Number.isFinite(value) || value < min || value > max) throw new Error(`--${name} must be a number in [${min}, ${max}]`);
  return value;
};
const DURATION_S = num('duration', 30, 7_200);
const SESSIONS = num('sessions', 1, 20_000);
const TOKEN_TTL_S = num('token-ttl', 10, 3_600);
const WINDOW_S = num('refresh-window', 1, TOKEN_TTL_S - 1);
const INTERVAL_S = num('interval', 1, 600);
const INSTANCES = num('instances', 1, 8);
const RESTART_AT_S = values['redis-restart-at'] === undefined ? DURATION_S / 2 : num('redis-restart-at', 0, DURATION_S);
const REDIS_DOWN_S = num('redis-down', 0, 120);
const SAMPLE_S = num('sample', 1, 60);
const LOGIN_CONCURRENCY = num('login-concurrency', 1, 256);
const LABEL = values.label ?? `${Math.round(DURATION_S / 60)}min`;
const FROM = values.gateway === 'sources' ? 'sources' : 'dist';
const NODE_ARGS = (values['node-args'] ?? '').split(/\s+/).filter(Boolean);
const SNAPSHOT_AT_S = (values['heap-snapshots'] ?? '').split(',').filter(Boolean).map(Number);
/** Where --heap-snapshots writes (not removed: each snapshot is tens of MB, too big for soak/results). */
const HEAP_DIR = join(tmpdir(), `bff-soak-heap-${values.label ?? 'run'}`);
if (INTERVAL_S >= WINDOW_S)
  throw new Error('--interval must be shorter than --refresh-window, or tokens expire before a request refreshes them');
// Windows over which RSS is compared: after warm-up, and at the end.
const WARMUP_S = Math.min(120, DURATION_S / 4);
const WINDOW_CMP_S = Math.min(60, DURATION_S / 4);
/** Failures this long after Redis is back still count as the outage (reconnection). */
const RECOVERY_GRACE_S = 30;

const CLIENT_ID = 'soak';
const CLIENT_SECRET = 'soak-client-secret-0123456789abcdef';
const SESSION_SECRET = 'soak-session-secret-0123456789-abcdefghijklmnop';
const SESSION_KEY = Buffer.alloc(32, 7).toString('base64');

const sleep = (ms: number) => new Promise((done) => setTimeout(done, Math.max(0, ms)));
const median = (xs: number[]) => {
  const sorted = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return sorted.length ? (sorted[Math.floor((sorted.length - 1) / 2)] as number) : Number.NaN;
};

// ---- Redis with an append-only file, restartable on the same port ----

class SoakRedis {
  child?: ChildProcess;
  readonly dir = mkdtempSync(join(tmpdir(), 'bff-soak-redis-'));
  constructor(readonly port: number) {}
  get url(): string {
    return `redis://127.0.0.1:${this.port}/0`;
  }
  async start(): Promise<void> {
    const args = [
      '--port',
      String(this.port),
      '--bind',
      '127.0.0.1',
      '--protected-mode',
      'no',
      '--save',
      '',
      '--appendonly',
      'yes',
      '--appendfsync',
      'everysec',
      '--dir',
      this.dir,
      '--loglevel',
      'warning',
    ];
    this.child = spawn('redis-server', args, { stdio: 'ignore' });
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if ((await redisCommand(this.port, 'PING').catch(() => '')) === '+PONG') return;
      await sleep(50);
    }
    throw new Error(`redis-server on ${this.port} did not start`);
  }
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((done) => child.once('exit', done));
    child.kill('SIGTERM');
    await exited;
  }
}

// ---- gateway processes ----

interface Gateway {
  index: number;
  port: number;
  adminPort: number;
  url: string;
  child: ChildProcess;
  warnings: string[];
  warningCount: number;
  /** --trace-gc: [ms since spawn, heap used after a full GC (MB)] */
  markCompacts: Array<[number, number]>;
  spawnedAt: number;
}

function startGateway(index: number, port: number, adminPort: number, file: string, diagDir: string): Gateway {
  const entry = FROM === 'dist' ? [join(ROOT, 'bin/bff-gateway.js')] : ['--import', 'tsx', join(ROOT, 'test/support/cli-entry.ts')];
  const nodeArgs = [...NODE_ARGS];
  // One line per GC on stdout, read below: the live heap after every full GC is the leak measure.
  nodeArgs.push('--trace-gc');
  if (SNAPSHOT_AT_S.length) nodeArgs.push('--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${diagDir}`);
  const child = spawn(process.execPath, [...nodeArgs, ...entry, '--config', file], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LOG_LEVEL: values['log-level'] },
  });
  const gateway: Gateway = {
    index,
    port,
    adminPort,
    url: `http://127.0.0.1:${port}`,
    child,
    warnings: [],
    warningCount: 0,
    markCompacts: [],
    spawnedAt: Date.now(),
  };
  const collector = () => {
    let rest = '';
    return (chunk: Buffer) => {
      const lines = (rest + chunk.toString('utf8')).split('\n');
      rest = lines.pop() ?? '';
      collectLines(lines);
    };
  };
  const collectLines = (lines: string[]) => {
    for (const line of lines) {
      if (!line) continue;
      // --trace-gc: `[pid:0x…]   12345 ms: Mark-Compact 80.1 (90.2) -> 60.3 (91.0) MB, …`
      const gc = /^\[\d+:0x[0-9a-f]+\]\s+(\d+) ms: (\S+)(?: \(reduce\))? [\d.]+ \([\d.]+\) -> ([\d.]+) \(/.exec(line);
      if (gc) {
        if (gc[2] === 'Mark-Compact') gateway.markCompacts.push([Number(gc[1]), Number(gc[3])]);
        continue;
      }
      if (/^\[\d+:0x[0-9a-f]+\]/.test(line) || line.startsWith('Wrote snapshot') || line.includes('heapsnapshot')) continue;
      gateway.warningCount++;
      if (gateway.warnings.length < 200) gateway.warnings.push(line.slice(0, 500));
    }
  };
  child.stdout?.on('data', collector());
  child.stderr?.on('data', collector());
  return gateway;
}

async function waitReady(gateway: Gateway): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (gateway.child.exitCode !== null) throw new Error(`gateway ${gateway.index} exited:\n${gateway.warnings.join('\n')}`);
    if (
      await fetch(`http://127.0.0.1:${gateway.adminPort}/readyz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      return;
    await sleep(100);
  }
  throw new Error(`gateway ${gateway.index} not ready within 60 s`);
}

// ---- process sampling ----

/** inode -> [local port, remote port] of every TCP socket on the machine. */
function tcpSockets(): Map<string, [number, number]> {
  const map = new Map<string, [number, number]>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10) continue;
      const lport = parseInt((cols[1] ?? '').split(':')[1] ?? '0', 16);
      const rport = parseInt((cols[2] ?? '').split(':')[1] ?? '0', 16);
      map.set(cols[9] as string, [lport, rport]);
    }
  }
  return map;
}

interface ProcSample {
  rssMb: number;
  fds: number;
  sockets: Record<'clients' | 'redis' | 'upstream' | 'idp' | 'listening' | 'other', number>;
}

function sampleProcess(
  gateway: Gateway,
  peers: { redis: number; upstream: number; idp: number },
  tcp: Map<string, [number, number]>,
): ProcSample {
  const pid = gateway.child.pid as number;
  const rssKb = Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? Number.NaN);
  const sockets = { clients: 0, redis: 0, upstream: 0, idp: 0, listening: 0, other: 0 };
  let fds = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    fds++;
    let link = '';
    try {
      link = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
    if (!inode) continue;
    const ports = tcp.get(inode);
    if (!ports) sockets.other++;
    else if (ports[1] === 0) sockets.listening++;
    else if (ports[0] === gateway.port) sockets.clients++;
    else if (ports[1] === peers.redis) sockets.redis++;
    else if (ports[1] === peers.upstream) sockets.upstream++;
    else if (ports[1] === peers.idp) sockets.idp++;
    else sockets.other++;
  }
  return { rssMb: rssKb / 1024, fds, sockets };
}

function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const present = Object.fromEntries([...(/\{([^}]*)\}/.exec(line)?.[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => present[k] === v)) total += Number(line.split(' ').pop());
  }
  return total;
}

interface HeapSample {
  usedMb: number;
  totalMb: number;
  externalMb: number;
}

interface Sample {
  t: number;
  gateways: ProcSample[];
  redisClients: number;
  locks: number;
  sessionKeys: number;
  idpRefreshGrants: number;
  gatewayRefresh: Record<string, number>;
  /** Per instance, from its /metrics (process.memoryUsage() at scrape time, so between GCs). */
  heap: HeapSample[];
  load: Omit<Stats, 'type'>;
  loadavg: number;
}

async function scanCount(redis: Redis, pattern: string): Promise<number> {
  let cursor = '0';
  let count = 0;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    count += keys.length;
  } while (cursor !== '0');
  return count;
}

// ---- main ----

async function main(): Promise<void> {
  const machine = { cpus: cpus().length, node: process.version, loadavgAtStart: loadavg().map((x) => Number(x.toFixed(2))) };
  console.log(
    `soak ${LABEL}: ${DURATION_S}s, ${SESSIONS} sessions, token ${TOKEN_TTL_S}s (refresh ${WINDOW_S}s before expiry), a tick every ${INTERVAL_S}s, ${INSTANCES} instance(s), Redis restart at ${RESTART_AT_S}s for ${REDIS_DOWN_S}s`,
  );
  const ports = await Promise.all(Array.from({ length: INSTANCES * 2 + 1 }, () => freePort()));
  const redis = new SoakRedis(ports[0] as number);
  await redis.start();
  const publicUrl = `http://127.0.0.1:${ports[1]}`;
  const idp: Idp = await startIdp({
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    redirectUris: [`${publicUrl}/auth/callback`],
    postLogoutRedirectUris: [`${publicUrl}/`],
    accessTokenTtl: TOKEN_TTL_S,
  });

  const loader = fork(join(ROOT, 'soak/load.ts'), [], { execArgv: ['--import', 'tsx'] });
  const inbox: FromLoad[] = [];
  const waiters: Array<(m: FromLoad) => void> = [];
  loader.on('message', (message: FromLoad) => {
    const waiter = waiters.shift();
    if (waiter) waiter(message);
    else inbox.push(message);
  });
  const next = <T extends FromLoad['type']>(type: T): Promise<Extract<FromLoad, { type: T }>> =>
    new Promise((done, fail) => {
      const queued = inbox.shift();
      const accept = (m: FromLoad) =>
        m.type === type ? done(m as Extract<FromLoad, { type: T }>) : fail(new Error(`expected ${type}, got ${m.type}`));
      if (queued) accept(queued);
      else waiters.push(accept);
    });
  const toLoader = (message: ToLoad) => loader.send(message);
  const { upstreamUrl } = await next('ready');

  const dir = mkdtempSync(join(tmpdir(), 'bff-soak-'));
  const gateways: Gateway[] = [];
  const sampler = new Redis(redis.port, {
    host: '127.0.0.1',
    lazyConnect: false,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    retryStrategy: () => 200,
  });
  sampler.on('error', () => {});
  const cleanup = async () => {
    sampler.disconnect();
    for (const g of gateways) if (g.child.exitCode === null) g.child.kill('SIGKILL');
    loader.kill();
    await idp.close().catch(() => {});
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
    rmSync(redis.dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));

  try {
    for (let i = 0; i < INSTANCES; i++) {
      const port = ports[1 + 2 * i] as number;
      const adminPort = ports[2 + 2 * i] as number;
      const file = join(dir, `gateway-${i + 1}.yaml`);
      writeFileSync(
        file,
        stringify({
          listen: { host: '127.0.0.1', port },
          publicUrl,
          shutdownGrace: '2s',
          admin: { host: '127.0.0.1', port: adminPort },
          oidc: {
            issuer: idp.issuer,
            clientId: CLIENT_ID,
            clientSecret: CLIENT_SECRET,
            scopes: ['openid', 'profile', 'email', 'offline_access', 'api'],
            timeout: '5s',
          },
          session: {
            store: 'redis',
            redis: { url: redis.url },
            secret: SESSION_SECRET,
            encryptionKey: SESSION_KEY,
            idleTimeout: '30m',
            absoluteTimeout: '12h',
          },
          tokens: { refreshBeforeExpiry: `${WINDOW_S}s` },
          // Every session's calls come from this one loopback address.
          limits: { perClientRequests: SESSIONS * 4 },
          routes: [{ path: '/api', upstream: upstreamUrl, token: 'user' }],
        }),
      );
      gateways.push(startGateway(i + 1, port, adminPort, file, HEAP_DIR));
    }
    await Promise.all(gateways.map(waitReady));

    // Log every session in, through the first instance's public URL (the IdP's redirect URI).
    const loginStarted = Date.now();
    const cookies: string[] = new Array(SESSIONS);
    const loggedInAt: number[] = new Array(SESSIONS);
    let nextLogin = 0;
    await Promise.all(
      Array.from({ length: Math.min(LOGIN_CONCURRENCY, SESSIONS) }, async () => {
        while (nextLogin < SESSIONS) {
          const index = nextLogin++;
          cookies[index] = (await login(publicUrl)).cookieHeader;
          loggedInAt[index] = Date.now();
        }
      }),
    );
    const loginSeconds = (Date.now() - loginStarted) / 1000;
    console.log(`${SESSIONS} sessions logged in in ${loginSeconds.toFixed(1)}s`);

    const upstreamPort = Number(new URL(upstreamUrl).port);
    const idpPort = Number(new URL(idp.issuer).port);
    const peers = { redis: redis.port, upstream: upstreamPort, idp: idpPort };
    const processSamples = () => {
      const tcp = tcpSockets();
      return gateways.map((g) => sampleProcess(g, peers, tcp));
    };
    const redisSample = async () => {
      try {
        const info = await sampler.info('clients');
        const clients = Number(/connected_clients:(\d+)/.exec(info)?.[1] ?? Number.NaN) - 1;
        return { redisClients: clients, locks: await scanCount(sampler, 'bff:l:*'), sessionKeys: await scanCount(sampler, 'bff:s:*') };
      } catch {
        return { redisClients: Number.NaN, locks: Number.NaN, sessionKeys: Number.NaN };
      }
    };
    const metricsTexts = () =>
      Promise.all(
        gateways.map((g) =>
          fetch(`http://127.0.0.1:${g.adminPort}/metrics`).then(
            (r) => r.text(),
            () => '',
          ),
        ),
      );
    const heapOf = (text: string): HeapSample => {
      const mb = (name: string) => (text ? metricSum(text, name) / 2 ** 20 : Number.NaN);
      return {
        usedMb: mb('nodejs_heap_size_used_bytes'),
        totalMb: mb('nodejs_heap_size_total_bytes'),
        externalMb: mb('nodejs_external_memory_bytes'),
      };
    };
    const gatewayRefresh = async (given?: string[]) => {
      const texts = given ?? (await metricsTexts());
      const out: Record<string, number> = {};
      for (const result of ['success', 'error', 'invalid_grant', 'coalesced'])
        out[result] = texts.reduce((sum, text) => sum + metricSum(text, 'bff_token_refresh_total', { result }), 0);
      return out;
    };

    // Idle first, so that the logins' keep-alive connections are gone: the baseline of sockets.
    await sleep(6_000);
    const before = {
      processes: processSamples(),
      redis: await redisSample(),
      refresh: await gatewayRefresh(),
      idpGrants: idp.counters.refreshGrants,
    };
    const t0 = Date.now();
    toLoader({
      type: 'start',
      gateways: gateways.map((g) => g.url),
      cookies,
      loggedInAt,
      intervalMs: INTERVAL_S * 1000,
      requestTimeoutMs: 10_000,
      refreshPeriodMs: (TOKEN_TTL_S - WINDOW_S) * 1000,
    });

    const samples: Sample[] = [];
    const events: Array<{ t: number; what: string }> = [];
    let restarted = false;
    let redisDownAt = Number.NaN;
    let redisUpAt = Number.NaN;
    const restart = async () => {
      redisDownAt = Date.now();
      events.push({ t: (redisDownAt - t0) / 1000, what: 'Redis stopped' });
      await redis.stop();
      await sleep(REDIS_DOWN_S * 1000);
      await redis.start();
      redisUpAt = Date.now();
      events.push({ t: (redisUpAt - t0) / 1000, what: 'Redis back' });
      console.log(`Redis restarted: down ${((redisUpAt - redisDownAt) / 1000).toFixed(1)}s`);
    };
    let restartDone: Promise<void> = Promise.resolve();
    // One instance at a time, 5 s apart: a snapshot stops the process for a few seconds.
    const snapshots = SNAPSHOT_AT_S.flatMap((at) => gateways.map((g, i) => ({ at: at + 5 * i, g })));
    if (snapshots.length) mkdirSync(HEAP_DIR, { recursive: true });
    for (let k = 1; k * SAMPLE_S <= DURATION_S; k++) {
      const due = t0 + k * SAMPLE_S * 1000;
      while (Date.now() < due) {
        while (snapshots.length && Date.now() >= t0 + (snapshots[0]?.at ?? 0) * 1000) {
          const { g } = snapshots.shift() as { at: number; g: Gateway };
          g.child.kill('SIGUSR2');
          events.push({ t: (Date.now() - t0) / 1000, what: `heap snapshot ${g.index}` });
          console.log(
            `heap snapshot of instance ${g.index} (pid ${g.child.pid}) at ${((Date.now() - t0) / 1000).toFixed(0)}s into ${HEAP_DIR}`,
          );
        }
        if (!restarted && Date.now() >= t0 + RESTART_AT_S * 1000) {
          restarted = true;
          restartDone = restart();
        }
        await sleep(Math.min(250, due - Date.now()));
      }
      toLoader({ type: 'stats' });
      const { type: _type, ...load } = await next('stats');
      const texts = await metricsTexts();
      const sample: Sample = {
        t: (Date.now() - t0) / 1000,
        gateways: processSamples(),
        ...(await redisSample()),
        idpRefreshGrants: idp.counters.refreshGrants - before.idpGrants,
        gatewayRefresh: await gatewayRefresh(texts),
        heap: texts.map(heapOf),
        load,
        loadavg: loadavg()[0] as number,
      };
      samples.push(sample);
      const failures = Object.entries(load.failures)
        .map(([s, n]) => `${n}× ${s}`)
        .join(', ');
      console.log(
        `t=${sample.t.toFixed(0)}s rss=${sample.gateways.map((g) => g.rssMb.toFixed(0)).join('/')}MB heap=${sample.heap.map((h) => `${h.usedMb.toFixed(0)}(${h.totalMb.toFixed(0)})`).join('/')}MB fds=${sample.gateways.map((g) => g.fds).join('/')} redisClients=${sample.redisClients} locks=${sample.locks} req=${load.requests} ok=${load.ok} p99=${load.p99.toFixed(0)}ms skipped=${load.skippedTicks} refreshes=${sample.idpRefreshGrants} load=${sample.loadavg.toFixed(1)}${failures ? ` failures: ${failures}` : ''}`,
      );
    }
    await restartDone;
    toLoader({ type: 'stop' });
    const report: Report = await next('report');
    // Let idle keep-alive connections time out, then look again: what is left is what leaked.
    await sleep(10_000);
    const after = {
      processes: processSamples(),
      redis: await redisSample(),
      refresh: await gatewayRefresh(),
      idpGrants: idp.counters.refreshGrants - before.idpGrants,
    };
    for (const g of gateways) g.child.kill('SIGTERM');
    await Promise.all(gateways.map((g) => new Promise((done) => (g.child.exitCode !== null ? done(null) : g.child.once('exit', done)))));

    write({
      machine,
      loginSeconds,
      before,
      after,
      samples,
      events,
      report,
      redisDownAt: (redisDownAt - t0) / 1000,
      redisUpAt: (redisUpAt - t0) / 1000,
      t0Abs: t0,
      gateways,
    });
  } finally {
    await cleanup();
  }
}

interface Outcome {
  machine: { cpus: number; node: string; loadavgAtStart: number[] };
  loginSeconds: number;
  before: {
    processes: ProcSample[];
    redis: { redisClients: number; locks: number; sessionKeys: number };
    refresh: Record<string, number>;
    idpGrants: number;
  };
  after: {
    processes: ProcSample[];
    redis: { redisClients: number; locks: number; sessionKeys: number };
    refresh: Record<string, number>;
    idpGrants: number;
  };
  samples: Sample[];
  events: Array<{ t: number; what: string }>;
  report: Report;
  redisDownAt: number;
  redisUpAt: number;
  /** Wall-clock time of the load's start (the loader's failure times are wall-clock too). */
  t0Abs: number;
  gateways: Gateway[];
}

function write(o: Outcome): void {
  mkdirSync(RESULTS, { recursive: true });
  const within = (from: number, to: number) => o.samples.filter((s) => s.t >= from && s.t <= to);
  const baseWindow = within(WARMUP_S, WARMUP_S + WINDOW_CMP_S);
  const endWindow = within(DURATION_S - WINDOW_CMP_S, DURATION_S);
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const socketsOf = (p: ProcSample) => sum(Object.values(p.sockets));

  /** Median of a per-instance value in the window after warm-up vs in the last window. */
  const windows = (pick: (s: Sample, i: number) => number) =>
    o.gateways.map((_, i) => {
      const base = median(baseWindow.map((s) => pick(s, i)));
      const end = median(endWindow.map((s) => pick(s, i)));
      const all = o.samples.map((s) => pick(s, i)).filter(Number.isFinite);
      return { base, end, drift: end / base - 1, min: Math.min(...all), max: Math.max(...all) };
    });
  const rssOf = (s: Sample, i: number) => s.gateways[i]?.rssMb ?? Number.NaN;
  const heapTotalOf = (s: Sample, i: number) => s.heap[i]?.totalMb ?? Number.NaN;
  const rss = windows(rssOf);
  const heapTotal = windows(heapTotalOf);
  // RSS is V8's heap (whatever capacity its GC heuristics chose: it swings by tens of MB with the
  // allocation rate and shrinks after a compacting GC) plus everything outside it. Each part is
  // judged on its own below; the capacity only reported.
  /** Least-squares line through `points`; its rise over the post-warm-up time, relative to the mean. */
  const trend = (points: Array<[number, number]>) => {
    const n = points.length;
    const meanT = sum(points.map(([t]) => t)) / n;
    const mean = sum(points.map(([, y]) => y)) / n;
    const slope = sum(points.map(([t, y]) => (t - meanT) * (y - mean))) / sum(points.map(([t]) => (t - meanT) ** 2)) || 0;
    const rise = slope * (DURATION_S - WARMUP_S);
    const ys = points.map(([, y]) => y);
    return { n, mean, rise, drift: rise / mean, min: Math.min(...ys), max: Math.max(...ys), perMin: slope * 60 };
  };

  // What the process retains: V8's live heap right after each full GC (Mark-Compact, --trace-gc),
  // after warm-up. A least-squares line through all of them, so that one GC at an unlucky moment
  // (many requests in flight) does not decide; its rise over the run, relative to the mean.
  const fullGcs = o.gateways.map((g) =>
    g.markCompacts
      .map(([ms, mb]) => [(g.spawnedAt + ms - o.t0Abs) / 1000, mb] as [number, number])
      .filter(([t]) => t >= WARMUP_S && t <= DURATION_S),
  );
  const live = fullGcs.map(trend);
  const liveFlat = live.every((l) => l.n >= 4 && Math.abs(l.drift) <= 0.1);
  // Outside the JS heap: buffers, sockets, parsers, and the allocator, which keeps what it once
  // needed. So it rises to the high-water mark of concurrency (in the runs so far for 2–4
  // minutes, longer when a slow machine piles requests up) and stays; a leak keeps rising. Judged
  // on the second half of the run: its trend there, as a rise over the whole post-warm-up time.
  const native = o.gateways.map((_, i) =>
    trend(o.samples.filter((s) => s.t >= DURATION_S / 2).map((s) => [s.t, rssOf(s, i) - heapTotalOf(s, i)] as [number, number])),
  );
  const nativeFlat = native.every((l) => l.n >= 4 && Math.abs(l.drift) <= 0.1);

  const socketsBefore = o.before.processes.map(socketsOf);
  const socketsAfter = o.after.processes.map(socketsOf);
  const socketsMax = o.gateways.map((_, i) =>
    Math.max(...o.samples.map((s) => (s.gateways[i] ? socketsOf(s.gateways[i] as ProcSample) : 0))),
  );
  const noSocketLeak = socketsAfter.every((n, i) => n <= (socketsBefore[i] ?? 0));
  const fdsBefore = o.before.processes.map((p) => p.fds);
  const fdsAfter = o.after.processes.map((p) => p.fds);

  const redisClientsSeries = o.samples.map((s) => s.redisClients).filter(Number.isFinite);
  const redisClientsBeforeRestart = median(o.samples.filter((s) => s.t < o.redisDownAt).map((s) => s.redisClients));
  const redisClientsEnd = median(endWindow.map((s) => s.redisClients));
  const noRedisLeak = o.before.redis.redisClients === o.after.redis.redisClients && redisClientsEnd === o.before.redis.redisClients;
  const maxLocks = Math.max(0, ...o.samples.map((s) => s.locks).filter(Number.isFinite));
  const noLockLeak = o.after.redis.locks === 0;

  const grants = o.after.idpGrants;
  const perExpiry = o.report.tokenChanges > 0 ? grants / o.report.tokenChanges : Number.NaN;
  const gatewaySuccess = (o.after.refresh.success ?? 0) - (o.before.refresh.success ?? 0);
  const invalidGrants = (o.after.refresh.invalid_grant ?? 0) - (o.before.refresh.invalid_grant ?? 0);
  const refreshErrors = (o.after.refresh.error ?? 0) - (o.before.refresh.error ?? 0);
  const oneRefresh = grants === o.report.tokenChanges && o.report.earlyChanges === 0;

  const outageEnd = o.redisUpAt + RECOVERY_GRACE_S;
  const outage: Record<string, number> = {};
  const outside: Record<string, number> = {};
  let lastOutageFailure = Number.NaN;
  for (const f of o.report.failureTimes) {
    const t = (f.at - o.t0Abs) / 1000;
    const bucket = t >= o.redisDownAt && t <= outageEnd ? outage : outside;
    bucket[f.status] = (bucket[f.status] ?? 0) + 1;
    if (bucket === outage) lastOutageFailure = Number.isFinite(lastOutageFailure) ? Math.max(lastOutageFailure, t) : t;
  }
  const recovery = Number.isFinite(lastOutageFailure) ? Math.max(0, lastOutageFailure - o.redisUpAt) : 0;
  const noErrorsOutside = Object.keys(outside).length === 0;
  const noSessionLost = o.report.sessionsLost === 0;

  const fmtCounts = (c: Record<string, number>) =>
    Object.keys(c).length
      ? Object.entries(c)
          .map(([s, n]) => `${n}× ${s}`)
          .join(', ')
      : 'none';
  const yes = (ok: boolean) => (ok ? 'yes' : '**NO**');
  const pct = (x: number) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)} %`;
  const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
  const shortRun = DURATION_S < 600;

  const md = `# Soak: ${LABEL}

${shortRun ? `**Short run (${DURATION_S} s)** to show that the soak works; the goal is judged on the full 10-minute run (\`npm run soak\`).\n\n` : ''}Generated by \`soak/run.ts\` on ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC. Chart: [${LABEL}.svg](${LABEL}.svg), raw samples: [${LABEL}.json](${LABEL}.json).

| setting | value |
|---|---|
| duration | ${DURATION_S} s, a sample every ${SAMPLE_S} s |
| sessions | ${SESSIONS} (logged in through the embedded IdP in ${o.loginSeconds.toFixed(0)} s before the run) |
| access-token lifetime | ${TOKEN_TTL_S} s, refreshed ${WINDOW_S} s before expiry (\`tokens.refreshBeforeExpiry\`) |
| load | every session sends 2 parallel API calls every ${INTERVAL_S} s, to 2 different instances: ${((SESSIONS * 2) / INTERVAL_S).toFixed(0)} requests/s |
| gateways | ${INSTANCES} processes (${FROM === 'dist' ? 'bin/bff-gateway.js, compiled' : 'from sources with tsx'}), Redis store, log level ${values['log-level']} |
| Redis restart | stopped at ${f1(o.redisDownAt)} s, back at ${f1(o.redisUpAt)} s (append-only file: data kept) |
| machine | ${o.machine.cpus} cores, Node ${o.machine.node}, load average at start ${o.machine.loadavgAtStart.join(' / ')}, gateways, IdP, Redis and load generator all on it |

## Goals

| goal | result | met |
|---|---|---|
| no retained growth: live JS heap right after each full GC (V8 Mark-Compact) from ${WARMUP_S} s on, least-squares trend over the rest of the run within ±10 % of its mean | ${live.map((l, i) => (l.n < 4 ? `instance ${i + 1}: only ${l.n} full GCs after warm-up, too few for a trend` : `instance ${i + 1}: ${f1(l.mean)} MB mean over ${l.n} full GCs (range ${f1(l.min)}–${f1(l.max)}), trend ${l.rise >= 0 ? '+' : ''}${f1(l.rise)} MB (${pct(l.drift)}, ${l.perMin >= 0 ? '+' : ''}${l.perMin.toFixed(2)} MB/min)`)).join('; ')} | ${yes(liveFlat)} |
| memory outside the JS heap levels off: RSS minus V8's heap capacity (\`heapTotal\`), least-squares trend over the second half of the run, as a rise over ${WARMUP_S}–${DURATION_S} s, within ±10 % of its mean | ${native.map((l, i) => `instance ${i + 1}: ${f1(l.mean)} MB mean (range ${f1(l.min)}–${f1(l.max)}), trend ${l.rise >= 0 ? '+' : ''}${f1(l.rise)} MB (${pct(l.drift)}, ${l.perMin >= 0 ? '+' : ''}${l.perMin.toFixed(2)} MB/min)`).join('; ')} | ${yes(nativeFlat)} |
| no socket leak: TCP sockets per instance before the load vs 10 s after it | ${socketsBefore.map((n, i) => `instance ${i + 1}: ${n} → ${socketsAfter[i]} (max ${socketsMax[i]} under load); fds ${fdsBefore[i]} → ${fdsAfter[i]}`).join('; ')} | ${yes(noSocketLeak)} |
| no Redis connection leak: clients before, before the restart, at the end, after | ${o.before.redis.redisClients}, ${redisClientsBeforeRestart}, ${redisClientsEnd}, ${o.after.redis.redisClients} (range ${Math.min(...redisClientsSeries)}–${Math.max(...redisClientsSeries)}) | ${yes(noRedisLeak)} |
| no lock leak: refresh locks in Redis after the run | ${o.after.redis.locks} (at most ${maxLocks} in any sample) | ${yes(noLockLeak)} |
| one refresh per session per expiry | ${grants} refresh grants at the IdP for ${o.report.tokenChanges} token changes seen by the upstream: ${f1(perExpiry)} per expiry${Number.isFinite(perExpiry) ? ` (${perExpiry.toFixed(3)})` : ''}; ${o.report.earlyChanges} second refreshes within one token lifetime; gateways counted ${gatewaySuccess} successful refreshes, ${invalidGrants} refused by the IdP (invalid_grant: the session ends), ${refreshErrors} failed and ${(o.after.refresh.coalesced ?? 0) - (o.before.refresh.coalesced ?? 0)} coalesced, so ${grants - gatewaySuccess - invalidGrants - refreshErrors} grants answered by the IdP were never stored | ${yes(oneRefresh)} |
| no failure outside the Redis outage (stop → back + ${RECOVERY_GRACE_S} s) | ${fmtCounts(outside)} | ${yes(noErrorsOutside)} |
| no session lost (no 401) | ${o.report.sessionsLost} sessions answered 401 | ${yes(noSessionLost)} |

## The run

- RSS (not a goal by itself: V8's heap capacity is in it, see [docs/deployment.md](../../docs/deployment.md#soak)), median of ${WARMUP_S}–${WARMUP_S + WINDOW_CMP_S} s vs the last ${WINDOW_CMP_S} s: ${rss.map((r, i) => `instance ${i + 1}: ${f1(r.base)} → ${f1(r.end)} MB (${pct(r.drift)}), range ${f1(r.min)}–${f1(r.max)} MB`).join('; ')}. V8 heap capacity (\`heapTotal\`) in the same windows: ${heapTotal.map((r, i) => `instance ${i + 1}: ${f1(r.base)} → ${f1(r.end)} MB, range ${f1(r.min)}–${f1(r.max)} MB`).join('; ')}.
- Requests: ${o.report.requests}, ${o.report.ok} answered 200 (${((o.report.ok / Math.max(1, o.report.requests)) * 100).toFixed(2)} %); ${o.report.skippedTicks} ticks skipped because the session's previous calls were still unanswered (a session never has more than its two calls out).
- Refreshes whose token no successful call ever carried: ${grants - o.report.tokenChanges}.
- During the Redis outage: ${fmtCounts(outage)}; last failure ${f1(recovery)} s after Redis was back.
- Token changes per session: min ${o.report.changesPerSession.min}, median ${o.report.changesPerSession.median}, max ${o.report.changesPerSession.max}; ${o.report.sessionsWithoutChange} sessions without a change; ${o.report.splitTicks} ticks whose two parallel calls carried different tokens; ${o.report.staleTokens} calls that carried an already replaced token.
- Latency per sample (ms, p50 / p99, median over samples): ${f1(median(o.samples.map((s) => s.load.p50)))} / ${f1(median(o.samples.map((s) => s.load.p99)))}; worst p99 ${f1(Math.max(...o.samples.map((s) => s.load.p99)))}.
- Machine load average (1 min) during the run: ${f1(Math.min(...o.samples.map((s) => s.loadavg)))}–${f1(Math.max(...o.samples.map((s) => s.loadavg)))}.
- Gateway log lines at level ${values['log-level']} or above: ${o.gateways.map((g) => g.warningCount).join(' / ')}${o.gateways.some((g) => g.warnings.length) ? `; first ones:\n\n\`\`\`\n${o.gateways.flatMap((g) => g.warnings.slice(0, 5).map((w) => `[${g.index}] ${w}`)).join('\n')}\n\`\`\`` : ''}
`;

  const series = (pick: (s: Sample) => number) => o.samples.map((s) => [s.t, pick(s)] as [number, number]);
  const panels: PanelSpec[] = [
    {
      title: 'Memory per instance',
      unit: 'MB',
      series: o.gateways.flatMap((_, i) => [
        { name: `${i + 1}: RSS`, points: series((s) => rssOf(s, i)) },
        { name: `${i + 1}: RSS − heap`, points: series((s) => rssOf(s, i) - heapTotalOf(s, i)) },
      ]),
    },
    {
      title: 'V8 heap per instance',
      unit: 'MB',
      series: o.gateways.flatMap((g, i) => [
        { name: `${i + 1}: capacity`, points: series((s) => heapTotalOf(s, i)) },
        {
          name: `${i + 1}: live after GC`,
          points: g.markCompacts
            .map(([ms, mb]) => [(g.spawnedAt + ms - o.t0Abs) / 1000, mb] as [number, number])
            .filter(([t]) => t >= 0 && t <= DURATION_S),
        },
      ]),
    },
    {
      title: 'TCP sockets per instance',
      unit: 'count',
      series: o.gateways.flatMap((_, i) => [
        { name: `${i + 1}: clients`, points: series((s) => s.gateways[i]?.sockets.clients ?? Number.NaN) },
        {
          name: `${i + 1}: upstream+IdP`,
          points: series((s) => (s.gateways[i] ? s.gateways[i].sockets.upstream + s.gateways[i].sockets.idp : Number.NaN)),
        },
      ]),
    },
    {
      title: 'Redis',
      unit: 'count',
      series: [
        { name: 'client connections', points: series((s) => s.redisClients) },
        { name: 'refresh locks', points: series((s) => s.locks) },
      ],
    },
    {
      title: 'Requests per sample',
      unit: `per ${SAMPLE_S} s`,
      series: [
        { name: '200', points: series((s) => s.load.ok) },
        { name: 'failed', points: series((s) => s.load.requests - s.load.ok) },
      ],
    },
    {
      title: 'Refreshes per sample',
      unit: `per ${SAMPLE_S} s`,
      series: [
        {
          name: 'IdP refresh grants',
          points: o.samples.map((s, i) => [s.t, s.idpRefreshGrants - (o.samples[i - 1]?.idpRefreshGrants ?? 0)] as [number, number]),
        },
        { name: 'token changes seen', points: series((s) => s.load.tokenChanges) },
      ],
    },
  ];
  const svg = svgChart(
    `bff-gateway soak ${LABEL}: ${SESSIONS} sessions, tokens expire every ${TOKEN_TTL_S} s`,
    panels,
    o.events.map((e) => ({ at: e.t, label: e.what })),
    DURATION_S,
  );

  writeFileSync(join(RESULTS, `${LABEL}.md`), md);
  writeFileSync(join(RESULTS, `${LABEL}.svg`), svg);
  writeFileSync(
    join(RESULTS, `${LABEL}.json`),
    `${JSON.stringify({ settings: { DURATION_S, SESSIONS, TOKEN_TTL_S, WINDOW_S, INTERVAL_S, INSTANCES, RESTART_AT_S, REDIS_DOWN_S, SAMPLE_S, FROM }, machine: o.machine, events: o.events, before: o.before, after: o.after, report: { ...o.report, failureTimes: o.report.failureTimes.length }, samples: o.samples, markCompacts: o.gateways.map((g) => g.markCompacts.map(([ms, mb]) => [(g.spawnedAt + ms - o.t0Abs) / 1000, mb])) }, null, 1)}\n`,
  );
  console.log(md);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err instanceof Error ? err.stack : err);
    process.exit(1);
  },
);
