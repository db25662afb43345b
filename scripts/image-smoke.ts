/**
 * Smoke test of a built container image (run by scripts/image-test.sh, `npm run image:test`):
 * the image's own entrypoint, user, working directory and environment, as recorded in its
 * configuration, started with buildah (chroot isolation, the host's network), the configuration
 * mounted at /etc/bff-gateway and the secrets passed as environment variables. Redis, the
 * embedded IdP (fixtures/idp/idp.ts) and an upstream run on the host's loopback.
 *
 * Checks: `check` accepts the mounted file; /healthz and /readyz answer 200; a full login
 * through the IdP; an API call carries the user's token upstream and no token comes back;
 * /auth/user; /metrics counts the login; the image's HEALTHCHECK command passes; the process
 * runs as the image's user; SIGTERM ends it with exit code 0.
 *
 *   IMAGE=localhost/bff-gateway:test node --import tsx scripts/image-smoke.ts
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { stringify } from 'yaml';
import { startIdp } from '../fixtures/idp/idp.ts';
import { login } from '../test/support/login.ts';
import { freePort, startRedis } from '../test/support/redis.ts';
import { startUpstream } from '../test/support/upstream.ts';

const IMAGE = process.env.IMAGE ?? 'localhost/bff-gateway:test';
// buildah reads its storage driver from the environment (vfs works without overlay support).
process.env.STORAGE_DRIVER ??= 'vfs';
const BUILDAH = ['buildah'];
const CLIENT_ID = 'image-smoke';
const CLIENT_SECRET = randomBytes(24).toString('base64url');

interface ImageConfig {
  User?: string;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
  Healthcheck?: { Test?: string[] };
}

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));
let failures = 0;
function check(ok: boolean, what: string, detail = ''): void {
  if (!ok) failures++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}${detail ? ` — ${detail}` : ''}`);
}

function buildah(args: string[]): string {
  const result = spawnSync(BUILDAH[0] as string, [...BUILDAH.slice(1), ...args], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`buildah ${args.join(' ')} failed:\n${result.stderr}`);
  return result.stdout.trim();
}

function imageConfig(): ImageConfig {
  const inspected = JSON.parse(buildah(['inspect', '--type', 'image', IMAGE])) as {
    Docker?: { config?: ImageConfig };
    OCIv1?: { config?: ImageConfig };
  };
  return { ...inspected.OCIv1?.config, ...inspected.Docker?.config };
}

/** `buildah run` of the working container with the image's user, a volume and extra env. */
function runArgs(container: string, config: ImageConfig, volume: string, env: Record<string, string>, command: string[]): string[] {
  return [
    ...BUILDAH.slice(1),
    'run',
    '--isolation',
    'chroot',
    '--user',
    config.User ?? 'root',
    '--volume',
    `${volume}:/etc/bff-gateway:ro`,
    ...Object.entries(env).flatMap(([key, value]) => ['--env', `${key}=${value}`]),
    container,
    '--',
    ...command,
  ];
}

/** The gateway's process: node in /app (inside the chroot) with this run's admin URL in its environment. */
function findGatewayPid(healthUrl: string): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (
        basename(cmdline[0] ?? '') === 'node' &&
        cmdline[1] === 'bin/bff-gateway.js' &&
        readlinkSync(`/proc/${entry}/cwd`).endsWith('/app') &&
        readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0').includes(`BFF_HEALTH_URL=${healthUrl}`)
      )
        return Number(entry);
    } catch {
      // the process ended meanwhile
    }
  }
  return undefined;
}

