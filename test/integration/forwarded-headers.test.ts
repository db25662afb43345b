/**
 * The forwarding headers an upstream receives are built only from `publicUrl` and what the
 * gateway itself observed, with and without `trustProxy`, on `none`, `optional` and `user`
 * routes. Requests are written by hand from 127.0.0.2 (so the peer address is distinct) with
 * every spoofable header an attacker would try: `Host`, `X-Forwarded-Host/-Proto/-For/-Prefix/
 * -Port`, `Forwarded`, `X-Real-IP` and underscore spellings. The upstream records the header
 * lines exactly as received:
 * - none of the client's forwarding headers, in any spelling, and nothing of the attacker's
 *   values reaches it; `Host` is the upstream's own authority;
 * - `X-Forwarded-Host` is publicUrl's host with its port and `X-Forwarded-Proto` publicUrl's
 *   scheme, once each, even when the client says otherwise through a trusted proxy;
 * - `X-Forwarded-For` is the peer; with `trustProxy`, the client's chain then the peer.
 * A second publicUrl on another host and scheme (https://app.example.test:8443) shows the
 * values come from the configuration, not from the listener or the request.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHopUpstream, type HopRequest, type HopUpstream } from '../support/hop-upstream.ts';
import { login, type LoginResult } from '../support/login.ts';
import { requestBytes, Wire } from '../support/wire.ts';
import { startWorld, type World } from '../support/world.ts';

const ELSEWHERE = 'https://app.example.test:8443';
const PEER = '127.0.0.2';

/** The gateways under test: publicUrl `world` is the one the login and the first gateway use. */
const FRONTS = [
  { label: 'http publicUrl', elsewhere: false, trustProxy: false },
  { label: 'http publicUrl, trustProxy', elsewhere: false, trustProxy: true },
  { label: 'https publicUrl on another host', elsewhere: true, trustProxy: false },
  { label: 'https publicUrl on another host, trustProxy', elsewhere: true, trustProxy: true },
] as const;
type FrontSpec = (typeof FRONTS)[number];

interface Front {
  port: number;
  publicUrl: string;
  trustProxy: boolean;
}

let world: World;
let hop: HopUpstream;
let session: LoginResult;
const fronts = new Map<string, Front>();
let sequence = 0;

beforeAll(async () => {
  hop = await startHopUpstream();
  world = await startWorld({
    store: 'redis',
    routes: () => [
      { path: '/api', upstream: hop.url, token: 'user' },
      { path: '/maybe', upstream: hop.url, token: 'optional' },
      { path: '/', upstream: hop.url, token: 'none' },
    ],
  });
  session = await login(world.url);
  for (const spec of FRONTS) {
    const publicUrl = spec.elsewhere ? ELSEWHERE : world.url;
    const port = spec === FRONTS[0] ? world.gateway.port : (await world.startGateway({}, { publicUrl, trustProxy: spec.trustProxy })).port;
    fronts.set(spec.label, { port, publicUrl, trustProxy: spec.trustProxy });
  }
});
afterAll(async () => {
  await world?.close();
  await hop?.close();
});

/** Everything an attacker can put in a request to steer what the upstream believes. */
function spoofed(publicUrl: string): Array<[string, string]> {
  const otherScheme = new URL(publicUrl).protocol === 'https:' ? 'http' : 'https';
  return [
    ['Host', 'evil.example'],
    ['X-Forwarded-Host', 'evil.example'],
    ['X-Forwarded-Proto', otherScheme],
    ['X-Forwarded-For', '203.0.113.7, 198.51.100.2'],
    ['Forwarded', 'for=203.0.113.9;host=evil;proto=https'],
    ['X-Real-IP', '203.0.113.10'],
    ['X-Forwarded-Prefix', '/evil-prefix'],
    ['X-Forwarded-Port', '6666'],
    ['X_Forwarded_Host', 'evil-underscore.example'],
    ['X_Forwarded_For', '203.0.113.11'],
    ['X_Forwarded_Proto', otherScheme],
    ['X_Real_IP', '203.0.113.12'],
    ['X-Forwarded_Prefix', '/evil-mixed'],
    ['X_Forwarded_Port', '6667'],
  ];
}

const ATTACKER_VALUES = ['evil', '203.0.113.9', '203.0.113.10', '203.0.113.11', '203.0.113.12', '6666', '6667'];

/** Header values the upstream received under `name` (case-insensitive), in order. */
function values(seen: HopRequest, name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < seen.rawHeaders.length; i += 2)
    if (seen.rawHeaders[i]?.toLowerCase() === name) out.push(seen.rawHeaders[i + 1] as string);
  return out;
}

