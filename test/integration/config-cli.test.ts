import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import WebSocket from 'ws';
import { stringify } from 'yaml';
import { freePort } from '../support/redis.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const ENTRY = join(ROOT, 'test/support/cli-entry.ts');

interface Run {
  child: ChildProcess;
  stdout: string[];
  stderr: string[];
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children = new Set<ChildProcess>();

/** The CLI from sources, as every other test runs it. */
const FROM_SOURCES = [process.execPath, '--import', 'tsx', ENTRY];
/** The CLI as users run it after `npm ci` (package.json `bin`, built by `prepare`). */
const AS_INSTALLED = ['npx', 'bff-gateway'];

function cli(args: string[], env: NodeJS.ProcessEnv = {}, launcher = FROM_SOURCES): Run {
  const [command, ...prefix] = launcher as [string, ...string[]];
  const child = spawn(command, [...prefix, ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  const run: Run = { child, stdout: [], stderr: [], exit: undefined as never };
  let out = '';
  let err = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    const lines = out.split('\n');
    out = lines.pop() ?? '';
    run.stdout.push(...lines);
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    err += chunk.toString();
  });
  run.exit = new Promise((done) => {
    child.once('exit', (code, signal) => {
      children.delete(child);
      if (out) run.stdout.push(out);
      run.stderr.push(...err.split('\n').filter(Boolean));
      done({ code, signal });
    });
  });
  return run;
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      done(true);
    });
    socket.once('error', () => done(false));
  });
}

function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((done, fail) => {
    // A fresh connection per request: keep-alive would hide "stops accepting connections".
    const req = request(url, { agent: false }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => done({ status: res.statusCode ?? 0, body }));
    });
    req.once('error', fail);
    req.end();
  });
}

let dir: string;
let upstream: Upstream;
let port: number;
let goodFile: string;
let shortGraceFile: string;
let badFile: string;

const BAD_PROBLEMS = [
  'publicUrl: must be https (http is allowed only for localhost, 127.0.0.0/8 and [::1])',
  'session.secret: must be at least 32 characters',
  'routes[1].upstream: must be a URL',
  'routes[1].colour: unknown key',
];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bff-cli-'));
  upstream = await startUpstream();
  port = await freePort();
  const unusedIdpPort = await freePort();
  const good = {
    listen: { host: '127.0.0.1', port },
    publicUrl: `http://127.0.0.1:${port}`,
    shutdownGrace: '5s',
    oidc: { issuer: `http://127.0.0.1:${unusedIdpPort}`, clientId: 'spa', clientSecret: '${CLIENT_SECRET:-dev-secret}', timeout: '1s' },
    session: { store: 'memory', secret: '${SESSION_SECRET}', encryptionKey: randomBytes(32).toString('base64') },
    routes: [{ path: '/', upstream: upstream.url, token: 'none' }],
  };
  goodFile = join(dir, 'good.yaml');
  writeFileSync(goodFile, stringify(good));
  shortGraceFile = join(dir, 'short-grace.yaml');
  writeFileSync(shortGraceFile, stringify({ ...good, shutdownGrace: '300ms' }));
  badFile = join(dir, 'bad.yaml');
  writeFileSync(
    badFile,
    stringify({
      ...good,
      publicUrl: 'http://app.example.com',
      session: { ...good.session, secret: 'short' },
      routes: [good.routes[0], { path: '/api', upstream: 'not a url', colour: 'blue' }],
    }),
  );
});

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await upstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

const SECRET_ENV = { SESSION_SECRET: 'cli-test-secret-0123456789-abcdefghijkl' };

// Each run is a separate short-lived process: run them side by side.
describe.concurrent('bff-gateway check', () => {
  test('a valid file exits 0', async ({ expect }) => {
    const run = cli(['check', '--config', goodFile], SECRET_ENV);
    expect(await run.exit).toEqual({ code: 0, signal: null });
    expect(run.stdout.join('\n')).toContain('configuration is valid');
  });

  test('`npx bff-gateway check` works as installed: the package bin runs the build `prepare` made', async ({ expect }) => {
    const good = cli(['check', '--config', goodFile], SECRET_ENV, AS_INSTALLED);
    expect(await good.exit).toEqual({ code: 0, signal: null });
    expect(good.stdout.join('\n')).toContain('configuration is valid');
    const bad = cli(['check', '--config', badFile], SECRET_ENV, AS_INSTALLED);
    expect(await bad.exit).toEqual({ code: 1, signal: null });
    expect(bad.stderr.sort()).toEqual([...BAD_PROBLEMS].sort());
    // Two npx launches (package resolution, then the CLI) can take a while on a busy machine.
  }, 90_000);

  test('an invalid file prints every problem with its YAML path and exits 1', async ({ expect }) => {
    const run = cli(['check', '--config', badFile], SECRET_ENV);
    expect(await run.exit).toEqual({ code: 1, signal: null });
    expect(run.stderr.sort()).toEqual([...BAD_PROBLEMS].sort());
  });

  test('a missing variable is named', async ({ expect }) => {
    const run = cli(['check', '--config', goodFile]);
    expect((await run.exit).code).toBe(1);
    expect(run.stderr).toContain('environment variable SESSION_SECRET is not set (referenced as ${SESSION_SECRET})');
  });

  test('BFF_CONFIG works instead of --config; without either it is an error', async ({ expect }) => {
    const viaEnv = cli(['check'], { ...SECRET_ENV, BFF_CONFIG: goodFile });
    const badViaEnv = cli(['check'], { ...SECRET_ENV, BFF_CONFIG: badFile });
    const none = cli(['check'], SECRET_ENV);
    expect((await viaEnv.exit).code).toBe(0);
    expect((await badViaEnv.exit).code).toBe(1);
    expect(badViaEnv.stderr.sort()).toEqual([...BAD_PROBLEMS].sort());
    expect((await none.exit).code).toBe(1);
    expect(none.stderr.join('\n')).toMatch(/--config/);
  });

  test('an unreadable file exits 1', async ({ expect }) => {
    const run = cli(['check', '--config', join(dir, 'missing.yaml')], SECRET_ENV);
    expect((await run.exit).code).toBe(1);
    expect(run.stderr.join('\n')).toContain('missing.yaml: cannot be read');
  });
});

