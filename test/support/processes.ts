/**
 * Several real gateway processes behind one public origin, as in production behind a load
 * balancer: a real IdP and upstream in this process, one redis-server, and N children started
 * through the CLI with their own YAML file. Every child listens on its own port but shares
 * `publicUrl` (the first child's origin), so the IdP redirect and the cookie work against any
 * of them. Each child has an admin listener: readiness is awaited on /readyz, and /metrics is
 * how tests read a child's counters.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { startIdp, type Idp, type IdpOptions } from '../../fixtures/idp/idp.ts';
import { freePort, startRedis, type RedisInstance } from './redis.ts';
import { startUpstream, type Upstream } from './upstream.ts';
import { CLIENT_ID, CLIENT_SECRET, deepMerge, SESSION_KEY, SESSION_SECRET, testOidcConfig } from './world.ts';
import { sleep } from './time.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const ENTRY = join(ROOT, 'test/support/cli-entry.ts');
const READY_TIMEOUT_MS = 30_000;

export interface GatewayProcess {
  url: string;
  adminUrl: string;
  child: ChildProcess;
  /** stdout (JSON log lines) and stderr, as received. */
  output: string[];
  exited: Promise<void>;
  metrics(): Promise<string>;
  /** SIGKILL, as a crash: no shutdown, no lock release. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

export interface ProcessWorld {
  idp: Idp;
  upstream: Upstream;
  redis: RedisInstance;
  publicUrl: string;
  gateways: GatewayProcess[];
  /**
   * Starts instance `index` again from its configuration file (same ports) once its process has
   * exited, as a rolling restart does; resolves when its /readyz answers 200.
   */
  respawn(index: number): Promise<GatewayProcess>;
  close(): Promise<void>;
}

export interface ProcessWorldOptions {
  instances: number;
  idp?: Partial<IdpOptions>;
  /** Deep-merged over every child's configuration. */
  config?: Record<string, unknown>;
}

/** A sample of a Prometheus text exposition, e.g. metricValue(text, 'bff_token_refresh_total', { result: 'success' }). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const labelText = /\{([^}]*)\}/.exec(line)?.[1] ?? '';
    const present = Object.fromEntries([...labelText.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([key, value]) => present[key] === value)) total += Number(line.split(' ').pop());
  }
  return total;
}

function spawnGateway(file: string, url: string, adminUrl: string): GatewayProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', ENTRY, '--config', file], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const collect = (chunk: Buffer) => {
    output.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    if (output.length > 5_000) output.splice(0, output.length - 5_000);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<void>((done) => {
    if (child.exitCode !== null || child.signalCode !== null) done();
    else child.once('exit', () => done());
  });
  const alive = () => child.exitCode === null && child.signalCode === null;
  return {
    url,
    adminUrl,
    child,
    output,
    exited,
    async metrics() {
      const res = await fetch(`${adminUrl}/metrics`);
      return res.text();
    },
    async kill() {
      if (alive()) child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (!alive()) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

async function waitReady(gateway: GatewayProcess): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (gateway.child.exitCode !== null || gateway.child.signalCode !== null) {
      throw new Error(`gateway process exited before it was ready:\n${gateway.output.slice(-30).join('\n')}`);
    }
    const ready = await fetch(`${gateway.adminUrl}/readyz`).then(
      (res) => res.status === 200,
      () => false,
    );
    if (ready) return;
    await sleep(50);
  }
  await gateway.kill();
  throw new Error(`gateway process not ready within ${READY_TIMEOUT_MS} ms:\n${gateway.output.slice(-30).join('\n')}`);
}

// Test runs must never leave a gateway behind, even when a test forgets close().
const running = new Set<GatewayProcess>();
process.once('exit', () => {
  for (const gateway of running) gateway.child.kill('SIGKILL');
});

export async function startProcessWorld(options: ProcessWorldOptions): Promise<ProcessWorld> {
  const ports = await Promise.all(Array.from({ length: options.instances * 2 }, () => freePort()));
  const publicUrl = `http://127.0.0.1:${ports[0]}`;
  const redis = await startRedis();
  const idp = await startIdp({
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    redirectUris: [`${publicUrl}/auth/callback`],
    postLogoutRedirectUris: [`${publicUrl}/`],
    accessTokenTtl: 300,
    ...options.idp,
  });
  const upstream = await startUpstream({ issuer: idp.issuer, jwksUri: `${idp.issuer}/jwks` });
  const dir = mkdtempSync(join(tmpdir(), 'bff-gateways-'));
  const gateways: GatewayProcess[] = [];
  const files: string[] = [];
  const close = async () => {
    await Promise.all(gateways.map((gateway) => gateway.stop()));
    for (const gateway of gateways) running.delete(gateway);
    await upstream.close();
    await idp.close();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < options.instances; i++) {
      const port = ports[2 * i] as number;
      const adminPort = ports[2 * i + 1] as number;
      const config = deepMerge(
        {
          listen: { host: '127.0.0.1', port },
          publicUrl,
          shutdownGrace: '2s',
          admin: { host: '127.0.0.1', port: adminPort },
          oidc: testOidcConfig(idp.issuer),
          session: { store: 'redis', redis: { url: redis.url }, secret: SESSION_SECRET, encryptionKey: SESSION_KEY },
          routes: [
            { path: '/api', upstream: upstream.url, token: 'user' },
            { path: '/', upstream: upstream.url, token: 'none' },
          ],
        },
        options.config,
      );
      const file = join(dir, `gateway-${i + 1}.yaml`);
      writeFileSync(file, stringify(config));
      files.push(file);
      const gateway = spawnGateway(file, `http://127.0.0.1:${port}`, `http://127.0.0.1:${adminPort}`);
      gateways.push(gateway);
      running.add(gateway);
    }
    await Promise.all(gateways.map(waitReady));
  } catch (err) {
    await close();
    throw err;
  }
  const respawn = async (index: number): Promise<GatewayProcess> => {
    const previous = gateways[index];
    const file = files[index];
    if (!previous || !file) throw new Error(`no gateway instance ${index}`);
    if (previous.child.exitCode === null && previous.child.signalCode === null)
      throw new Error(`gateway instance ${index} is still running`);
    running.delete(previous);
    const gateway = spawnGateway(file, previous.url, previous.adminUrl);
    gateways[index] = gateway;
    running.add(gateway);
    await waitReady(gateway);
    return gateway;
  };
  return { idp, upstream, redis, publicUrl, gateways, respawn, close };
}
