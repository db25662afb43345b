/**
 * Side by side: bff-gateway against the upstream directly, nginx as a plain reverse proxy, a
 * bare Node `http` + http-proxy proxy, and Apache + mod_auth_openidc as an equivalent OIDC
 * relying party — all in one run, on one machine, interleaved, so the ratios mean something
 * even where the absolute numbers do not.
 *
 *   node --import tsx bench/side-by-side.ts [--seconds 10] [--rounds 2] [--warmup 2]
 *        [--concurrency 50,1] [--token-ttl 60] [--targets direct,nginx,node,apache,gateway]
 *        [--label "text"] [--out bench/results/side-by-side.md] [--no-install]
 *
 * Every target serves the same 300-byte JSON from the same upstream process at `/api/300`:
 *   - direct: the upstream itself;
 *   - nginx: `proxy_pass` with an upstream keep-alive pool, one worker, no access log;
 *   - node: node:http + http-proxy 1.18 (bench/library-proxy.ts), keep-alive agent, no logging;
 *   - apache: Apache (event MPM, one child of 64 threads) + mod_auth_openidc, Redis sessions
 *     (`OIDCCacheType redis`, encrypted by default), `Authorization: Bearer <access token>` set
 *     from `OIDC_access_token` and forwarded by mod_proxy, session cookie stripped, refresh
 *     30 s before expiry, access log to /dev/null;
 *   - gateway: bff-gateway (the CLI) with a Redis session store, a `token: user` route (Bearer
 *     attached, body scrubbing on as by default), logging at the default level to /dev/null.
 * Both relying parties are clients of the same embedded IdP (demo/idp.ts), each with its own
 * Redis, and are logged in (fetch + cookie jar through the IdP) before anything is measured.
 *
 * For each round, each concurrency, each target (order reversed every other round): a short
 * warm-up, then one measured wrk run. Around the measured run: CPU ticks of every process
 * involved (/proc/<pid>/stat utime + stime, descendants included), Redis `INFO commandstats`,
 * the IdP's refresh-grant counter and the upstream's request counter (every request must reach
 * it, with a Bearer for the relying parties). Missing Debian packages are installed with apt
 * (as root). Everything started is stopped. Writes bench/results/side-by-side.md.
 */
import { spawn, spawnSync, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startIdp, type Idp } from '../demo/idp.ts';
import { request } from 'undici';
import { CookieJar, login } from '../test/support/login.ts';
import { freePort, redisCommand } from '../test/support/redis.ts';
import { median, startNodeProcess, stopProcess, wrk, type WrkResult } from './lib.ts';
import { clockTicks, delta, snapshot, type GroupDelta } from './procstat.ts';

const { values: opts } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '2' },
    warmup: { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '50,1' },
    'token-ttl': { type: 'string', default: '60' },
    targets: { type: 'string', default: 'direct,nginx,node,apache,gateway' },
    'node-proxy': { type: 'string', default: 'http-proxy' },
    label: { type: 'string', default: '' },
    out: { type: 'string', default: new URL('./results/side-by-side.md', import.meta.url).pathname },
    'no-install': { type: 'boolean', default: false },
    // A directory: the gateway runs with `--cpu-prof` and writes its profile there on exit
    // (summarised by bench/profile-summary.ts). Profiling slows it: not for the ratios.
    'gateway-profile': { type: 'string', default: '' },
    // Another build of the CLI (e.g. a worktree of an older commit, built): before/after runs.
    'gateway-bin': { type: 'string', default: '' },
  },
});
const SECONDS = clamp(Number(opts.seconds), 1, 120);
const ROUNDS = clamp(Number(opts.rounds), 1, 10);
const WARMUP = clamp(Number(opts.warmup), 0, 30);
const CONCURRENCY = String(opts.concurrency)
  .split(',')
  .map(Number)
  .filter((n) => n >= 1 && n <= 1000);
const TOKEN_TTL = clamp(Number(opts['token-ttl']), 35, 86_400);
const REFRESH_BEFORE = 30;
const SETTLE_MS = 500;
const WANTED = String(opts.targets)
  .split(',')
  .map((s) => s.trim());
const PATH = '/api/300';
const here = new URL('.', import.meta.url).pathname;

