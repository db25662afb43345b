/**
 * What the gateway costs on the hot path, measured side by side in one run against two
 * baselines: the upstream directly, and nginx as a plain reverse proxy. Contenders:
 *   - gateway `none` route (plain proxying through the gateway);
 *   - gateway `user` route with a real session in a real Redis (CSRF check, one store read,
 *     session unseal, bearer attached, response headers and body scrubbed);
 *   - 1 MiB JSON body direct vs through a `user` route (streaming token redaction).
 * The IdP (embedded oidc-provider) issues a long-lived token so no refresh happens mid-run.
 * Writes bench/results/gateway-overhead.md.
 *
 * Usage: node --import tsx bench/gateway-overhead.ts [seconds=5] [rounds=3] [connections=32]
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startIdp } from '../demo/idp.ts';
import { login } from '../test/support/login.ts';
import { freePort, startRedis } from '../test/support/redis.ts';
import { startNodeProcess, stopProcess, table, wrk, type Row } from './lib.ts';

const [seconds = 5, rounds = 3, connections = 32] = process.argv.slice(2).map(Number);
const here = new URL('.', import.meta.url).pathname;
const dir = await mkdtemp(join(tmpdir(), 'bff-bench-'));

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i += 1) {
    const ok = await fetch(`http://127.0.0.1:${port}/`).then(
      () => true,
      () => false,
    );
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}

const upstream = await startNodeProcess(`${here}upstream-server.ts`);
const redis = await startRedis();
const gatewayPort = await freePort();
const publicUrl = `http://127.0.0.1:${gatewayPort}`;
const idp = await startIdp({
  clientId: 'bench',
  clientSecret: 'bench-secret-0123456789',
  redirectUris: [`${publicUrl}/auth/callback`],
  accessTokenTtl: 3600,
});

const nginxPort = await freePort();
await writeFile(
  join(dir, 'nginx.conf'),
  `worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/nginx-error.log;
events { worker_connections 1024; }
http { access_log off;
  upstream app { server 127.0.0.1:${upstream.port}; keepalive 64; }
  server { listen 127.0.0.1:${nginxPort};
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
`,
);
const nginx = spawn('nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir], { stdio: 'ignore' });

await writeFile(
  join(dir, 'gateway.yaml'),
  `listen: { host: 127.0.0.1, port: ${gatewayPort} }
publicUrl: ${publicUrl}
oidc: { issuer: ${idp.issuer}, clientId: bench, clientSecret: bench-secret-0123456789, scopes: [openid, api] }
session:
  store: redis
  redis: { url: ${redis.url} }
  secret: ${randomBytes(32).toString('base64url')}
  encryptionKey: ${randomBytes(32).toString('base64')}
routes:
  - { path: /api, upstream: http://127.0.0.1:${upstream.port}, token: user, stripPrefix: true }
  - { path: /plain, upstream: http://127.0.0.1:${upstream.port}, token: none, stripPrefix: true }
`,
);
const gateway = spawn(process.execPath, ['--import', 'tsx', `${here}../test/support/cli-entry.ts`, '--config', join(dir, 'gateway.yaml')], {
  stdio: ['ignore', 'ignore', 'inherit'],
});

const rows: Row[] = [];
try {
  await Promise.all([waitForPort(nginxPort), waitForPort(gatewayPort)]);
  // The gateway discovers the IdP in the background: retry until it is ready.
  let session: Awaited<ReturnType<typeof login>> | undefined;
  for (let attempt = 0; !session; attempt += 1) {
    session = await login(publicUrl).catch((err: unknown) => {
      if (attempt > 100) throw err;
      return new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 100));
    });
  }
  const auth = { cookie: session.cookieHeader, 'x-csrf': '1' };
  const contenders = [
    { name: 'direct', url: `http://127.0.0.1:${upstream.port}/small` },
    { name: 'nginx', url: `http://127.0.0.1:${nginxPort}/small` },
    { name: 'gateway none route', url: `${publicUrl}/plain/small` },
    { name: 'gateway user route', url: `${publicUrl}/api/small`, headers: auth },
    { name: 'direct 1 MiB', url: `http://127.0.0.1:${upstream.port}/big` },
    { name: 'gateway user route 1 MiB (scrubbed)', url: `${publicUrl}/api/big`, headers: auth },
  ];
  for (const contender of contenders) rows.push({ name: contender.name, results: [] });
  for (let round = 0; round < rounds; round += 1) {
    for (const [index, contender] of contenders.entries()) {
      await wrk(contender.url, { seconds: 1, connections, headers: contender.headers });
      (rows[index] as Row).results.push(await wrk(contender.url, { seconds, connections, headers: contender.headers }));
    }
  }
} finally {
  gateway.kill('SIGTERM');
  nginx.kill('SIGTERM');
  await stopProcess(upstream.child);
  await idp.close();
  await redis.stop();
}

const small = rows.filter((row) => !row.name.includes('MiB'));
const big = rows.filter((row) => row.name.includes('MiB'));
const report = [
  '# Gateway overhead',
  '',
  table(
    small,
    'direct',
    `wrk -t1 -c${connections}, ${seconds}s per run, median of ${rounds} interleaved rounds, 200-byte JSON, loopback, gateway logging at info to /dev/null, Redis store, ${new Date().toISOString().slice(0, 10)}.`,
  ),
  '',
  table(big, 'direct 1 MiB', '1 MiB JSON body: streaming token redaction on the user route.'),
  '',
].join('\n');
await writeFile(`${here}results/gateway-overhead.md`, report);
console.log(report);
process.exit(0);
