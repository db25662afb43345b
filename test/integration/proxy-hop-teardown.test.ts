/**
 * Every upstream request ends when it should, against the real CLI and an upstream that counts
 * the requests it still holds open (raw sockets on the client side):
 * - `Expect: 100-continue` requests whose body never comes or whose upstream never answers,
 *   with and without a session, on `none`, `optional` and `user` routes, more of them than
 *   `limits.upstreamConnections`: the client gets `HTTP/1.1 100 Continue` from the gateway, the
 *   upstream never sees `Expect`, the upstream never holds more connections than the pools
 *   allow, every upstream request is released after the route timeout (while the clients are
 *   still connected), and every route of that upstream serves normal traffic afterwards;
 * - a client that disconnects while the upstream is slow releases the upstream request long
 *   before the route timeout (no body, buffered body, streamed body); a route timeout (504
 *   `gateway_timeout`) releases it too;
 * - slow clients on proxy routes (`limits.bodyIdleTimeout: 1s`): a body trickled one byte every
 *   1.5 s, buffered (token route) or streamed (> 1 MiB declared), is answered 408
 *   `request_timeout` and the connection closed, and a streamed upstream request is aborted;
 * - `limits.perClientRequests: 2`: a third concurrent proxied request from one client address
 *   gets 429 `too_many_requests` (never forwarded) while another address is served, and the
 *   slots come back when the first two end.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHopUpstream, type HopUpstream } from '../support/hop-upstream.ts';
import { login, type LoginResult } from '../support/login.ts';
import { startProcessWorld, type ProcessWorld } from '../support/processes.ts';
import { errorCode, requestBytes, until, Wire, type WireResponse } from '../support/wire.ts';
import { sleep } from '../support/time.ts';

const POOL = 4;
let sequence = 0;
const nextId = (label: string) => `${label}-${++sequence}`;

function portOf(world: ProcessWorld): number {
  return Number(new URL(world.gateways[0]?.url as string).port);
}

function expectJsonError(res: WireResponse, status: number, code: string): void {
  expect(res.status, res.body.toString('utf8')).toBe(status);
  expect(res.get('content-type')).toMatch(/^application\/json/);
  expect(errorCode(res)).toBe(code);
}

describe('Expect: 100-continue, client aborts and route timeouts', () => {
  let world: ProcessWorld;
  let hop: HopUpstream;
  let session: LoginResult;

  beforeAll(async () => {
    hop = await startHopUpstream();
    world = await startProcessWorld({
      instances: 1,
      config: {
        limits: { upstreamConnections: POOL, bodyIdleTimeout: '2s' },
        routes: [
          { path: '/api', upstream: hop.url, token: 'user', timeout: '1s' },
          { path: '/maybe', upstream: hop.url, token: 'optional', timeout: '1s' },
          { path: '/patient-api', upstream: hop.url, token: 'user', timeout: '30s' },
          { path: '/patient', upstream: hop.url, token: 'none', timeout: '30s' },
          { path: '/', upstream: hop.url, token: 'none', timeout: '1s' },
        ],
      },
    });
    session = await login(world.publicUrl);
  });
  afterAll(async () => {
    await world?.close();
    await hop?.close();
  });

  const withSession = (): Array<[string, string]> => [
    ['cookie', session.cookieHeader],
    ['x-csrf', '1'],
  ];
  const kinds = [
    { label: 'none route, no session', prefix: '', headers: (): Array<[string, string]> => [] },
    { label: 'optional route, no session', prefix: '/maybe', headers: (): Array<[string, string]> => [['x-csrf', '1']] },
    { label: 'optional route, session', prefix: '/maybe', headers: withSession },
    { label: 'user route, session', prefix: '/api', headers: withSession },
  ];

  it.each(['upstream silent', 'no body'] as const)(
    'Expect: 100-continue, %s, beyond the pool size: 100 Continue from the gateway, no Expect upstream, every upstream request released at the route timeout, every route usable afterwards',
    async (variant) => {
      hop.resetPeak();
      const body = 'sixteen-bytes-ok';
      const pending: Array<{ id: string; label: string; wire: Wire }> = [];
      for (const kind of kinds) {
        for (let copy = 0; copy < 3; copy++) {
          const id = nextId('expect');
          // `no body`: the declared body never comes; `upstream silent`: it does, the upstream never answers.
          const path = `${kind.prefix}/${variant === 'no body' ? 'echo' : 'hang'}?id=${id}`;
          const wire = await Wire.open(portOf(world));
          wire.write(
            requestBytes('POST', path, [
              ...kind.headers(),
              ['content-type', 'text/plain'],
              ['content-length', String(body.length)],
              ['expect', '100-continue'],
            ]),
          );
          pending.push({ id, label: kind.label, wire });
        }
      }
      expect(pending.length).toBeGreaterThan(2 * POOL);
      try {
        for (const request of pending) {
          const interim = await request.wire.next({ timeoutMs: 5_000 });
          expect(interim.head, request.label).toBe('HTTP/1.1 100 Continue');
          if (variant === 'upstream silent') request.wire.write(body);
        }
        for (const request of pending) {
          const final = await request.wire.next({ timeoutMs: 10_000 }).catch((err: Error) => {
            throw new Error(`${request.label}: ${err.message}`);
          });
          const what = `${request.label}: ${final.body.toString('utf8')}`;
          if (variant === 'upstream silent') expectJsonError(final, 504, 'gateway_timeout');
          else {
            // A body that never comes: the route timeout (504) or the body deadline (408), whichever is first.
            expect([504, 408], what).toContain(final.status);
            expect(errorCode(final), what).toBe(final.status === 504 ? 'gateway_timeout' : 'request_timeout');
          }
        }
        // Released while the clients are all still connected: the route timeout alone must do it.
        const ids = new Set(pending.map((request) => request.id));
        await until(
          () => hop.open().filter((r) => r.id !== undefined && ids.has(r.id)).length === 0,
          'every upstream request of the Expect clients released',
          10_000,
        );
        const reached = hop.requests.filter((r) => r.id !== undefined && ids.has(r.id));
        if (variant === 'upstream silent') expect(reached.length).toBeGreaterThan(0);
        for (const seen of reached) expect(seen.headers.expect, `Expect forwarded on ${seen.url}`).toBeUndefined();
        // Two pools (token and non-token traffic), each at most `upstreamConnections` sockets.
        expect(hop.peakConnections()).toBeLessThanOrEqual(2 * POOL);
      } finally {
        for (const request of pending) request.wire.destroy();
      }

      // Every route of that upstream still serves, more requests at once than one pool holds.
      const calls = kinds.flatMap((kind) =>
        Array.from({ length: POOL + 1 }, async () => {
          const res = await fetch(`${world.publicUrl}${kind.prefix}/echo?id=${nextId('after-expect')}`, {
            headers: Object.fromEntries(kind.headers()),
          });
          return { label: kind.label, status: res.status, body: await res.text() };
        }),
      );
      for (const result of await Promise.all(calls)) {
        expect(result.status, `${result.label}: ${result.body}`).toBe(200);
        expect(JSON.parse(result.body)).toMatchObject({ method: 'GET' });
      }
    },
  );

  it.each([
    { label: 'none route, no body', prefix: '/patient', method: 'GET', session: false, declared: 0, sent: 0 },
    { label: 'user route, no body', prefix: '/patient-api', method: 'GET', session: true, declared: 0, sent: 0 },
    { label: 'user route, buffered body', prefix: '/patient-api', method: 'POST', session: true, declared: 1_000, sent: 1_000 },
    {
      label: 'none route, streamed body cut short',
      prefix: '/patient',
      method: 'POST',
      session: false,
      declared: 2 * 1024 * 1024,
      sent: 64 * 1024,
    },
    {
      label: 'user route, streamed body cut short',
      prefix: '/patient-api',
      method: 'POST',
      session: true,
      declared: 2 * 1024 * 1024,
      sent: 64 * 1024,
    },
    {
      label: 'none route, Expect: 100-continue, body sent after the 100',
      prefix: '/patient',
      method: 'POST',
      session: false,
      declared: 1_000,
      sent: 1_000,
      expect: true,
    },
    {
      label: 'user route, Expect: 100-continue, body sent after the 100',
      prefix: '/patient-api',
      method: 'POST',
      session: true,
      declared: 1_000,
      sent: 1_000,
      expect: true,
    },
  ])(
    'client abort while the upstream is slow ($label): the upstream request is closed long before the 30 s route timeout',
    async ({ prefix, method, session: needsSession, declared, sent, expect: expectContinue }) => {
      const id = nextId('abort');
      const wire = await Wire.open(portOf(world));
      try {
        const headers: Array<[string, string]> = [
          ...(needsSession ? withSession() : []),
          ...(declared > 0
            ? ([
                ['content-type', 'application/octet-stream'],
                ['content-length', String(declared)],
              ] as Array<[string, string]>)
            : []),
          ...(expectContinue ? ([['expect', '100-continue']] as Array<[string, string]>) : []),
        ];
        const body = Buffer.alloc(sent, 0x61);
        if (expectContinue) {
          wire.write(requestBytes(method, `${prefix}/hang?id=${id}`, headers));
          expect((await wire.next({ timeoutMs: 5_000 })).head).toBe('HTTP/1.1 100 Continue');
          wire.write(body);
        } else {
          wire.write(requestBytes(method, `${prefix}/hang?id=${id}`, headers, body));
        }
        await until(
          () => hop.byId(id) !== undefined && (hop.byId(id)?.bodyBytes ?? 0) >= Math.min(sent, 1),
          `request ${id} at the upstream`,
          10_000,
        );
      } finally {
        wire.destroy();
      }
      await until(() => hop.byId(id)?.closed === true, `upstream request ${id} closed after the client left`, 5_000);
      expect(hop.byId(id)?.aborted).toBe(true);
    },
  );

  it.each([
    { label: 'none route', path: '/hang', session: false },
    { label: 'user route', path: '/api/hang', session: true },
  ])('route timeout on the $label: 504 gateway_timeout and the upstream request closed', async ({ path, session: needsSession }) => {
    const id = nextId('timeout');
    const wire = await Wire.open(portOf(world));
    try {
      wire.write(requestBytes('GET', `${path}?id=${id}`, needsSession ? withSession() : []));
      expectJsonError(await wire.next({ timeoutMs: 10_000 }), 504, 'gateway_timeout');
      await until(() => hop.byId(id)?.closed === true, `upstream request ${id} closed after the 504`, 5_000);
      expect(hop.byId(id)?.aborted).toBe(true);
    } finally {
      wire.destroy();
    }
  });
});

describe('slow clients on proxy routes', () => {
  let world: ProcessWorld;
  let hop: HopUpstream;
  let session: LoginResult;

  beforeAll(async () => {
    hop = await startHopUpstream();
    world = await startProcessWorld({
      instances: 1,
      config: {
        limits: { bodyIdleTimeout: '1s', perClientRequests: 2 },
        routes: [
          { path: '/api', upstream: hop.url, token: 'user', timeout: '30s' },
          { path: '/', upstream: hop.url, token: 'none', timeout: '30s' },
        ],
      },
    });
    session = await login(world.publicUrl);
  });
  afterAll(async () => {
    await world?.close();
    await hop?.close();
  });

  /**
   * Sends `first` bytes of body at once, then one byte every 1.5 s (at most 8), until the
   * gateway answers or closes; resolves with the answer.
   */
  async function trickle(wire: Wire, first: number): Promise<WireResponse> {
    if (first > 0) wire.write(Buffer.alloc(first, 0x61));
    const answer = wire.next({ timeoutMs: 15_000 });
    let settled = false;
    void answer.then(
      () => (settled = true),
      () => (settled = true),
    );
    for (let i = 0; i < 8 && !settled && !wire.isClosed && wire.unread.length === 0; i++) {
      wire.write('b');
      for (let slept = 0; slept < 1_500 && !settled && !wire.isClosed && wire.unread.length === 0; slept += 50) await sleep(50);
    }
    return answer;
  }

  it.each([
    { label: 'token route, buffered body (declared 64 bytes)', path: '/api/echo', session: true, declared: 64, first: 0, streamed: false },
    {
      label: 'token route, streamed body (declared 2 MiB)',
      path: '/api/echo',
      session: true,
      declared: 2 * 1024 * 1024,
      first: 64 * 1024,
      streamed: true,
    },
    {
      label: 'none route, streamed body (declared 2 MiB)',
      path: '/echo',
      session: false,
      declared: 2 * 1024 * 1024,
      first: 64 * 1024,
      streamed: true,
    },
  ])(
    '$label trickled one byte every 1.5 s: 408 request_timeout, connection closed',
    async ({ path, session: needsSession, declared, first, streamed }) => {
      const id = nextId('trickle');
      const wire = await Wire.open(portOf(world));
      try {
        const headers: Array<[string, string]> = [
          ...(needsSession
            ? ([
                ['cookie', session.cookieHeader],
                ['x-csrf', '1'],
              ] as Array<[string, string]>)
            : []),
          ['content-type', 'application/octet-stream'],
          ['content-length', String(declared)],
        ];
        wire.write(requestBytes('POST', `${path}?id=${id}`, headers));
        const res = await trickle(wire, first);
        expectJsonError(res, 408, 'request_timeout');
        expect(res.get('cache-control')).toContain('no-store');
        expect(await wire.waitClosed(5_000), 'the gateway closes the connection after the 408').toBe(true);
        if (streamed) {
          await until(() => hop.byId(id)?.closed === true, `streamed upstream request ${id} aborted`, 5_000);
          expect(hop.byId(id)?.aborted).toBe(true);
        } else {
          expect(hop.byId(id), 'a buffered body that never completed is never forwarded').toBeUndefined();
        }
      } finally {
        wire.destroy();
      }
    },
  );

  it('perClientRequests 2: a third proxied request from one address gets 429, another address is served, the slots come back', async () => {
    const holders: Wire[] = [];
    const held = [nextId('hold'), nextId('hold')];
    try {
      for (const id of held) {
        const wire = await Wire.open(portOf(world));
        wire.write(requestBytes('GET', `/hang?id=${id}`, []));
        holders.push(wire);
      }
      await until(() => held.every((id) => hop.byId(id) !== undefined), 'both held requests at the upstream', 10_000);

      const thirdId = nextId('third');
      const third = await Wire.open(portOf(world));
      try {
        third.write(requestBytes('GET', `/echo?id=${thirdId}`, []));
        const res = await third.next({ timeoutMs: 5_000 });
        expectJsonError(res, 429, 'too_many_requests');
        expect(hop.byId(thirdId), 'a refused request is never forwarded').toBeUndefined();
      } finally {
        third.destroy();
      }

      const otherId = nextId('other');
      const other = await Wire.open(portOf(world), { localAddress: '127.0.0.2' });
      try {
        other.write(requestBytes('GET', `/echo?id=${otherId}`, []));
        const res = await other.next({ timeoutMs: 5_000 });
        expect(res.status, res.body.toString('utf8')).toBe(200);
        expect(hop.byId(otherId)?.headers['x-forwarded-for']).toBe('127.0.0.2');
      } finally {
        other.destroy();
      }
    } finally {
      for (const wire of holders) wire.destroy();
    }

    await until(() => held.every((id) => hop.byId(id)?.closed === true), 'held upstream requests closed after their clients left', 5_000);
    // The slots are free again: two concurrent requests from the first address are served.
    const again = await until(
      async () => {
        const statuses = await Promise.all(
          [0, 1].map(() => fetch(`${world.publicUrl}/echo?id=${nextId('again')}`).then(async (res) => (await res.text(), res.status))),
        );
        return statuses.every((status) => status === 200) ? statuses : undefined;
      },
      'requests from the first address served again',
      5_000,
    );
    expect(again).toEqual([200, 200]);
  });
});
