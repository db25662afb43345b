/**
 * The gateway behind nginx as deploy/nginx/bff-gateway.conf sets it up, run for real: Debian's
 * nginx with that very file (its example addresses, port and certificate paths swapped for local
 * ones) terminates TLS with a certificate made here by openssl, in front of two gateway CLI
 * processes (`trustProxy: true`, `publicUrl` the nginx https origin) sharing one redis-server,
 * the embedded IdP and an upstream that verifies the bearer JWT.
 *
 * Through nginx over TLS: a full login (a Secure `__Host-` session cookie), an API call that
 * reaches the upstream with the token and the forwarding headers the gateway sets (https, the
 * client address nginx saw, nginx's request id; nothing the browser claimed), a WebSocket. Then a
 * rolling restart: one gateway gets SIGTERM while GETs loop through nginx, and not one of them
 * fails (proxy_next_upstream moves them to the other instance); the restarted instance serves
 * again. The client connects from 127.0.0.2 so that its address differs from nginx's (127.0.0.1).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { X509Certificate } from 'node:crypto';
import { Agent, type Dispatcher, getGlobalDispatcher, setGlobalDispatcher } from 'undici';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import WebSocket from 'ws';
import { login, type LoginResult } from '../support/login.ts';
import { metricValue, startProcessWorld, type ProcessWorld } from '../support/processes.ts';
import { freePort } from '../support/redis.ts';
import { sleep } from '../support/time.ts';
import { selfSignedCertificate } from '../support/certificate.ts';
import { nginxMainConf, nginxTempDirs } from '../support/nginx.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const DEPLOY_FILE = join(ROOT, 'deploy/nginx/bff-gateway.conf');
const NGINX = '/usr/sbin/nginx';
/** The browser's address: any loopback address but nginx's own outgoing one (127.0.0.1). */
const CLIENT_ADDRESS = '127.0.0.2';

let world: ProcessWorld;
let nginx: ChildProcess | undefined;
let dir: string;
let front: string;
let cert: string;
let agent: Agent;
let previousDispatcher: Dispatcher | undefined;
let session: LoginResult;

function requireTools(): void {
  if (spawnSync(NGINX, ['-v']).status !== 0) {
    throw new Error(`nginx is not installed (${NGINX}): apt-get install -y nginx-light`);
  }
  const openssl = spawnSync('openssl', ['version']);
  if (openssl.error || openssl.status !== 0) throw new Error('openssl is not installed: apt-get install -y openssl');
}

/** The deploy file with each example value replaced; every one must be in it exactly once. */
function renderDeployFile(replacements: Array<[string, string]>): string {
  let text = readFileSync(DEPLOY_FILE, 'utf8');
  for (const [from, to] of replacements) {
    const count = text.split(from).length - 1;
    if (count !== 1)
      throw new Error(`deploy/nginx/bff-gateway.conf has "${from}" ${count} times, not once: update this test's replacements`);
    text = text.replace(from, to);
  }
  return text;
}

/** nginx's main file: a prefix in the temporary directory, no root paths, the deploy file included in `http`. */
function mainConf(): string {
  return nginxMainConf(dir, { workerConnections: 256, accessLog: true, http: `  include ${dir}/bff-gateway.conf;` });
}

function nginxLog(): string {
  const read = (name: string) => {
    try {
      return readFileSync(join(dir, name), 'utf8');
    } catch {
      return '';
    }
  };
  return `${read('stderr.log')}${read('error.log')}`;
}

function gatewayPort(url: string): number {
  return Number(new URL(url).port);
}

