/**
 * Shutdown tears down the upstream side too (docs/operations.md, *Graceful shutdown*, step 4:
 * "then the remaining connections and upstream requests are closed"; src/proxy/forward.ts:
 * every upstream request is torn down "when the forwarder closes"). Observed at upstreams the
 * test runs, which count their open connections and see each request end:
 *
 * - in process: `gateway.close()` drains (in-flight requests may finish: it waits for them);
 *   the CLI bounds that wait with `shutdownGrace` and then closes the remaining client
 *   connections, which the test does itself here, at the same point. A request the upstream
 *   never answers and a server-sent-events stream that never ends are then aborted at their
 *   upstream, and the kept-alive idle connections of both pools (token-carrying and plain) are
 *   closed: nothing of the gateway is left at any upstream once `close()` resolves. The
 *   upstreams ask for keep-alive of 120 s, so an idle pooled connection the gateway did not
 *   close itself would still be open long after the test's bounded wait.
 * - the real CLI on SIGTERM with `shutdownGrace: 1s`: the same two requests in flight are cut at
 *   the end of the grace period, their upstream requests end, no upstream connection is left,
 *   and the shutdown completes cleanly ("stopped", exit 0) instead of the last-resort exit.
 *
 * Only the drain that lets in-flight requests finish is tested elsewhere (shutdown-drain.test.ts,
 * config-cli.test.ts).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterAll, afterEach, describe, expect, test } from 'vitest';
import { login } from '../support/login.ts';
import { startProcessWorld, type GatewayProcess, type ProcessWorld } from '../support/processes.ts';
import { startWorld, type World } from '../support/world.ts';
import { requestBytes, until, Wire } from '../support/wire.ts';

interface SeenRequest {
  url: string;
  /** Answered or its connection closed. */
  closed: boolean;
  /** Closed before its answer was complete. */
  aborted: boolean;
}

/**
 * `/ok`: 200 "ok" at once. `/hang`: never answered. `/events`: an event stream whose head and
 * first event go out at once and which never ends. Keep-alive of 120 s is announced
 * (`Keep-Alive: timeout=120`), so a client keeps an idle connection that long unless it closes
 * it itself. `?id=` names a request.
 */
class LingeringUpstream {
  readonly requests = new Map<string, SeenRequest>();
  private readonly sockets = new Set<Socket>();
  private readonly server: Server;

  constructor() {
    this.server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://upstream.invalid');
      const seen: SeenRequest = { url: req.url ?? '', closed: false, aborted: false };
      this.requests.set(url.searchParams.get('id') ?? req.url ?? '', seen);
      res.once('close', () => {
        seen.closed = true;
        seen.aborted = !res.writableFinished;
      });
      req.resume();
      if (url.pathname.endsWith('/hang')) return;
      if (url.pathname.endsWith('/events')) {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        res.write('data: first\n\n');
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 });
      res.end('ok');
    });
    this.server.keepAliveTimeout = 120_000;
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((done) => this.server.listen(0, '127.0.0.1', done));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** TCP connections currently open to this server. */
  connections(): number {
    return this.sockets.size;
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((done) => this.server.close(() => done()));
    this.server.closeAllConnections();
    await closed;
  }
}

function seen(upstream: LingeringUpstream, id: string): SeenRequest {
  const request = upstream.requests.get(id);
  if (!request) throw new Error(`the upstream never saw ${id}`);
  return request;
}

/** A GET whose upstream never answers (plain route) and an endless event stream (token route), both in flight. */
async function startInFlight(port: number, busy: LingeringUpstream, cookieHeader: string): Promise<{ hang: Wire; events: Wire }> {
  const hang = await Wire.open(port);
  hang.write(requestBytes('GET', '/hang?id=hang', {}));
  const events = await Wire.open(port);
  events.write(requestBytes('GET', '/api/events?id=events', { cookie: cookieHeader, 'x-csrf': '1' }));
  await until(
    () => busy.requests.has('hang') && events.unread.includes('data: first'),
    'the hanging request reached its upstream and the event stream began',
  );
  expect(seen(busy, 'hang').closed).toBe(false);
  expect(seen(busy, 'events').closed).toBe(false);
  return { hang, events };
}

