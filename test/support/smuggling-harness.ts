/**
 * The stage for request-smuggling tests: a real gateway started through the CLI, a real IdP and
 * Redis, and one recording upstream (recording-upstream.ts) shared by a `none`, an `optional`, a
 * `user` and a `client` route (and the victim's own `user` route), with one upstream connection
 * per origin and pool, so a victim's request goes out on the very connection an attacker's
 * request just used whenever the two share a pool.
 *
 * `attack` plays one round: every upstream connection is dropped first (rounds are independent),
 * the attacker writes raw bytes on its own socket, then a logged-in victim sends an ordinary GET
 * to its `user` route, and the wire is left to go quiet. The requests the gateway accepted are
 * the ones Node's parser (the gateway's own) finds in the attacker's bytes (reference-parser.ts),
 * plus the victim's. `violations` checks the round against the invariants that define "nothing
 * was smuggled":
 *   (a) every request the upstream parsed is a distinct request the gateway accepted (the count
 *       of requests the upstream parsed never exceeds it), each one complete and none refused by
 *       the upstream's parser;
 *   (b) the victim's access token appears in the recorded bytes only in the Authorization header
 *       of the victim's own request;
 *   (c) the attacker got at least one answer, and each one is the upstream's or the gateway's own
 *       JSON 4xx;
 *   (d) the victim got the upstream's answer to its own request (an attacker's request must not
 *       hold the shared upstream connection once the attacker has been answered).
 */
import { bearerOf } from './upstream.ts';
import { login } from './login.ts';
import { startProcessWorld, type ProcessWorld } from './processes.ts';
import { converse, type RawAnswer, type RawConversation } from './raw-exchange.ts';
import { startReferenceParser, type ParsedRequestLine } from './reference-parser.ts';
import { SEQ_HEADER, startRecordingUpstream, type EchoAnswer, type RecordedRequest, type RecordingUpstream } from './recording-upstream.ts';
import { sleep } from './time.ts';

/** Route prefixes, all at the same upstream origin. */
export const ROUTES = { none: '/none', optional: '/maybe', user: '/api', client: '/svc', victim: '/me' } as const;

/** The attacker's identities, by name (test titles are built from them before the stage runs). */
export const IDENTITY_NAMES = [
  'none route',
  'optional route, anonymous',
  'optional route, with a session',
  'user route, with a session',
  'user route, without a session',
  'client route',
] as const;

export type IdentityName = (typeof IDENTITY_NAMES)[number];

export interface AttackerIdentity {
  name: IdentityName;
  prefix: string;
  /** Header lines (each ending in CRLF) the attacker adds: a session cookie and/or x-csrf. */
  lines: string;
}

export interface Attack {
  bytes: string;
  /** Answers the bytes call for when framed as written (a rejection with a close gives fewer). */
  expected?: number;
  /** Positions of answers to HEAD requests. */
  head?: ReadonlySet<number>;
}

export interface Round {
  attack: Attack;
  attacker: RawConversation;
  /** Requests Node's parser finds in the attacker's bytes: what the gateway accepted from it. */
  attackerRequests: ParsedRequestLine[];
  victim: RawConversation;
  victimPath: string;
  /** Requests the upstream parsed during the round. */
  parsed: RecordedRequest[];
  parseErrors: string[];
  /** Everything the upstream received during the round, one string per connection (latin1). */
  wire: string[];
}

export interface SmugglingStage {
  world: ProcessWorld;
  upstream: RecordingUpstream;
  port: number;
  /** The attacker's own identities: every route, with and without a session where it matters. */
  identities: AttackerIdentity[];
  /** Where an identity aims: a path under its route, and its header lines. */
  target(name: IdentityName): { path: string; lines: string };
  victimToken: string;
  /** Byte length of a victim request as the gateway forwards it: a smuggled prefix can ask for exactly that much body. */
  victimRequestLength: number;
  attack(attack: Attack): Promise<Round>;
  close(): Promise<void>;
}

/** Waits until nothing has arrived at the upstream for `quietMs` (bounded). */
async function quiet(upstream: RecordingUpstream, quietMs = 100, capMs = 3_000): Promise<void> {
  const started = Date.now();
  let seen = upstream.activity();
  let since = Date.now();
  while (Date.now() - started < capMs) {
    await sleep(25);
    if (upstream.activity() !== seen) {
      seen = upstream.activity();
      since = Date.now();
    } else if (Date.now() - since >= quietMs) return;
  }
}

function victimRequest(path: string, port: number, cookie: string): string {
  return `GET ${path} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncookie: ${cookie}\r\nx-csrf: 1\r\naccept: application/json\r\nconnection: close\r\n\r\n`;
}