function clamp(n: number, lo: number, hi: number): number {
  if (!Number.isFinite(n)) throw new Error(`not a number: ${n}`);
  return Math.min(Math.max(n, lo), hi);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// Debian packages

const PACKAGES: Array<{ pkg: string; file: string; for: string[] }> = [
  { pkg: 'wrk', file: '/usr/bin/wrk', for: ['*'] },
  { pkg: 'redis-server', file: '/usr/bin/redis-server', for: ['*'] },
  { pkg: 'nginx', file: '/usr/sbin/nginx', for: ['nginx'] },
  { pkg: 'apache2', file: '/usr/sbin/apache2', for: ['apache'] },
  { pkg: 'libapache2-mod-auth-openidc', file: '/usr/lib/apache2/modules/mod_auth_openidc.so', for: ['apache'] },
];

function ensurePackages(): void {
  const missing = PACKAGES.filter((p) => (p.for.includes('*') || p.for.some((t) => WANTED.includes(t))) && !existsSync(p.file)).map(
    (p) => p.pkg,
  );
  if (!missing.length) return;
  if (opts['no-install'] || process.getuid?.() !== 0) {
    throw new Error(
      `missing Debian packages: ${missing.join(' ')} — install them with: apt-get update && apt-get install -y ${missing.join(' ')}`,
    );
  }
  console.log(`installing ${missing.join(' ')} with apt-get`);
  // Keep the packages' own services (port 80, 6379) from starting: only what this bench starts
  // runs, and it stops it all. policy-rc.d is removed again if it was ours.
  const policy = '/usr/sbin/policy-rc.d';
  const ownPolicy = !existsSync(policy);
  if (ownPolicy) writeFileSync(policy, '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  try {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    for (const args of [['update'], ['install', '-y', '--no-install-recommends', ...missing]]) {
      const result = spawnSync('apt-get', args, { stdio: 'inherit', env, timeout: 600_000 });
      if (result.status !== 0) throw new Error(`apt-get ${args[0]} failed (${result.status})`);
    }
  } finally {
    if (ownPolicy) unlinkSync(policy);
  }
}

// ---------------------------------------------------------------------------------------------
// Processes this bench starts, stopped in reverse order whatever happens

const cleanups: Array<() => Promise<void>> = [];
let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const fn of cleanups.reverse()) await fn().catch((err: unknown) => console.error('cleanup:', err));
  })();
  return cleaning;
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`${signal}: stopping everything this bench started`);
    void cleanup().then(() => process.exit(130));
  });
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill(signal);
  await Promise.race([once(child, 'exit'), sleep(5000)]);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

async function waitFor(what: string, check: () => Promise<boolean>, child?: ChildProcess, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child && (child.exitCode !== null || child.signalCode !== null))
      throw new Error(`${what}: process exited (${child.exitCode ?? child.signalCode})`);
    if (await check().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

const listening = (port: number) => () =>
  fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1000) }).then(
    async (res) => {
      await res.body?.cancel();
      return true;
    },
    () => false,
  );

interface RedisProcess {
  port: number;
  pid: number;
  url: string;
}

async function startRedisServer(dir: string, name: string): Promise<RedisProcess> {
  const port = await freePort();
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--protected-mode',
      'no',
      '--dir',
      dir,
      '--logfile',
      join(dir, `redis-${name}.log`),
    ],
    { stdio: 'ignore' },
  );
  cleanups.push(() => stopChild(child));
  await waitFor(`redis-server (${name})`, async () => (await redisCommand(port, 'PING')) === '+PONG', child);
  return { port, pid: child.pid as number, url: `redis://127.0.0.1:${port}` };
}

async function commandStats(port: number): Promise<Map<string, { calls: number; usec: number }>> {
  const text = await redisCommand(port, 'INFO commandstats');
  const stats = new Map<string, { calls: number; usec: number }>();
  for (const match of text.matchAll(/cmdstat_([\w|-]+):calls=(\d+),usec=(\d+)/g)) {
    stats.set(match[1] as string, { calls: Number(match[2]), usec: Number(match[3]) });
  }
  return stats;
}

// Commands that change data (EVAL/EVALSHA counted as writes: a script may write).
const WRITES = new Set([
  'set',
  'setex',
  'psetex',
  'setnx',
  'getset',
  'getdel',
  'getex',
  'del',
  'unlink',
  'expire',
  'pexpire',
  'expireat',
  'pexpireat',
  'persist',
  'hset',
  'hmset',
  'hsetnx',
  'hdel',
  'hincrby',
  'sadd',
  'srem',
  'zadd',
  'zrem',
  'zremrangebyscore',
  'lpush',
  'rpush',
  'lpop',
  'rpop',
  'ltrim',
  'incr',
  'incrby',
  'decr',
  'decrby',
  'eval',
  'evalsha',
  'mset',
  'rename',
  'restore',
]);

// ---------------------------------------------------------------------------------------------
// Configurations

function nginxConf(dir: string, port: number, upstreamPort: number): string {
  return `worker_processes 1; daemon off; master_process on; pid ${dir}/nginx.pid; error_log ${dir}/nginx-error.log warn;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 60s;
  client_body_temp_path ${dir}/nginx-body; proxy_temp_path ${dir}/nginx-proxy;
  upstream app { server 127.0.0.1:${upstreamPort}; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:${port};
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
`;
}