describe('gateway.close() in process', () => {
  let world: World | undefined;
  const upstreams: LingeringUpstream[] = [];
  afterEach(async () => {
    await world?.close();
    await Promise.all(upstreams.map((upstream) => upstream.close()));
  });

  test('in-flight upstream requests are aborted and the idle pooled connections of both pools closed: no upstream connection is left', async () => {
    const kept = new LingeringUpstream();
    const busy = new LingeringUpstream();
    upstreams.push(kept, busy);
    const keptUrl = await kept.listen();
    const busyUrl = await busy.listen();
    world = await startWorld({
      routes: () => [
        { path: '/kept-api', upstream: keptUrl, token: 'user' },
        { path: '/kept', upstream: keptUrl, token: 'none' },
        { path: '/api', upstream: busyUrl, token: 'user', timeout: '60s' },
        { path: '/', upstream: busyUrl, token: 'none', timeout: '60s' },
      ],
    });
    const { cookieHeader } = await login(world.url);

    // One finished request in each pool: each leaves its connection to `kept` open and idle.
    const plain = await fetch(`${world.url}/kept/ok?id=plain`);
    expect([plain.status, await plain.text()]).toEqual([200, 'ok']);
    const withToken = await fetch(`${world.url}/kept-api/ok?id=token`, { headers: { cookie: cookieHeader, 'x-csrf': '1' } });
    expect([withToken.status, await withToken.text()]).toEqual([200, 'ok']);
    expect(seen(kept, 'plain')).toMatchObject({ closed: true, aborted: false });
    expect(seen(kept, 'token')).toMatchObject({ closed: true, aborted: false });
    expect(kept.connections()).toBe(2);

    const { hang, events } = await startInFlight(world.gateway.port, busy, cookieHeader);

    const { gateway } = world.gateway;
    const closing = gateway.close();
    // What the CLI does once shutdownGrace is over (src/cli.ts): close the remaining connections.
    gateway.app.server.closeAllConnections();
    await closing;

    await until(() => hang.isClosed && events.isClosed, 'the client connections are closed');
    await until(() => seen(busy, 'hang').closed && seen(busy, 'events').closed, 'the upstream saw both in-flight requests end');
    expect(seen(busy, 'hang').aborted).toBe(true);
    expect(seen(busy, 'events').aborted).toBe(true);
    await until(() => busy.connections() === 0 && kept.connections() === 0, 'no connection of the gateway is left at any upstream');
    // The event stream was cut, not ended: no last chunk reached the client.
    expect(events.unread.toString('latin1')).not.toContain('\r\n0\r\n\r\n');
  });
});

describe('the CLI on SIGTERM, past shutdownGrace', () => {
  let world: ProcessWorld | undefined;
  let busy: LingeringUpstream | undefined;
  afterAll(async () => {
    await world?.close();
    await busy?.close();
  });

  test('requests still in flight are cut at the end of the grace period, their upstream requests end, no upstream connection is left, and the shutdown completes', async () => {
    busy = new LingeringUpstream();
    const busyUrl = await busy.listen();
    world = await startProcessWorld({
      instances: 1,
      config: {
        shutdownGrace: '1s',
        routes: [
          { path: '/api', upstream: busyUrl, token: 'user', timeout: '60s' },
          { path: '/', upstream: busyUrl, token: 'none', timeout: '60s' },
        ],
      },
    });
    const gateway = world.gateways[0] as GatewayProcess;
    const { cookieHeader } = await login(world.publicUrl);
    const { hang, events } = await startInFlight(Number(new URL(gateway.url).port), busy, cookieHeader);

    gateway.child.kill('SIGTERM');
    await gateway.exited;
    expect(gateway.child.exitCode).toBe(0);
    const messages = gateway.output.map((line) => {
      try {
        return String((JSON.parse(line) as { msg?: unknown }).msg);
      } catch {
        return line;
      }
    });
    expect(messages).toContain('shutdown grace period over: closing remaining connections');
    // gateway.close() finished: every request ended and the upstream pools were closed — not
    // the last-resort exit of a shutdown that could not complete.
    expect(messages).toContain('stopped');
    expect(messages).not.toContain('shutdown did not complete: exiting');

    await until(() => hang.isClosed && events.isClosed, 'the client connections are closed');
    await until(
      () => seen(busy as LingeringUpstream, 'hang').closed && seen(busy as LingeringUpstream, 'events').closed,
      'the upstream saw both in-flight requests end',
    );
    expect(seen(busy, 'hang').aborted).toBe(true);
    expect(seen(busy, 'events').aborted).toBe(true);
    await until(() => busy?.connections() === 0, 'no connection of the gateway is left at the upstream');
    expect(hang.unread.length).toBe(0);
    expect(events.unread.toString('latin1')).not.toContain('\r\n0\r\n\r\n');
  });
});