export async function startSmugglingStage(): Promise<SmugglingStage> {
  const upstream = await startRecordingUpstream();
  const reference = await startReferenceParser();
  let world: ProcessWorld;
  try {
    world = await startProcessWorld({
      instances: 1,
      // Long-lived tokens: no refresh in the middle of a file changes the victim's token.
      idp: { accessTokenTtl: 3600 },
      config: {
        // One connection per upstream origin and pool: the victim's request reuses the
        // connection the attacker's request went out on (when they share a pool).
        limits: { upstreamConnections: 1 },
        // The victim's own `user` route gives up sooner than any route an attacker uses: an
        // attacker's upstream request left holding the shared connection until its route
        // timeout always outlasts the victim's patience, so the victim's failure is certain
        // instead of a race between two equal timeouts.
        routes: [
          { path: ROUTES.victim, upstream: upstream.url, token: 'user', timeout: '1s' },
          { path: ROUTES.user, upstream: upstream.url, token: 'user', timeout: '2s' },
          { path: ROUTES.optional, upstream: upstream.url, token: 'optional', timeout: '2s' },
          { path: ROUTES.client, upstream: upstream.url, token: 'client', timeout: '2s' },
          { path: ROUTES.none, upstream: upstream.url, token: 'none', timeout: '2s' },
        ],
      },
    });
  } catch (err) {
    await upstream.close();
    await reference.close();
    throw err;
  }
  const gateway = world.gateways[0];
  if (!gateway) throw new Error('no gateway process');
  const port = Number(new URL(gateway.url).port);
  const attacker = await login(world.publicUrl);
  const victim = await login(world.publicUrl);

  // Warm-up: the victim's token as the upstream receives it, and the size of a victim request.
  const warmPath = `${ROUTES.victim}/victim/000000`;
  const warm = await converse(port, victimRequest(warmPath, port, victim.cookieHeader));
  const seen = upstream.requests.find((request) => request.url === warmPath);
  if (warm.answers[0]?.status !== 200 || !seen) throw new Error(`victim warm-up failed: ${warm.answers[0]?.head ?? warm.leftover}`);
  const victimToken = bearerOf(seen.headers);
  const wire = upstream.text(upstream.connections[seen.connection] as (typeof upstream.connections)[number]);
  const start = wire.indexOf(`GET ${warmPath} `);
  const victimRequestLength = wire.indexOf('\r\n\r\n', start) + 4 - start;
  // The client route fetches its token once, before any round.
  const client = await converse(port, `GET ${ROUTES.client}/warm HTTP/1.1\r\nhost: x\r\nx-csrf: 1\r\nconnection: close\r\n\r\n`);
  if (client.answers[0]?.status !== 200) throw new Error(`client route warm-up failed: ${client.answers[0]?.head ?? client.leftover}`);

  const session = `cookie: ${attacker.cookieHeader}\r\nx-csrf: 1\r\n`;
  const identities: AttackerIdentity[] = [
    { name: 'none route', prefix: ROUTES.none, lines: '' },
    // Every token route wants the CSRF header, with or without a session.
    { name: 'optional route, anonymous', prefix: ROUTES.optional, lines: 'x-csrf: 1\r\n' },
    { name: 'optional route, with a session', prefix: ROUTES.optional, lines: session },
    { name: 'user route, with a session', prefix: ROUTES.user, lines: session },
    { name: 'user route, without a session', prefix: ROUTES.user, lines: 'x-csrf: 1\r\n' },
    { name: 'client route', prefix: ROUTES.client, lines: 'x-csrf: 1\r\n' },
  ];

  let round = 0;
  return {
    world,
    upstream,
    port,
    identities,
    target(name) {
      const identity = identities.find((candidate) => candidate.name === name);
      if (!identity) throw new Error(`unknown identity ${name}`);
      return { path: `${identity.prefix}/x`, lines: identity.lines };
    },
    victimToken,
    victimRequestLength,
    async attack(attack) {
      upstream.dropConnections();
      // Let the gateway see the upstream side go away before it picks a pooled connection.
      await sleep(50);
      const firstConnection = upstream.connections.length;
      const firstRequest = upstream.requests.length;
      const victimPath = `${ROUTES.victim}/victim/${String(++round).padStart(6, '0')}`;
      const attackerConversation = await converse(port, attack.bytes, { expected: attack.expected ?? 1, head: attack.head });
      const victimConversation = await converse(port, victimRequest(victimPath, port, victim.cookieHeader));
      await quiet(upstream);
      const attackerRequests = await reference.parse(attack.bytes);
      const connections = upstream.connections.slice(firstConnection);
      return {
        attack,
        attacker: attackerConversation,
        attackerRequests,
        victim: victimConversation,
        victimPath,
        parsed: upstream.requests.slice(firstRequest),
        parseErrors: connections.flatMap((connection) => connection.parseErrors),
        wire: connections.map((connection) => upstream.text(connection)),
      };
    },
    async close() {
      await world.close();
      await upstream.close();
      await reference.close();
    },
  };
}

function seqOf(answer: RawAnswer): number | undefined {
  const value = answer.get(SEQ_HEADER);
  return value === undefined ? undefined : Number(value);
}

function occurrences(haystack: string, needle: string): number {
  let count = 0;
  for (let at = haystack.indexOf(needle); at !== -1; at = haystack.indexOf(needle, at + needle.length)) count++;
  return count;
}

