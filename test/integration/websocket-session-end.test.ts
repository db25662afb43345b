/**
 * An open WebSocket lives no longer than its session. Two gateway instances share one Redis; the
 * socket is open on the second, the session ends through the first (logout, back-channel logout,
 * admin revoke, a refresh the IdP refuses) and the second closes the socket with 1008 "session
 * ended" — well before its own periodic re-check would have noticed, so the news travelled.
 * A timeout needs no news: each socket re-checks its session at the session's deadline. Browser
 * messages count as activity and slide the idle timeout; a record removed behind the gateway's
 * back (no announcement at all) is still noticed by the re-check.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { login, type LoginResult } from '../support/login.ts';
import { postLogoutToken, signLogoutToken } from '../support/logout-tokens.ts';
import { navigate } from '../support/raw-http.ts';
import { redisCommand } from '../support/redis.ts';
import { handleOf, redisKey } from '../support/session-probe.ts';
import { apiHeaders, CLIENT_ID, startWorld, type RunningGateway, type World } from '../support/world.ts';
import { startWsUpstream, type WsUpstream } from '../support/ws-upstream.ts';

const ADMIN_TOKEN = 'admin-token-0123456789-abcdefghijklmnopqrstuvwxyz';
/** Far below the 30 s periodic re-check: a close within it came from the announcement. */
const ANNOUNCED_WITHIN_MS = 5_000;
const IDLE_TIMEOUT = '3s';

let world: World;
let live: WsUpstream;
let first: RunningGateway;
let second: RunningGateway;
/** A third instance with a short idle timeout, for the timeout cases. */
let shortIdle: RunningGateway;

beforeAll(async () => {
  live = await startWsUpstream();
  world = await startWorld({
    store: 'redis',
    instances: 2,
    config: { admin: { host: '127.0.0.1', port: 0, token: ADMIN_TOKEN } },
    routes: (upstream) => [
      { path: '/live', upstream: live.url, token: 'user' },
      { path: '/', upstream: upstream.url, token: 'none' },
    ],
  });
  [first, second] = world.gateways as [RunningGateway, RunningGateway];
  shortIdle = await world.startGateway({}, { session: { idleTimeout: IDLE_TIMEOUT } });
});
afterEach(() => {
  world.idp.faults.token = 'none';
});
afterAll(async () => {
  await world?.close();
  await live?.close();
});

interface OpenSocket {
  ws: WebSocket;
  closed: Promise<{ code: number; reason: string }>;
  messages: string[];
}