beforeAll(async () => {
  requireTools();
  dir = mkdtempSync(join(tmpdir(), 'bff-nginx-tls-'));
  nginxTempDirs(dir);
  cert = selfSignedCertificate(dir, { cn: 'localhost', altNames: 'DNS:localhost,IP:127.0.0.1' });

  const port = await freePort();
  front = `https://127.0.0.1:${port}`;
  world = await startProcessWorld({
    instances: 2,
    idp: { redirectUris: [`${front}/auth/callback`], postLogoutRedirectUris: [`${front}/`] },
    config: { publicUrl: front, trustProxy: true, limits: { keepAliveTimeout: '65s' } },
  });
  const [first, second] = world.gateways.map((gateway) => gatewayPort(gateway.url));
  writeFileSync(
    join(dir, 'bff-gateway.conf'),
    renderDeployFile([
      ['server 10.0.0.11:8080 ', `server 127.0.0.1:${first} `],
      ['server 10.0.0.12:8080 ', `server 127.0.0.1:${second} `],
      ['listen 443 ssl;', `listen 127.0.0.1:${port} ssl;`],
      ['/etc/nginx/tls/app.example.com/fullchain.pem', join(dir, 'cert.pem')],
      ['/etc/nginx/tls/app.example.com/privkey.pem', join(dir, 'key.pem')],
    ]),
  );
  writeFileSync(join(dir, 'nginx.conf'), mainConf());

  // Every fetch of this file, the login helper's included: the test certificate trusted, from the client's address.
  previousDispatcher = getGlobalDispatcher();
  agent = new Agent({ localAddress: CLIENT_ADDRESS, connect: { ca: cert } });
  setGlobalDispatcher(agent);

  const started = spawn(NGINX, ['-e', join(dir, 'stderr.log'), '-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: 'ignore' });
  nginx = started;
  for (let attempt = 0; attempt < 100; attempt++) {
    if (started.exitCode !== null) throw new Error(`nginx exited with ${started.exitCode}:\n${nginxLog()}`);
    const up = await fetch(`${front}/auth/user`).then(
      async (res) => {
        await res.body?.cancel();
        return true;
      },
      () => false,
    );
    if (up) return;
    await sleep(50);
  }
  throw new Error(`nginx did not answer on ${front}:\n${nginxLog()}`);
}, 60_000);

afterAll(async () => {
  if (nginx && nginx.exitCode === null && nginx.signalCode === null) {
    const exited = new Promise((done) => nginx?.once('exit', done));
    nginx.kill('SIGTERM');
    await exited;
  }
  if (previousDispatcher) setGlobalDispatcher(previousDispatcher);
  await agent?.close();
  await world?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** One authenticated GET through nginx; resolves with its status, or the error's text. */
async function apiGet(path: string): Promise<number | string> {
  try {
    const res = await fetch(`${front}${path}`, { headers: { cookie: session.cookieHeader, 'x-csrf': '1' } });
    await res.arrayBuffer();
    return res.status;
  } catch (err) {
    return `${(err as Error).message}: ${String((err as Error).cause)}`;
  }
}

describe('the gateway behind nginx (deploy/nginx/bff-gateway.conf)', () => {
  test('nginx serves the test certificate over TLS, with HSTS', async () => {
    const served = await new Promise<{ fingerprint: string; authorized: boolean; protocol: string | null }>((done, fail) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: gatewayPort(front), ca: cert, servername: 'localhost' }, () => {
        done({ fingerprint: socket.getPeerCertificate().fingerprint256, authorized: socket.authorized, protocol: socket.getProtocol() });
        socket.end();
      });
      socket.once('error', fail);
    });
    expect(served).toMatchObject({ fingerprint: new X509Certificate(cert).fingerprint256, authorized: true });
    expect(served.protocol).toMatch(/^TLSv1\.[23]$/);
    const res = await fetch(`${front}/auth/user`);
    await res.body?.cancel();
    expect(res.headers.get('strict-transport-security')).toBe('max-age=63072000');
  });

  test('a login through nginx ends with a Secure __Host- session cookie for the https origin', async () => {
    const start = await fetch(`${front}/auth/login`, { redirect: 'manual' });
    await start.body?.cancel();
    const authorize = new URL(start.headers.get('location') ?? '');
    expect(authorize.origin).toBe(world.idp.issuer);
    expect(authorize.searchParams.get('redirect_uri')).toBe(`${front}/auth/callback`);

    session = await login(front, { user: 'alice' });
    expect(session.cookie).toMatch(/^__Host-Http-bff-session=/);
    const attributes = session.setCookie.split(';').map((part) => part.trim().toLowerCase());
    expect(attributes).toEqual(expect.arrayContaining(['secure', 'httponly', 'path=/']));
    expect(attributes.some((part) => part.startsWith('domain='))).toBe(false);
    expect(new URL(session.location, front).origin).toBe(front);
  });

  test('an API call reaches the upstream with the bearer token and the forwarding headers the gateway sets', async () => {
    const res = await fetch(`${front}/api/protected?via=nginx`, {
      headers: {
        cookie: session.cookieHeader,
        'x-csrf': '1',
        // What a browser might claim; none of it may reach the upstream.
        'x-forwarded-for': '203.0.113.7',
        'x-forwarded-proto': 'http',
        'x-forwarded-host': 'evil.example',
        'x-real-ip': '203.0.113.8',
        'x-request-id': 'chosen-by-the-browser',
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      },
    });
    expect(res.status).toBe(200);
    const echo = (await res.json()) as { url: string; headers: Record<string, string>; auth?: { ok: boolean; claims?: { sub?: string } } };
    expect(echo.url).toBe('/api/protected?via=nginx');
    expect(echo.auth).toMatchObject({ ok: true, claims: { sub: 'alice' } });
    // The client's address as nginx saw it, then nginx's as the gateway saw it.
    expect(echo.headers['x-forwarded-for']).toBe(`${CLIENT_ADDRESS}, 127.0.0.1`);
    expect(echo.headers['x-forwarded-proto']).toBe('https');
    expect(echo.headers['x-forwarded-host']).toBe(new URL(front).host);
    expect(echo.headers['x-real-ip']).toBeUndefined();
    expect(echo.headers.traceparent).toBeUndefined();
    // nginx's $request_id, kept by the gateway (trustProxy), at the upstream and in the answer.
    const requestId = res.headers.get('x-request-id');
    expect(requestId).toMatch(/^[0-9a-f]{32}$/);
    expect(echo.headers['x-request-id']).toBe(requestId);
    // The gateway's access line: the client is the address nginx saw.
    const accessLine = () =>
      world.gateways
        .flatMap((gateway) => gateway.output)
        .filter((line) => line.includes(requestId ?? '-'))
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .find((line) => line.msg === 'request');
    await vi.waitFor(() => expect(accessLine()).toMatchObject({ client: CLIENT_ADDRESS, status: 200 }), { timeout: 5_000 });
  });

  test('a WebSocket through nginx: upgraded, authenticated, echoed', async () => {
    const ws = new WebSocket(`wss://127.0.0.1:${gatewayPort(front)}/api/ws`, {
      headers: { cookie: session.cookieHeader, origin: front },
      ca: cert,
      localAddress: CLIENT_ADDRESS,
    });
    const echoed = await new Promise<string>((done, fail) => {
      ws.once('open', () => ws.send('through nginx'));
      ws.once('message', (data) => done(String(data)));
      ws.once('unexpected-response', (_req, res) => fail(new Error(`upgrade refused: HTTP ${res.statusCode}`)));
      ws.once('error', fail);
    });
    ws.close();
    expect(echoed).toBe('through nginx');
    const upgrade = world.upstream.requests.filter((request) => request.url === '/api/ws').at(-1);
    expect(upgrade?.headers.authorization).toMatch(/^Bearer /);
  });

  test('a rolling restart: SIGTERM to one gateway while GETs loop through nginx fails none of them', async () => {
    const results: Array<number | string> = [];
    let running = true;
    const loop = async (path: string) => {
      while (running) results.push(await apiGet(path));
    };
    // Quick answers and ones in flight for a while when the signal arrives.
    const loops = [loop('/api/protected?n=1'), loop('/api/protected?n=2'), loop('/api/protected?n=3'), loop('/api/slow?ms=150')];
    try {
      await sleep(400);
      const victim = world.gateways[0];
      if (!victim) throw new Error('no first gateway');
      const beforeSignal = results.length;
      victim.child.kill('SIGTERM');
      await victim.exited;
      expect(victim.child.exitCode).toBe(0);
      const duringRestart = results.length;
      const back = await world.respawn(0);
      // nginx tries the instance again once fail_timeout (5s) has passed since it last failed.
      const deadline = Date.now() + 12_000;
      while (metricValue(await back.metrics(), 'bff_requests_total', { route: '/api' }) === 0) {
        if (Date.now() > deadline) throw new Error(`the restarted gateway got no request through nginx:\n${nginxLog()}`);
        await sleep(100);
      }
      expect(beforeSignal).toBeGreaterThan(0);
      expect(results.length).toBeGreaterThan(duringRestart);
    } finally {
      running = false;
      await Promise.all(loops);
    }
    const failed = results.filter((result) => result !== 200);
    expect(failed, `of ${results.length} GETs`).toEqual([]);
    // nginx did send requests to the stopped instance (a refused connection, a connection closed
    // under the request or a 503), and moved them on: none of them failed above.
    const victimUpstream = `upstream: "http://127.0.0.1:${gatewayPort(world.gateways[0]?.url ?? '')}/`;
    expect(
      nginxLog()
        .split('\n')
        .filter((line) => line.includes(victimUpstream)).length,
      nginxLog(),
    ).toBeGreaterThan(0);
  }, 45_000);
});