function apacheConf(
  dir: string,
  port: number,
  upstreamPort: number,
  idp: Idp,
  redisPort: number,
  client: { id: string; secret: string },
): string {
  const modules = '/usr/lib/apache2/modules';
  return `ServerRoot ${dir}
ServerName 127.0.0.1
Listen 127.0.0.1:${port}
PidFile ${dir}/apache.pid
DefaultRuntimeDir ${dir}
Mutex posixsem default
ErrorLog ${dir}/apache-error.log
LogLevel warn
LogFormat "%h %l %u %t \\"%r\\" %>s %b %D" bench
CustomLog /dev/null bench
LoadModule mpm_event_module ${modules}/mod_mpm_event.so
LoadModule authn_core_module ${modules}/mod_authn_core.so
LoadModule authz_core_module ${modules}/mod_authz_core.so
LoadModule authz_user_module ${modules}/mod_authz_user.so
LoadModule headers_module ${modules}/mod_headers.so
LoadModule proxy_module ${modules}/mod_proxy.so
LoadModule proxy_http_module ${modules}/mod_proxy_http.so
LoadModule auth_openidc_module ${modules}/mod_auth_openidc.so
<IfModule unixd_module>
  User www-data
  Group www-data
</IfModule>
# One child process with 64 threads (more than the 50 connections), never recycled: a fixed
# set of processes whose CPU time /proc can account for.
StartServers 1
ServerLimit 1
ThreadLimit 64
ThreadsPerChild 64
MaxRequestWorkers 64
MinSpareThreads 1
MaxSpareThreads 64
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 60

OIDCProviderMetadataURL ${idp.issuer}/.well-known/openid-configuration
OIDCClientID ${client.id}
OIDCClientSecret ${client.secret}
OIDCProviderTokenEndpointAuth client_secret_basic
OIDCRedirectURI http://127.0.0.1:${port}/oidc/redirect_uri
OIDCCryptoPassphrase ${randomBytes(32).toString('hex')}
OIDCScope "openid api"
OIDCPKCEMethod S256
OIDCStateInputHeaders none
OIDCSessionType server-cache
OIDCCacheType redis
OIDCRedisCacheServer 127.0.0.1:${redisPort}
OIDCSessionInactivityTimeout 7200
OIDCSessionMaxDuration 43200
OIDCRefreshAccessTokenBeforeExpiry ${REFRESH_BEFORE}
OIDCPassClaimsAs environment
OIDCStripCookies mod_auth_openidc_session mod_auth_openidc_session_chunks mod_auth_openidc_session_0 mod_auth_openidc_session_1
OIDCDefaultURL http://127.0.0.1:${port}${PATH}

<Location /oidc>
  AuthType openid-connect
  Require valid-user
</Location>
<Location /api/>
  AuthType openid-connect
  Require valid-user
  RequestHeader set Authorization "Bearer %{OIDC_access_token}e" env=OIDC_access_token
  ProxyPass http://127.0.0.1:${upstreamPort}/api/
</Location>
`;
}

function gatewayConf(port: number, idp: Idp, redisUrl: string, client: { id: string; secret: string }, upstreamPort: number): string {
  const random = (n: number) => randomBytes(n);
  return `listen: { host: 127.0.0.1, port: ${port} }
publicUrl: http://127.0.0.1:${port}
oidc: { issuer: ${idp.issuer}, clientId: ${client.id}, clientSecret: ${client.secret}, scopes: [openid, api] }
session:
  store: redis
  redis: { url: ${redisUrl} }
  secret: ${random(32).toString('base64url')}
  encryptionKey: ${random(32).toString('base64')}
tokens: { refreshBeforeExpiry: ${REFRESH_BEFORE}s }
routes:
  - { path: /api, upstream: http://127.0.0.1:${upstreamPort}, token: user }
`;
}

/**
 * mod_auth_openidc's login, as a browser would do it: follow redirects through the IdP.
 * undici's request, not fetch: fetch always sends `Sec-Fetch-Mode: cors`, and mod_auth_openidc
 * answers such (non-navigation) requests 401 instead of starting a login.
 */
async function loginApache(baseUrl: string): Promise<string> {
  const jar = new CookieJar();
  const origin = new URL(baseUrl).origin;
  let url = new URL(PATH, baseUrl);
  for (let hop = 0; hop < 20; hop += 1) {
    const headers: Record<string, string> = { accept: 'text/html', 'sec-fetch-mode': 'navigate', 'user-agent': 'bench-login' };
    const cookie = jar.header(url);
    if (cookie) headers.cookie = cookie;
    const res = await request(url, { headers, headersTimeout: 10_000, bodyTimeout: 10_000 });
    const text = await res.body.text();
    const setCookie = res.headers['set-cookie'];
    jar.store(url, setCookie === undefined ? [] : Array.isArray(setCookie) ? setCookie : [setCookie]);
    const location = res.headers.location;
    if (res.statusCode === 200 && url.origin === origin) return jar.header(new URL(PATH, baseUrl));
    if (res.statusCode < 300 || res.statusCode >= 400 || typeof location !== 'string') {
      throw new Error(`mod_auth_openidc login stopped at ${url.href}: HTTP ${res.statusCode}\n${text.slice(0, 500)}`);
    }
    const next = new URL(location, url);
    if (next.origin !== origin && next.pathname.startsWith('/interaction/') && !next.searchParams.has('login')) {
      next.searchParams.set('login', 'alice');
      next.searchParams.set('password', 'demo');
    }
    url = next;
  }
  throw new Error('mod_auth_openidc login did not finish within 20 redirects');
}