function names(seen: HopRequest): string[] {
  return seen.rawHeaders.filter((_, i) => i % 2 === 0).map((name) => name.toLowerCase());
}

/** One request from 127.0.0.2 through `front`; resolves with what the upstream received. */
async function through(front: Front, path: string, headers: Array<[string, string]>): Promise<HopRequest> {
  const id = `fwd-${++sequence}`;
  const wire = await Wire.open(front.port, { localAddress: PEER });
  try {
    wire.write(requestBytes('GET', `${path}${path.includes('?') ? '&' : '?'}id=${id}`, headers));
    const res = await wire.next({ timeoutMs: 5_000 });
    expect(res.status, res.body.toString('utf8')).toBe(200);
  } finally {
    wire.destroy();
  }
  const seen = hop.byId(id);
  expect(seen, `the upstream received ${id}`).toBeDefined();
  return seen as HopRequest;
}

const ROUTES = [
  { route: 'none', path: '/echo', session: false, csrf: false },
  { route: 'optional (no session)', path: '/maybe/echo', session: false, csrf: true },
  { route: 'user', path: '/api/echo', session: true, csrf: true },
] as const;

function frontOf(spec: FrontSpec): Front {
  return fronts.get(spec.label) as Front;
}

describe('forwarding headers come from publicUrl and the observed peer only', () => {
  // Token routes need the session, which belongs to the world's publicUrl.
  const matrix = FRONTS.flatMap((spec) =>
    ROUTES.filter((route) => !route.session || !spec.elsewhere).map((route) => [spec.label, route.route, spec, route] as const),
  );

  it.each(matrix)('%s, %s route: spoofed forwarding headers never reach the upstream', async (_front, _route, spec, route) => {
    const front = frontOf(spec);
    const extra: Array<[string, string]> = [
      ...(route.session ? [['cookie', session.cookieHeader] as [string, string]] : []),
      ...(route.csrf ? [['x-csrf', '1'] as [string, string]] : []),
    ];
    const seen = await through(front, route.path, [...spoofed(front.publicUrl), ...extra]);
    const publicUrl = new URL(front.publicUrl);

    const received = names(seen);
    for (const name of ['forwarded', 'x-real-ip', 'x-forwarded-prefix', 'x-forwarded-port']) expect(received).not.toContain(name);
    expect(
      received.filter((name) => name.includes('_')),
      'underscore spellings',
    ).toEqual([]);
    const everything = seen.rawHeaders.join('\n');
    for (const value of ATTACKER_VALUES) expect(everything, `${value} reached the upstream`).not.toContain(value);

    expect(values(seen, 'host')).toEqual([`127.0.0.1:${hop.port}`]);
    expect(values(seen, 'x-forwarded-host')).toEqual([publicUrl.host]);
    expect(values(seen, 'x-forwarded-proto')).toEqual([publicUrl.protocol.replace(':', '')]);
    expect(values(seen, 'x-forwarded-for')).toEqual([front.trustProxy ? `203.0.113.7, 198.51.100.2, ${PEER}` : PEER]);
    if (route.session) expect(values(seen, 'authorization')).toHaveLength(1);
  });

  it.each(FRONTS.map((spec) => [spec.label, spec] as const))(
    '%s: with no forwarding header from the client the upstream still gets all three, from publicUrl and the peer',
    async (_label, spec) => {
      const front = frontOf(spec);
      const seen = await through(front, '/echo', []);
      const publicUrl = new URL(front.publicUrl);
      expect(values(seen, 'x-forwarded-host')).toEqual([publicUrl.host]);
      expect(values(seen, 'x-forwarded-proto')).toEqual([publicUrl.protocol.replace(':', '')]);
      expect(values(seen, 'x-forwarded-for')).toEqual([PEER]);
    },
  );

  it('trustProxy: a chain split over several X-Forwarded-For lines is kept in order, then the peer', async () => {
    const front = frontOf(FRONTS[1]);
    const seen = await through(front, '/echo', [
      ['X-Forwarded-For', '203.0.113.7'],
      ['X-Forwarded-For', '198.51.100.2, 192.0.2.1'],
    ]);
    expect(values(seen, 'x-forwarded-for')).toEqual([`203.0.113.7, 198.51.100.2, 192.0.2.1, ${PEER}`]);
  });

  it('without trustProxy: a client-sent X-Forwarded-For chain is dropped, only the peer remains', async () => {
    const front = frontOf(FRONTS[0]);
    const seen = await through(front, '/echo', [['X-Forwarded-For', '203.0.113.7']]);
    expect(values(seen, 'x-forwarded-for')).toEqual([PEER]);
  });
});