describe('starting the gateway', () => {
  test('an invalid configuration exits 1 with the same messages and never listens', async () => {
    const run = cli(['--config', badFile], SECRET_ENV);
    expect(await run.exit).toEqual({ code: 1, signal: null });
    expect(run.stderr.sort()).toEqual([...BAD_PROBLEMS].sort());
    expect(await portOpen(port)).toBe(false);
  });

  test('SIGINT (Ctrl-C) stops it as cleanly: exit 0 after "stopped"', async () => {
    const run = cli(['--config', goodFile], SECRET_ENV);
    await vi.waitFor(() => expect(run.stdout.some((line) => line.includes('bff-gateway started'))).toBe(true), {
      timeout: 20_000,
      interval: 100,
    });
    run.child.kill('SIGINT');
    expect(await run.exit).toEqual({ code: 0, signal: null });
    expect(run.stdout.some((line) => line.includes('"signal":"SIGINT"'))).toBe(true);
    expect(run.stdout.some((line) => line.includes('"msg":"stopped"'))).toBe(true);
  });

  test('a valid configuration (from BFF_CONFIG) listens, logs JSON lines, and drains in-flight requests on SIGTERM', async () => {
    const run = cli([], { ...SECRET_ENV, BFF_CONFIG: goodFile });
    await vi.waitFor(() => expect(run.stdout.some((line) => line.includes('bff-gateway started'))).toBe(true), {
      timeout: 20_000,
      interval: 100,
    });
    expect(await portOpen(port)).toBe(true);

    const before = upstream.requests.length;
    const slow = get(`http://127.0.0.1:${port}/slow?ms=800`);
    await vi.waitFor(() => expect(upstream.requests.slice(before).some((r) => r.url.startsWith('/slow'))).toBe(true), {
      timeout: 5_000,
      interval: 20,
    });
    run.child.kill('SIGTERM');

    // No new connections once shutdown has begun, while the slow one is still being answered.
    await vi.waitFor(async () => expect(await portOpen(port)).toBe(false), { timeout: 5_000, interval: 20 });
    const answer = await slow;
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toEqual({ sleptMs: 800 });
    expect(await run.exit).toEqual({ code: 0, signal: null });

    const lines = run.stdout.filter((line) => line.trim() !== '');
    expect(lines.length).toBeGreaterThan(2);
    for (const line of lines) expect(JSON.parse(line)).toMatchObject({ level: expect.anything(), msg: expect.any(String) });
    expect(lines.some((line) => /shutting down/.test(line))).toBe(true);
    expect(lines.some((line) => JSON.parse(line).msg === 'stopped')).toBe(true);
  });

  test('past shutdownGrace, a request still running and an open WebSocket are cut and the process exits 0', async () => {
    const run = cli(['--config', shortGraceFile], SECRET_ENV);
    await vi.waitFor(() => expect(run.stdout.some((line) => line.includes('bff-gateway started'))).toBe(true), {
      timeout: 20_000,
      interval: 100,
    });
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    await new Promise((done, fail) => {
      ws.once('open', done);
      ws.once('error', fail);
    });
    const closed = new Promise((done) => ws.once('close', done));
    const slow = get(`http://127.0.0.1:${port}/slow?ms=20000`).then(
      () => 'answered',
      () => 'cut',
    );
    await vi.waitFor(() => expect(upstream.requests.some((r) => r.url === '/slow?ms=20000')).toBe(true), { timeout: 5_000, interval: 20 });
    run.child.kill('SIGTERM');
    expect(await run.exit).toEqual({ code: 0, signal: null });
    expect(await slow).toBe('cut');
    await closed;
  });
});