async function main(): Promise<void> {
  const config = imageConfig();
  const entrypoint = [...(config.Entrypoint ?? []), ...(config.Cmd ?? [])];
  console.log(`image ${IMAGE}: user ${config.User}, workdir ${config.WorkingDir}, entrypoint ${JSON.stringify(entrypoint)}`);
  check(config.User === 'node', 'the image runs as the unprivileged node user');
  check(entrypoint.join(' ') === 'node bin/bff-gateway.js', 'entrypoint is node bin/bff-gateway.js');
  const healthcheck = config.Healthcheck?.Test ?? [];
  check(healthcheck[0] === 'CMD', 'the image has a HEALTHCHECK', JSON.stringify(healthcheck));

  const [port, adminPort] = [await freePort(), await freePort()];
  const publicUrl = `http://127.0.0.1:${port}`;
  const redis = await startRedis();
  const idp = await startIdp({
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    redirectUris: [`${publicUrl}/auth/callback`],
    postLogoutRedirectUris: [`${publicUrl}/`],
  });
  const upstream = await startUpstream({ issuer: idp.issuer, jwksUri: `${idp.issuer}/jwks` });
  const dir = mkdtempSync(join(tmpdir(), 'bff-image-smoke-'));
  // Read by the image's unprivileged user; the file holds no secret (they come from the environment).
  chmodSync(dir, 0o755);
  writeFileSync(
    join(dir, 'gateway.yaml'),
    stringify({
      listen: { host: '127.0.0.1', port },
      publicUrl,
      shutdownGrace: '2s',
      admin: { host: '127.0.0.1', port: adminPort },
      oidc: {
        issuer: idp.issuer,
        clientId: CLIENT_ID,
        clientSecret: '${OIDC_CLIENT_SECRET}',
        scopes: ['openid', 'profile', 'email', 'offline_access', 'api'],
      },
      session: { store: 'redis', redis: { url: '${REDIS_URL}' }, secret: '${SESSION_SECRET}', encryptionKey: '${SESSION_KEY}' },
      routes: [
        { path: '/api', upstream: upstream.url, token: 'user' },
        { path: '/', upstream: upstream.url, token: 'none' },
      ],
    }),
  );
  const env = {
    OIDC_CLIENT_SECRET: CLIENT_SECRET,
    REDIS_URL: redis.url,
    SESSION_SECRET: randomBytes(48).toString('base64'),
    SESSION_KEY: randomBytes(32).toString('base64'),
    BFF_HEALTH_URL: `http://127.0.0.1:${adminPort}/healthz`,
  };
  const container = buildah(['from', '--pull-never', IMAGE]);
  let gateway: ChildProcess | undefined;
  const output: string[] = [];
  try {
    // `check`: the entrypoint with the CLI's check subcommand on the mounted file.
    const checked = spawnSync(BUILDAH[0] as string, runArgs(container, config, dir, env, [...entrypoint, 'check']), { encoding: 'utf8' });
    check(
      checked.status === 0,
      '`check` accepts the mounted configuration',
      `${checked.stdout}${checked.stderr}`.trim().split('\n').at(-1),
    );

    gateway = spawn(BUILDAH[0] as string, runArgs(container, config, dir, env, entrypoint), { stdio: ['ignore', 'pipe', 'pipe'] });
    const collect = (chunk: Buffer) => output.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    gateway.stdout?.on('data', collect);
    gateway.stderr?.on('data', collect);
    const exited = new Promise<number | null>((done) => gateway?.once('exit', (code) => done(code)));

    const admin = `http://127.0.0.1:${adminPort}`;
    const started = Date.now();
    let ready = false;
    while (!ready && Date.now() - started < 60_000 && gateway.exitCode === null) {
      ready = await fetch(`${admin}/readyz`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (!ready) await sleep(200);
    }
    check(ready, '/readyz answers 200 (Redis and the IdP reached from the container)', `after ${Date.now() - started} ms`);
    if (!ready) throw new Error(`gateway not ready:\n${output.slice(-30).join('\n')}`);
    const health = await fetch(`${admin}/healthz`);
    check(health.status === 200, '/healthz answers 200', await health.text());

    const pid = findGatewayPid(env.BFF_HEALTH_URL);
    const uid = pid ? /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] : undefined;
    check(uid === '1000', 'the gateway process runs as uid 1000 (node)', `pid ${pid}, uid ${uid}`);

    const session = await login(publicUrl);
    check(
      /HttpOnly/i.test(session.setCookie),
      'a full login through the IdP sets an HttpOnly session cookie',
      `${session.cookie.split('=')[0]}, then to ${session.location}`,
    );
    const api = await fetch(`${publicUrl}/api/echo`, { headers: { cookie: session.cookieHeader, 'x-csrf': '1' } });
    const body = await api.text();
    const token = upstream.requests.at(-1)?.auth;
    check(
      api.status === 200 && token?.ok === true,
      'an API call reaches the upstream with a valid access token',
      `HTTP ${api.status}, upstream saw sub ${String(token?.claims?.sub)}`,
    );
    const bearer = /^Bearer (.+)$/.exec(upstream.requests.at(-1)?.headers.authorization ?? '')?.[1] ?? '';
    check(bearer.length > 0 && !body.includes(bearer), 'the access token does not come back to the browser');
    const user = await fetch(`${publicUrl}/auth/user`, { headers: { cookie: session.cookieHeader, 'x-csrf': '1' } });
    const userBody = (await user.json()) as { sub?: string };
    check(
      user.status === 200 && userBody.sub === 'alice',
      '/auth/user answers the logged-in user',
      `HTTP ${user.status}, sub ${userBody.sub}`,
    );
    const metrics = await fetch(`${admin}/metrics`).then((r) => r.text());
    check(/bff_logins_total\{result="success"\} 1\b/.test(metrics), '/metrics counts the login');
    const logout = await fetch(`${publicUrl}/auth/logout`, { method: 'POST', headers: { cookie: session.cookieHeader, 'x-csrf': '1' } });
    await logout.body?.cancel();
    const after = await fetch(`${publicUrl}/api/echo`, { headers: { cookie: session.cookieHeader, 'x-csrf': '1' } });
    await after.body?.cancel();
    check(
      logout.status === 200 && after.status === 401,
      'after logout the session is gone',
      `logout HTTP ${logout.status}, then HTTP ${after.status}`,
    );

    // The HEALTHCHECK command, run inside the image as Docker would.
    if (healthcheck[0] === 'CMD') {
      const probe = spawnSync(BUILDAH[0] as string, runArgs(container, config, dir, env, healthcheck.slice(1)), { encoding: 'utf8' });
      check(probe.status === 0, 'the image HEALTHCHECK command passes against the running gateway', `exit ${probe.status}`);
    }

    // Graceful shutdown: SIGTERM to the gateway process itself (what a container runtime sends to PID 1).
    if (pid) process.kill(pid, 'SIGTERM');
    const code = await Promise.race([exited, sleep(15_000).then(() => 'timeout' as const)]);
    check(code === 0, 'SIGTERM drains and exits 0', `exit ${code}`);
  } finally {
    if (gateway && gateway.exitCode === null) gateway.kill('SIGKILL');
    const leftover = findGatewayPid(env.BFF_HEALTH_URL);
    if (leftover) process.kill(leftover, 'SIGKILL');
    spawnSync(BUILDAH[0] as string, [...BUILDAH.slice(1), 'rm', container]);
    await upstream.close();
    await idp.close();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  if (failures > 0) {
    console.log(`gateway output (last 30 lines):\n${output.slice(-30).join('\n')}`);
    console.log(`${failures} check(s) failed`);
    process.exit(1);
  }
  console.log('image smoke test passed');
}

main().catch((err) => {
  console.error(err instanceof Error ? err.stack : err);
  process.exit(1);
});