function open(gateway: RunningGateway, session: LoginResult, origin = world.url): Promise<OpenSocket> {
  const ws = new WebSocket(`${gateway.url.replace(/^http/, 'ws')}/live/socket`, { headers: { cookie: session.cookieHeader, origin } });
  const messages: string[] = [];
  ws.on('message', (data: Buffer) => messages.push(data.toString('utf8')));
  ws.on('error', () => {});
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') })),
  );
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws, closed, messages }));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused with HTTP ${res.statusCode}`)));
  });
}

async function closedWithin(socket: OpenSocket, ms: number): Promise<{ code: number; reason: string }> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`socket still open after ${ms} ms`)), ms)));
  try {
    return await Promise.race([socket.closed, late]);
  } finally {
    clearTimeout(timer);
  }
}

const SESSION_ENDED = { code: 1008, reason: 'session ended' };

/** Logs in, opens a socket on `gateway` and proves it relays before the session is ended. */
async function liveSocket(gateway: RunningGateway = second): Promise<{ session: LoginResult; socket: OpenSocket }> {
  const session = await login(world.url);
  const socket = await open(gateway, session);
  socket.ws.send('before');
  await expect.poll(() => socket.messages, { timeout: ANNOUNCED_WITHIN_MS }).toContain('before');
  return { session, socket };
}

describe('a session ended on one instance closes its sockets on another', () => {
  it('user logout', async () => {
    const { session, socket } = await liveSocket();
    const upstreamOpen = live.open();
    const user = await fetch(`${first.url}/auth/user`, { headers: apiHeaders(session.cookieHeader) });
    const { logoutUrl } = (await user.json()) as { logoutUrl: string };
    const logout = await navigate(logoutUrl.replace(world.url, first.url), { cookie: session.cookieHeader });
    expect(logout.status).toBe(302);
    expect(await closedWithin(socket, ANNOUNCED_WITHIN_MS)).toEqual(SESSION_ENDED);
    // The gateway's leg to the upstream is closed too.
    await expect.poll(() => live.open(), { timeout: ANNOUNCED_WITHIN_MS }).toBeLessThan(upstreamOpen);
  });

  it('back-channel logout', async () => {
    const { socket } = await liveSocket();
    const token = await signLogoutToken(world.idp, CLIENT_ID, { sub: 'alice' });
    expect((await postLogoutToken(first.url, token)).status).toBe(200);
    expect(await closedWithin(socket, ANNOUNCED_WITHIN_MS)).toEqual(SESSION_ENDED);
  });

  it('admin revoke', async () => {
    const { session, socket } = await liveSocket();
    const admin = first.gateway.admin;
    if (!admin) throw new Error('no admin listener configured');
    const revoked = await admin.inject({
      method: 'POST',
      url: '/sessions/revoke',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      payload: { handle: handleOf(session.cookie) },
    });
    expect(revoked.json()).toMatchObject({ revoked: 1 });
    expect(await closedWithin(socket, ANNOUNCED_WITHIN_MS)).toEqual(SESSION_ENDED);
  });

  it('a refresh the IdP refuses', async () => {
    const { session, socket } = await liveSocket();
    // An instance whose clock is past the access token's expiry must refresh, and is refused.
    const late = await world.startGateway({ now: () => Date.now() + 400_000 });
    world.idp.faults.token = 'invalid_grant';
    const api = await fetch(`${late.url}/live/http`, { headers: apiHeaders(session.cookieHeader) });
    expect(api.status).toBe(401);
    expect(((await api.json()) as { error: string }).error).toBe('session_expired');
    expect(await closedWithin(socket, ANNOUNCED_WITHIN_MS)).toEqual(SESSION_ENDED);
  });
});

describe('timeouts and lost announcements', () => {
  it('the idle timeout closes a socket with no activity, with no other instance involved', async () => {
    const { socket } = await liveSocket(shortIdle);
    expect(await closedWithin(socket, 15_000)).toEqual(SESSION_ENDED);
  });

  it('browser messages slide the idle timeout; the socket closes once they stop', async () => {
    const { session, socket } = await liveSocket(shortIdle);
    // Twice the idle timeout of steady browser traffic, and nothing else touching the session.
    for (let i = 0; i < 15; i++) {
      socket.ws.send(`tick ${i}`);
      await new Promise((done) => setTimeout(done, 400));
    }
    await expect.poll(() => socket.messages, { timeout: ANNOUNCED_WITHIN_MS }).toContain('tick 14');
    expect(socket.ws.readyState).toBe(WebSocket.OPEN);
    const user = await fetch(`${shortIdle.url}/auth/user`, { headers: apiHeaders(session.cookieHeader) });
    expect(user.status).toBe(200);
    expect(await closedWithin(socket, 15_000)).toEqual(SESSION_ENDED);
  });

  it('a record removed without any announcement is noticed by the re-check', async () => {
    const { session, socket } = await liveSocket(shortIdle);
    const redis = world.redis;
    if (!redis) throw new Error('no redis in this world');
    expect(await redisCommand(redis.port, `DEL ${redisKey(session.cookie)}`)).toBe(':1');
    // Keep the socket active, so it is not the idle timeout that ends it.
    let ticks = 0;
    const ticker = setInterval(() => socket.ws.readyState === WebSocket.OPEN && socket.ws.send(`tick ${ticks++}`), 300);
    try {
      expect(await closedWithin(socket, 15_000)).toEqual(SESSION_ENDED);
    } finally {
      clearInterval(ticker);
    }
  });
});

describe('one instance on the memory store', () => {
  let single: World;
  beforeAll(async () => {
    single = await startWorld({
      routes: (upstream) => [
        { path: '/live', upstream: live.url, token: 'user' },
        { path: '/', upstream: upstream.url, token: 'none' },
      ],
    });
  });
  afterAll(() => single?.close());

  it('a logout closes the socket at once', async () => {
    const session = await login(single.url);
    const socket = await open(single.gateway, session, single.url);
    const user = await fetch(`${single.url}/auth/user`, { headers: apiHeaders(session.cookieHeader) });
    const { logoutUrl } = (await user.json()) as { logoutUrl: string };
    const logout = await navigate(logoutUrl, { cookie: session.cookieHeader });
    expect(logout.status).toBe(302);
    expect(await closedWithin(socket, ANNOUNCED_WITHIN_MS)).toEqual(SESSION_ENDED);
  });
});