function isGatewayJsonError(answer: RawAnswer): boolean {
  if (answer.status < 400 || answer.status > 499 || !/^application\/json/i.test(answer.get('content-type') ?? '')) return false;
  if (answer.body.length === 0) return true; // an answer to HEAD: headers only
  try {
    return typeof (JSON.parse(answer.body.toString('utf8')) as { error?: unknown }).error === 'string';
  } catch {
    return false;
  }
}

const describeRequest = (request: RecordedRequest) =>
  `${request.method} ${request.url} (connection ${request.connection}, #${request.index}, seq ${request.seq ?? 'unanswered'})`;

export type Invariant = 'a' | 'b' | 'c' | 'd';

/**
 * Every invariant (of `checks`) the round breaks, as readable sentences followed by the bytes
 * sent and received; [] when the round is clean.
 */
export function violations(round: Round, victimToken: string, checks: readonly Invariant[] = ['a', 'b', 'c', 'd']): string[] {
  const all = broken(round, victimToken).filter(([invariant]) => checks.includes(invariant));
  if (all.length === 0) return [];
  const shown = (text: string, max: number) =>
    (text.length > max ? `${text.slice(0, max)}…` : text).split(victimToken).join('<victim token>');
  return [
    ...all.map(([invariant, sentence]) => `(${invariant}) ${sentence}`),
    `attacker sent ${JSON.stringify(shown(round.attack.bytes, 600))}`,
    `upstream received ${JSON.stringify(round.wire.map((text) => shown(text, 2500)))}`,
  ];
}

function broken(round: Round, victimToken: string): Array<[Invariant, string]> {
  const found: Array<[Invariant, string]> = [];
  // (a)
  if (round.parseErrors.length > 0)
    found.push(['a', `the upstream's parser refused bytes the gateway sent: ${round.parseErrors.join(', ')}`]);
  const accepted: ParsedRequestLine[] = [{ method: 'GET', url: round.victimPath }, ...round.attackerRequests];
  const unmatched: RecordedRequest[] = [];
  for (const request of round.parsed) {
    const at = accepted.findIndex((candidate) => candidate.method === request.method && candidate.url === request.url);
    if (at === -1) unmatched.push(request);
    else accepted.splice(at, 1);
  }
  if (unmatched.length > 0) {
    const received = round.attackerRequests.map((request) => `${request.method} ${request.url}`).join('; ') || 'none';
    found.push([
      'a',
      `the upstream parsed ${round.parsed.length} request(s), ${unmatched.length} of them not accepted by the gateway: ${unmatched.map(describeRequest).join('; ')} (the gateway accepted from the attacker: ${received})`,
    ]);
  }
  const waiting = round.parsed.filter((request) => request.body === undefined);
  if (waiting.length > 0)
    found.push(['a', `the upstream still waits for the rest of the body of ${waiting.map(describeRequest).join('; ')}`]);

  // (b)
  const inWire = round.wire.reduce((sum, text) => sum + occurrences(text, victimToken), 0);
  const legitimate = round.parsed.filter(
    (request) => request.url === round.victimPath && request.headers.authorization === `Bearer ${victimToken}`,
  );
  const elsewhere = round.parsed.filter(
    (request) =>
      !legitimate.includes(request) &&
      JSON.stringify([request.url, request.rawHeaders, request.body?.toString('latin1')]).includes(victimToken),
  );
  if (elsewhere.length > 0)
    found.push(['b', `the victim's token reached the upstream inside another request: ${elsewhere.map(describeRequest).join('; ')}`]);
  if (inWire !== legitimate.length) {
    found.push([
      'b',
      `the victim's token is ${inWire} time(s) in the upstream's bytes, but only ${legitimate.length} parsed request(s) carry it as the victim's own Authorization`,
    ]);
  }

  // (c)
  if (round.attacker.answers.length === 0)
    found.push(['c', `the attacker got no answer (received: ${JSON.stringify(round.attacker.leftover.slice(0, 200))})`]);
  for (const answer of round.attacker.answers) {
    if (seqOf(answer) === undefined && !isGatewayJsonError(answer)) {
      found.push([
        'c',
        `the attacker got an answer that is neither the upstream's nor the gateway's JSON 4xx: ${JSON.stringify(answer.head.split('\r\n')[0])} ${JSON.stringify(answer.body.toString('latin1').slice(0, 120))}`,
      ]);
    }
  }

  // (d)
  const [victimAnswer, ...extra] = round.victim.answers;
  let echo: EchoAnswer | undefined;
  try {
    echo = victimAnswer && seqOf(victimAnswer) !== undefined ? (JSON.parse(victimAnswer.body.toString('utf8')) as EchoAnswer) : undefined;
  } catch {
    echo = undefined;
  }
  if (victimAnswer?.status !== 200 || echo?.method !== 'GET' || echo.url !== round.victimPath || extra.length > 0) {
    const what = victimAnswer
      ? `${JSON.stringify(victimAnswer.head.split('\r\n')[0])} for ${echo ? `${echo.method} ${echo.url}` : 'no upstream request'}`
      : 'nothing';
    found.push(['d', `the victim did not get its own answer: ${what}${extra.length > 0 ? ` and ${extra.length} more` : ''}`]);
  }
  return found;
}