async function retry<T>(what: string, fn: () => Promise<T>, attempts = 100): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await fn();
    } catch (err) {
      if (attempt >= attempts) throw new Error(`${what}: ${err instanceof Error ? err.message : String(err)}`);
      await sleep(100);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Targets and measurement

interface Target {
  key: string;
  name: string;
  url: string;
  headers: Record<string, string>;
  /** Root pids of the proxy's processes (descendants are counted too); none for direct. */
  proxyPids: number[];
  /** What the CPU column counts, in words. */
  proxyProcesses: string;
  redis?: RedisProcess;
  /** A relying party: every request must reach the upstream with a Bearer. */
  rp: boolean;
  /** Logs in again (a lost session), returning the new headers. */
  relogin?: () => Promise<Record<string, string>>;
}

interface Cell {
  target: string;
  round: number;
  connections: number;
  wrk: WrkResult;
  cpu: Record<string, GroupDelta>;
  storeCalls: number;
  storeWrites: number;
  storeUsec: number;
  storeByCommand: Record<string, number>;
  refreshes: number;
  /** Requests that reached the upstream during the run: the requests the proxy served (wrk's
   * count leaves out the ones still in flight when it stopped). Per-request figures use it. */
  upstreamRequests: number;
  upstreamBearer: number;
  probe: string;
  relogged: boolean;
}

async function upstreamStats(port: number): Promise<{ requests: number; bearer: number }> {
  const res = await fetch(`http://127.0.0.1:${port}/__bench/stats`);
  return (await res.json()) as { requests: number; bearer: number };
}

async function probe(target: Target): Promise<string> {
  const res = await fetch(target.url, { headers: target.headers, redirect: 'manual', signal: AbortSignal.timeout(10_000) }).catch(
    (err: Error) => err,
  );
  if (res instanceof Error) return `error ${res.message}`;
  const body = await res.arrayBuffer();
  return res.status === 200 && body.byteLength === 300 ? 'ok' : `HTTP ${res.status} (${body.byteLength} bytes)`;
}

function version(cmd: string, args: string[], pattern: RegExp): string {
  const result = spawnSync(cmd, args, { encoding: 'utf8' });
  return pattern.exec(`${result.stdout}${result.stderr}`)?.[1] ?? 'unknown';
}

function machineInfo(): Record<string, string> {
  const cpuModel = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model ?? 'unknown';
  const dpkg = (pkg: string) => {
    try {
      return execFileSync('dpkg-query', ['-W', '-f=${Version}', pkg], { encoding: 'utf8' });
    } catch {
      return 'not installed';
    }
  };
  return {
    date: new Date().toISOString(),
    cpu: cpuModel,
    cores: String(cpus().length),
    node: process.version,
    nginx: version('nginx', ['-v'], /nginx\/(\S+)/),
    apache: version('apache2', ['-v'], /Apache\/(\S+)/),
    mod_auth_openidc: dpkg('libapache2-mod-auth-openidc'),
    redis: version('redis-server', ['--version'], /v=(\S+)/),
    wrk: version('wrk', ['-v'], /wrk (\S+)/),
    'http-proxy': JSON.parse(readFileSync(new URL(`../node_modules/${opts['node-proxy']}/package.json`, import.meta.url), 'utf8'))
      .version as string,
  };
}

async function main(): Promise<void> {
  ensurePackages();
  const info = machineInfo();
  const loadStart = loadavg();
  const dir = await mkdtemp(join(tmpdir(), 'bff-side-by-side-'));
  await chmod(dir, 0o755); // Apache's children run as www-data
  cleanups.push(() => rm(dir, { recursive: true, force: true }));

  const upstream = await startNodeProcess(`${here}upstream-server.ts`);
  cleanups.push(() => stopProcess(upstream.child));
  const upstreamPid = upstream.child.pid as number;

  const gatewayClient = { id: 'bench-gateway', secret: 'bench-gateway-secret-0123456789' };
  const apacheClient = { id: 'bench-apache', secret: 'bench-apache-secret-0123456789' };
  const gatewayPort = await freePort();
  const apachePort = await freePort();
  const idp = await startIdp({
    clientId: gatewayClient.id,
    clientSecret: gatewayClient.secret,
    redirectUris: [`http://127.0.0.1:${gatewayPort}/auth/callback`],
    accessTokenTtl: TOKEN_TTL,
  });
  cleanups.push(() => idp.close());
  // The second client, mod_auth_openidc's, goes into the IdP's client storage: oidc-provider
  // looks up clients it was not configured with there.
  const clientAdapter = (idp.provider as unknown as { Client: { adapter: { upsert(id: string, payload: object): Promise<void> } } }).Client
    .adapter;
  await clientAdapter.upsert(apacheClient.id, {
    client_id: apacheClient.id,
    client_secret: apacheClient.secret,
    redirect_uris: [`http://127.0.0.1:${apachePort}/oidc/redirect_uri`],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  });

  const targets: Target[] = [];
  const base = (port: number) => `http://127.0.0.1:${port}${PATH}`;
  targets.push({
    key: 'direct',
    name: 'direct upstream',
    url: base(upstream.port),
    headers: {},
    proxyPids: [],
    proxyProcesses: 'none',
    rp: false,
  });

  if (WANTED.includes('nginx')) {
    const port = await freePort();
    const nginxDir = join(dir, 'nginx');
    await mkdir(nginxDir);
    await writeFile(join(nginxDir, 'nginx.conf'), nginxConf(nginxDir, port, upstream.port));
    const child = spawn('nginx', ['-c', join(nginxDir, 'nginx.conf'), '-p', nginxDir], { stdio: 'ignore' });
    cleanups.push(() => stopChild(child));
    await waitFor('nginx', listening(port), child);
    targets.push({
      key: 'nginx',
      name: `nginx ${info.nginx} proxy_pass`,
      url: base(port),
      headers: {},
      proxyPids: [child.pid as number],
      proxyProcesses: 'nginx master + 1 worker',
      rp: false,
    });
  }

  if (WANTED.includes('node')) {
    const proxy = await startNodeProcess(`${here}library-proxy.ts`, [String(opts['node-proxy']), String(upstream.port)]);
    cleanups.push(() => stopProcess(proxy.child));
    targets.push({
      key: 'node',
      name: `bare Node http + ${opts['node-proxy']} ${info['http-proxy']}`,
      url: base(proxy.port),
      headers: {},
      proxyPids: [proxy.child.pid as number],
      proxyProcesses: 'the node process',
      rp: false,
    });
  }

  if (WANTED.includes('apache')) {
    const redis = await startRedisServer(dir, 'apache');
    const apacheDir = join(dir, 'apache');
    await mkdir(apacheDir);
    await chmod(apacheDir, 0o755);
    await writeFile(join(apacheDir, 'apache2.conf'), apacheConf(apacheDir, apachePort, upstream.port, idp, redis.port, apacheClient));
    const child = spawn('apache2', ['-f', join(apacheDir, 'apache2.conf'), '-DFOREGROUND'], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, APACHE_RUN_DIR: apacheDir, APACHE_LOG_DIR: apacheDir },
    });
    cleanups.push(() => stopChild(child));
    await waitFor('apache2', listening(apachePort), child);
    const apacheUrl = `http://127.0.0.1:${apachePort}`;
    const doLogin = async () => ({ cookie: await retry('mod_auth_openidc login', () => loginApache(apacheUrl), 30) });
    targets.push({
      key: 'apache',
      name: `Apache ${info.apache} + mod_auth_openidc ${info.mod_auth_openidc} (Redis session, Bearer)`,
      url: base(apachePort),
      headers: await doLogin(),
      proxyPids: [child.pid as number],
      proxyProcesses: 'apache2 parent + its child (64 threads)',
      redis,
      rp: true,
      relogin: doLogin,
    });
  }

  if (WANTED.includes('gateway')) {
    const redis = await startRedisServer(dir, 'gateway');
    await writeFile(join(dir, 'gateway.yaml'), gatewayConf(gatewayPort, idp, redis.url, gatewayClient, upstream.port));
    const child = spawn(
      process.execPath,
      [
        ...(opts['gateway-profile'] ? ['--cpu-prof', `--cpu-prof-dir=${opts['gateway-profile']}`] : []),
        // The compiled CLI, as users run it (`npm run bench` builds it first).
        opts['gateway-bin'] || `${here}../bin/bff-gateway.js`,
        '--config',
        join(dir, 'gateway.yaml'),
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    cleanups.push(() => stopChild(child));
    const publicUrl = `http://127.0.0.1:${gatewayPort}`;
    await waitFor('bff-gateway', listening(gatewayPort), child);
    // The gateway discovers the IdP in the background: retry the login until it is ready.
    const doLogin = async () => ({ cookie: (await retry('bff-gateway login', () => login(publicUrl))).cookieHeader, 'x-csrf': '1' });
    targets.push({
      key: 'gateway',
      name: 'bff-gateway (Redis session, Bearer, scrubbing on)',
      url: base(gatewayPort),
      headers: await doLogin(),
      proxyPids: [child.pid as number],
      proxyProcesses: 'the gateway node process',
      redis,
      rp: true,
      relogin: doLogin,
    });
  }

  for (const target of targets) {
    const state = await probe(target);
    if (state !== 'ok') throw new Error(`${target.name} does not answer ${PATH} before the run: ${state}`);
  }
  const refreshesAtLogin = idp.counters.refreshGrants;

  const cells: Cell[] = [];
  const started = Date.now();
  for (let round = 1; round <= ROUNDS; round += 1) {
    const order = round % 2 ? targets : [...targets].reverse();
    for (const connections of CONCURRENCY) {
      for (const target of order) {
        const wrkOptions = { connections, headers: target.headers };
        if (WARMUP > 0) await wrk(target.url, { ...wrkOptions, seconds: WARMUP });
        // Requests wrk abandoned when it stopped may still be in the proxy: let them finish, so
        // that each window counts the work of the requests sent in it, before and after.
        await sleep(SETTLE_MS);
        const groups: Record<string, number[]> = {
          proxy: target.proxyPids,
          upstream: [upstreamPid],
          redis: target.redis ? [target.redis.pid] : [],
          bench: [-process.pid],
        };
        const redisBefore = target.redis ? await commandStats(target.redis.port) : undefined;
        const upBefore = await upstreamStats(upstream.port);
        const refreshBefore = idp.counters.refreshGrants;
        const cpuBefore = snapshot(groups);
        const result = await wrk(target.url, { ...wrkOptions, seconds: SECONDS });
        await sleep(SETTLE_MS);
        const cpuAfter = snapshot(groups);
        const refreshes = idp.counters.refreshGrants - refreshBefore;
        const upAfter = await upstreamStats(upstream.port);
        const redisAfter = target.redis ? await commandStats(target.redis.port) : undefined;
        let storeCalls = 0;
        let storeWrites = 0;
        let storeUsec = 0;
        const storeByCommand: Record<string, number> = {};
        for (const [command, after] of redisAfter ?? []) {
          if (command === 'info') continue;
          const calls = after.calls - (redisBefore?.get(command)?.calls ?? 0);
          if (!calls) continue;
          storeByCommand[command] = calls;
          storeCalls += calls;
          storeUsec += after.usec - (redisBefore?.get(command)?.usec ?? 0);
          if (WRITES.has(command.split('|')[0] as string)) storeWrites += calls;
        }
        const cpu = Object.fromEntries(Object.keys(groups).map((name) => [name, delta(cpuBefore[name]!, cpuAfter[name]!)]));
        let state = await probe(target);
        let relogged = false;
        if (state !== 'ok' && target.relogin) {
          target.headers = await target.relogin();
          relogged = true;
          state = `${state}, logged in again`;
        }
        const cell: Cell = {
          target: target.key,
          round,
          connections,
          wrk: result,
          cpu,
          storeCalls,
          storeWrites,
          storeUsec,
          storeByCommand,
          refreshes,
          upstreamRequests: upAfter.requests - upBefore.requests,
          upstreamBearer: upAfter.bearer - upBefore.bearer,
          probe: state,
          relogged,
        };
        cells.push(cell);
        console.log(
          `round ${round} c${connections} ${target.key.padEnd(7)} ${result.rps.toFixed(0).padStart(6)} req/s  p50 ${result.p50ms.toFixed(3)} ms  p99 ${result.p99ms.toFixed(3)} ms  ` +
            `proxy CPU ${target.proxyPids.length ? perRequest(cpu.proxy!.ticks, cell.upstreamRequests).toFixed(0) : '—'} µs/req  store ${(storeCalls / cell.upstreamRequests).toFixed(2)}/req  refreshes ${refreshes}  errors ${result.errors}  upstream ${cell.upstreamRequests}/${result.requests}  probe ${state}`,
        );
      }
    }
  }
  const elapsed = (Date.now() - started) / 1000;
  const loadEnd = loadavg();
  await cleanup();

  const report = render(targets, cells, info, { loadStart, loadEnd, elapsed, refreshesAtLogin });
  writeFileSync(String(opts.out), report);
  console.log(`\n${report}`);
  console.log(`written to ${opts.out}`);
}

function perRequest(ticks: number, requests: number): number {
  return (ticks * 1e6) / clockTicks() / requests;
}

// ---------------------------------------------------------------------------------------------
// Report

const fmt = (n: number, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : '—');

function render(
  targets: Target[],
  cells: Cell[],
  info: Record<string, string>,
  run: { loadStart: number[]; loadEnd: number[]; elapsed: number; refreshesAtLogin: number },
): string {
  const of = (key: string, c: number) => cells.filter((cell) => cell.target === key && cell.connections === c);
  const med = (key: string, c: number, f: (cell: Cell) => number) => {
    const xs = of(key, c).map(f).filter(Number.isFinite);
    return xs.length ? median(xs) : Number.NaN;
  };
  const [hi, lo] = [Math.max(...CONCURRENCY), Math.min(...CONCURRENCY)];
  const rps = (key: string) => med(key, hi, (c) => c.wrk.rps);
  const p50 = (key: string, c: number) => med(key, c, (cell) => cell.wrk.p50ms);
  const p99 = (key: string, c: number) => med(key, c, (cell) => cell.wrk.p99ms);
  const cpuOf = (key: string, c: number, group: string) =>
    med(key, c, (cell) => (cell.cpu[group]?.pids ? perRequest(cell.cpu[group]!.ticks, cell.upstreamRequests) : Number.NaN));
  const wrkCpu = (key: string, c: number) => med(key, c, (cell) => perRequest(cell.wrk.cpuTicks, cell.wrk.requests));
  const wrkCore = (key: string, c: number) => med(key, c, (cell) => (cell.wrk.cpuTicks / clockTicks() / SECONDS) * 100);
  const store = (key: string, c: number) => med(key, c, (cell) => cell.storeCalls / cell.upstreamRequests);
  const writes = (key: string, c: number) => med(key, c, (cell) => cell.storeWrites / cell.upstreamRequests);
  const refreshes = (key: string) => cells.filter((cell) => cell.target === key).reduce((sum, cell) => sum + cell.refreshes, 0);
  const has = (key: string) => targets.some((t) => t.key === key);
  const direct = rps('direct');
  const node = has('node') ? rps('node') : Number.NaN;

  const lines: string[] = [];
  lines.push('# Side by side: bff-gateway, Apache + mod_auth_openidc, a bare Node proxy, nginx, direct', '');
  if (opts.label) lines.push(`**${opts.label}**`, '');
  lines.push(
    `Generated by \`npm run bench\` (\`node --import tsx bench/side-by-side.ts --seconds ${SECONDS} --rounds ${ROUNDS} --warmup ${WARMUP} --concurrency ${CONCURRENCY.join(',')} --token-ttl ${TOKEN_TTL}\`) on ${info.date}.`,
    '',
    `Machine: ${info.cpu}, ${info.cores} cores; load average (1/5/15 min) ${run.loadStart.map((n) => n.toFixed(2)).join(' / ')} at start, ${run.loadEnd.map((n) => n.toFixed(2)).join(' / ')} at end; ${run.elapsed.toFixed(0)} s. ` +
      `Node ${info.node}, nginx ${info.nginx}, Apache ${info.apache}, mod_auth_openidc ${info.mod_auth_openidc}, Redis ${info.redis}, wrk ${info.wrk}, ${opts['node-proxy']} ${info['http-proxy']}.`,
    '',
    `wrk -t1, ${SECONDS} s per measured run after a ${WARMUP} s warm-up, c${CONCURRENCY.join(' and c')}, ${ROUNDS} rounds interleaved (target order reversed every other round), medians over rounds; ` +
      `GET ${PATH}, 300-byte JSON from one Node upstream process, everything on loopback. Access tokens live ${TOKEN_TTL} s; both relying parties refresh ${REFRESH_BEFORE} s before expiry.`,
    '',
    `| target | c${hi} req/s | ratio to direct | ratio to bare Node proxy | c${lo} p50 ms | c${lo} added p50 over direct ms | p99 ms (c${hi} / c${lo}) | CPU µs/req (proxy processes, c${hi}) | store calls/req (writes/req), c${hi} | refreshes per run |`,
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  );
  for (const target of targets) {
    const k = target.key;
    const r = rps(k);
    lines.push(
      `| ${target.name} | ${fmt(r, 0)} | ${fmt(r / direct)} | ${fmt(r / node)} | ${fmt(p50(k, lo), 3)} | ${k === 'direct' ? '—' : fmt(p50(k, lo) - p50('direct', lo), 3)} | ${fmt(p99(k, hi))} / ${fmt(p99(k, lo))} | ` +
        `${target.proxyPids.length ? fmt(cpuOf(k, hi, 'proxy'), 0) : '—'} | ${target.redis ? `${fmt(store(k, hi))} (${fmt(writes(k, hi), 3)})` : '—'} | ${target.rp ? String(refreshes(k)) : '—'} |`,
    );
  }

  const anomalies = cells.flatMap((cell) => {
    const target = targets.find((t) => t.key === cell.target) as Target;
    const problems: string[] = [];
    if (cell.wrk.errors) problems.push(`${cell.wrk.errors} errors`);
    const forwarded = target.rp ? cell.upstreamBearer : cell.upstreamRequests;
    if (forwarded < cell.wrk.requests)
      problems.push(`${cell.wrk.requests - forwarded} answers did not come from the upstream${target.rp ? ' with a Bearer' : ''}`);
    if (cell.probe !== 'ok') problems.push(`probe after the run: ${cell.probe}`);
    return problems.length ? [`round ${cell.round} c${cell.connections} ${cell.target}: ${problems.join('; ')}`] : [];
  });
  lines.push(
    '',
    anomalies.length
      ? `Runs with problems: ${anomalies.join(' · ')}.`
      : 'Every run: 0 errors, every answer came from the upstream (with a Bearer through both relying parties), the session alive after the run.',
  );

  // Goals of issue 10, for bff-gateway.
  if (has('gateway')) {
    const g = 'gateway';
    const verdict = (ok: boolean) => (ok ? 'met' : '**not met**');
    const steady = cells.filter((cell) => cell.target === g && cell.refreshes === 0);
    const steadyCalls = steady.length ? Math.max(...steady.map((cell) => cell.storeCalls / cell.upstreamRequests)) : Number.NaN;
    const steadyWrites = steady.length ? Math.max(...steady.map((cell) => cell.storeWrites / cell.upstreamRequests)) : Number.NaN;
    const toNode = rps(g) / node;
    const toApache = rps(g) / rps('apache');
    const cpuRatio = cpuOf(g, hi, 'proxy') / cpuOf('node', hi, 'proxy');
    const added = p50(g, lo) - p50('direct', lo);
    lines.push(
      '',
      'Goals (issue 10), bff-gateway in this run:',
      '',
      `- c${hi} authenticated GET ≥ 1.2× the bare Node proxy: ${fmt(toNode)}× — ${Number.isFinite(toNode) ? verdict(toNode >= 1.2) : 'not measured'}`,
      `- c${hi} authenticated GET ≥ 4× Apache + mod_auth_openidc: ${fmt(toApache)}× — ${Number.isFinite(toApache) ? verdict(toApache >= 4) : 'not measured'}`,
      `- CPU per proxied request ≤ 1.0× the bare Node proxy's: ${fmt(cpuRatio)}× (${fmt(cpuOf(g, hi, 'proxy'), 0)} vs ${fmt(cpuOf('node', hi, 'proxy'), 0)} µs) — ${Number.isFinite(cpuRatio) ? verdict(cpuRatio <= 1) : 'not measured'}`,
      `- c${lo} added p50 over direct ≤ 0.15 ms: ${fmt(added, 3)} ms — ${verdict(added <= 0.15)}`,
      `- ≤ 1 store call and 0 writes per steady-state request (runs without a refresh, worst run): ${fmt(steadyCalls)} calls, ${fmt(steadyWrites, 4)} writes — ${steady.length ? verdict(steadyCalls <= 1 && steadyWrites === 0) : 'no run without a refresh'}`,
    );
  }

  lines.push(
    '',
    '## Where the CPU goes (µs per request, medians)',
    '',
    "CPU time from /proc/<pid>/stat (utime + stime, all threads, descendants included) over the measured run and the 0.5 s after it (requests wrk abandoned when it stopped finish there), divided by the requests that reached the upstream in that time (the requests the proxy served; wrk's own count leaves out those in flight when it stops). " +
      '"proxy": the processes named in the last column; "upstream": the Node upstream; "Redis": that target\'s own redis-server; ' +
      '"bench": the harness process alone (not its children), which hosts the embedded IdP (token refreshes land there); "wrk": the load generator (and its share of one core).',
    '',
    `| target | proxy c${hi} | proxy c${lo} | upstream c${hi} | Redis c${hi} | bench (IdP) c${hi} | wrk c${hi} (% of a core) | wrk c${lo} (% of a core) | proxy processes counted |`,
    '|---|---:|---:|---:|---:|---:|---:|---:|---|',
  );
  for (const target of targets) {
    const k = target.key;
    const processes = cells.find((cell) => cell.target === k)?.cpu.proxy?.pids ?? 0;
    lines.push(
      `| ${target.key} | ${target.proxyPids.length ? fmt(cpuOf(k, hi, 'proxy'), 0) : '—'} | ${target.proxyPids.length ? fmt(cpuOf(k, lo, 'proxy'), 0) : '—'} | ${fmt(cpuOf(k, hi, 'upstream'), 0)} | ` +
        `${target.redis ? fmt(cpuOf(k, hi, 'redis'), 0) : '—'} | ${fmt(cpuOf(k, hi, 'bench'), 0)} | ${fmt(wrkCpu(k, hi), 0)} (${fmt(wrkCore(k, hi), 0)} %) | ${fmt(wrkCpu(k, lo), 0)} (${fmt(wrkCore(k, lo), 0)} %) | ${target.proxyProcesses}${processes ? ` (${processes} process${processes > 1 ? 'es' : ''})` : ''} |`,
    );
  }

  lines.push(
    '',
    '## Every measured run',
    '',
    'upstream: requests that reached the upstream / requests wrk completed (with a Bearer, for the relying parties). Store calls from Redis `INFO commandstats` deltas (INFO itself excluded); writes are SET/DEL/EXPIRE/EVAL…-type commands. probe: one request after the run, which must get the 300-byte answer.',
    '',
    '| round | c | target | req/s | p50 ms | p99 ms | errors | upstream (Bearer) | proxy CPU µs/req | store calls/req: commands | refreshes | probe |',
    '|---:|---:|---|---:|---:|---:|---:|---|---:|---|---:|---|',
  );
  for (const cell of cells) {
    const target = targets.find((t) => t.key === cell.target) as Target;
    const commands = Object.entries(cell.storeByCommand)
      .map(([name, calls]) => `${name} ${fmt(calls / cell.upstreamRequests, 3)}`)
      .join(', ');
    const changed = cell.cpu.proxy?.changed ? ' (process set changed)' : '';
    lines.push(
      `| ${cell.round} | ${cell.connections} | ${cell.target} | ${fmt(cell.wrk.rps, 0)} | ${fmt(cell.wrk.p50ms, 3)} | ${fmt(cell.wrk.p99ms, 3)} | ${cell.wrk.errors} | ` +
        `${cell.upstreamRequests}/${cell.wrk.requests}${target.rp ? ` (${cell.upstreamBearer})` : ''} | ${target.proxyPids.length ? fmt(perRequest(cell.cpu.proxy!.ticks, cell.upstreamRequests), 0) + changed : '—'} | ` +
        `${target.redis ? `${fmt(cell.storeCalls / cell.upstreamRequests, 3)}${commands ? `: ${commands}` : ''}` : '—'} | ${target.rp ? cell.refreshes : '—'} | ${cell.probe} |`,
    );
  }
  lines.push(
    '',
    'How the relying parties are set up: both are confidential clients of the same embedded IdP (oidc-provider, PKCE, refresh-token rotation, JWT access tokens), each with its own redis-server, logged in as alice before the run. ' +
      'mod_auth_openidc: `OIDCCacheType redis` (cache encryption on by default), server-cache sessions, `OIDCPassClaimsAs environment`, ' +
      '`RequestHeader set Authorization "Bearer %{OIDC_access_token}e"`, `ProxyPass` to the upstream, session cookies stripped (`OIDCStripCookies`), access log to /dev/null, no response-body scrubbing (it has none). ' +
      'bff-gateway: the CLI with a `token: user` route, defaults otherwise (CSRF header check, response header and body scrubbing, JSON access log to /dev/null). ' +
      `Refreshes are IdP token-endpoint refresh grants during measured runs (${run.refreshesAtLogin} before the first run). A refresh due during a run makes that run's store figures include the refresh's writes.`,
    '',
  );
  return lines.join('\n');
}

main().then(
  () => process.exit(0),
  async (err: unknown) => {
    console.error(err instanceof Error ? err.stack : err);
    await cleanup();
    process.exit(1);
  },
);
