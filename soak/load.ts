/**
 * The soak's load generator and upstream, in a child process of soak/run.ts (forked with
 * tsx), so that parsing thousands of responses never delays the IdP or the sampling.
 *
 * Every session "ticks" every `intervalMs` (first tick at a random offset), sending two API
 * calls at once, to two different gateway instances, as a SPA fires parallel requests. The
 * upstream answers each with a fingerprint of the bearer token it received, so the generator
 * sees every token change of every session: that is how refreshes per expiry are counted.
 */
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';

export interface StartMessage {
  type: 'start';
  gateways: string[];
  cookies: string[];
  /** When each session's login completed (ms): a first-seen token issued later was a refresh. */
  loggedInAt: number[];
  intervalMs: number;
  requestTimeoutMs: number;
  /** Token lifetime minus the refresh window: the shortest normal gap between two refreshes. */
  refreshPeriodMs: number;
}

export type ToLoad = StartMessage | { type: 'stats' } | { type: 'stop' };

/** Per-interval counters, reset at each `stats` request. */
export interface Stats {
  type: 'stats';
  at: number;
  requests: number;
  ok: number;
  /** "503 session_store_unavailable", "error UND_ERR_..." -> count */
  failures: Record<string, number>;
  p50: number;
  p99: number;
  max: number;
  /** Token changes seen in this interval (one per refresh that reached the upstream). */
  tokenChanges: number;
  inFlight: number;
  /** Ticks skipped because the session's previous tick had not been answered yet. */
  skippedTicks: number;
}

export interface Report {
  type: 'report';
  sessions: number;
  requests: number;
  ok: number;
  /** Every failure with its time, for phases around the Redis restart. */
  failureTimes: Array<{ at: number; status: string }>;
  /** Σ over sessions of (distinct tokens seen − 1). */
  tokenChanges: number;
  /** A token issued (iat) sooner than refreshPeriodMs − 1 s after its predecessor: a second refresh within one expiry. */
  earlyChanges: number;
  /** The two concurrent requests of one tick carried different tokens. */
  splitTicks: number;
  /** A request carried a token that had already been replaced by a newer one. */
  staleTokens: number;
  /** Sessions that saw no token change at all (only meaningful for runs longer than a token lifetime). */
  sessionsWithoutChange: number;
  /** Session whose requests answered 401: logged out (sessions must survive the whole run). */
  sessionsLost: number;
  changesPerSession: { min: number; median: number; max: number };
  skippedTicks: number;
}

export type FromLoad = { type: 'ready'; upstreamUrl: string } | Stats | Report;

interface SessionState {
  cookie: string;
  loggedInAt: number;
  current?: string;
  currentIat: number;
  replaced: Set<string>;
  changes: number;
  lost: boolean;
  /** The previous tick's calls are still out: a SPA does not pile requests up, nor does this. */
  busy: boolean;
}

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? 0;
const send = (message: FromLoad) => process.send?.(message);

function startUpstream(): Promise<Server> {
  const server = createServer((req, res) => {
    const token = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1] ?? '';
    const fp = token ? createHash('sha256').update(token).digest('base64url').slice(0, 16) : '';
    // The token's issue time, read without verifying (the gateway only ever sends the IdP's).
    let iat = 0;
    try {
      iat = Number((JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { iat?: number }).iat ?? 0);
    } catch {
      // not a JWT: no issue time
    }
    const body = JSON.stringify({ fp, iat });
    req.resume();
    res.writeHead(token ? 200 : 401, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  server.keepAliveTimeout = 65_000;
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function main(): Promise<void> {
  const upstream = await startUpstream();
  const dispatcher = new Agent({ keepAliveTimeout: 30_000, keepAliveMaxTimeout: 60_000, connections: 256 });
  let sessions: SessionState[] = [];
  let start: StartMessage | undefined;
  let stopped = false;
  const timers = new Set<NodeJS.Timeout>();
  let inFlight = 0;
  const totals = { requests: 0, ok: 0, tokenChanges: 0, earlyChanges: 0, splitTicks: 0, staleTokens: 0, skippedTicks: 0 };
  let window = { requests: 0, ok: 0, failures: {} as Record<string, number>, latencies: [] as number[], tokenChanges: 0, skippedTicks: 0 };
  const failureTimes: Array<{ at: number; status: string }> = [];

  const fail = (status: string) => {
    window.failures[status] = (window.failures[status] ?? 0) + 1;
    failureTimes.push({ at: Date.now(), status });
  };

  async function call(session: SessionState, base: string): Promise<{ fp: string; iat: number } | undefined> {
    const started = performance.now();
    inFlight++;
    try {
      const res = await request(`${base}/api/soak`, {
        dispatcher,
        headers: { cookie: session.cookie, 'x-csrf': '1' },
        signal: AbortSignal.timeout(start?.requestTimeoutMs ?? 10_000),
      });
      const text = await res.body.text();
      window.latencies.push(performance.now() - started);
      window.requests++;
      totals.requests++;
      if (res.statusCode === 200) {
        window.ok++;
        totals.ok++;
        return JSON.parse(text) as { fp: string; iat: number };
      }
      if (res.statusCode === 401) session.lost = true;
      fail(`${res.statusCode} ${/"error":"(\w+)"/.exec(text)?.[1] ?? ''}`.trim());
    } catch (err) {
      window.latencies.push(performance.now() - started);
      window.requests++;
      totals.requests++;
      const e = err as Error & { code?: string | number; cause?: { code?: string } };
      fail(e.name === 'TimeoutError' ? 'error timeout' : `error ${e.cause?.code ?? (typeof e.code === 'string' ? e.code : e.name)}`);
    } finally {
      inFlight--;
    }
    return undefined;
  }

  function observe(session: SessionState, { fp, iat }: { fp: string; iat: number }): void {
    if (fp === session.current) return;
    // Replaced already, or issued before the current one (seen late, e.g. the login's token
    // arriving after its successor in the same tick).
    if (session.replaced.has(fp) || (session.current !== undefined && iat > 0 && iat < session.currentIat)) {
      totals.staleTokens++;
      return;
    }
    if (session.current !== undefined) {
      session.replaced.add(session.current);
      session.changes++;
      totals.tokenChanges++;
      window.tokenChanges++;
      // Issue times, not arrival times: a slow answer must not look like an early refresh.
      if (start && iat > 0 && session.currentIat > 0 && (iat - session.currentIat) * 1000 < start.refreshPeriodMs - 1_000)
        totals.earlyChanges++;
    } else if (iat * 1000 > session.loggedInAt) {
      // The login's token was refreshed before any call carried it back: that is a change too.
      session.changes++;
      totals.tokenChanges++;
      window.tokenChanges++;
    }
    session.current = fp;
    session.currentIat = iat;
  }

  async function tick(index: number): Promise<void> {
    if (!start || stopped) return;
    const session = sessions[index] as SessionState;
    if (session.busy) {
      totals.skippedTicks++;
      window.skippedTicks++;
      return;
    }
    session.busy = true;
    const n = start.gateways.length;
    const [a, b] = await Promise.all([
      call(session, start.gateways[index % n] as string),
      call(session, start.gateways[(index + 1) % n] as string),
    ]);
    session.busy = false;
    if (a && b && a.fp !== b.fp) totals.splitTicks++;
    for (const seen of [a, b]) if (seen) observe(session, seen);
  }

  process.on('message', (message: ToLoad) => {
    if (message.type === 'start') {
      start = message;
      sessions = message.cookies.map((cookie, i) => ({
        cookie,
        loggedInAt: message.loggedInAt[i] ?? 0,
        currentIat: 0,
        replaced: new Set(),
        changes: 0,
        lost: false,
        busy: false,
      }));
      sessions.forEach((_, index) => {
        const first = setTimeout(() => {
          timers.delete(first);
          void tick(index);
          const every = setInterval(() => void tick(index), message.intervalMs);
          timers.add(every);
        }, Math.random() * message.intervalMs);
        timers.add(first);
      });
    } else if (message.type === 'stats') {
      const sorted = window.latencies.sort((x, y) => x - y);
      send({
        type: 'stats',
        at: Date.now(),
        requests: window.requests,
        ok: window.ok,
        failures: window.failures,
        p50: quantile(sorted, 0.5),
        p99: quantile(sorted, 0.99),
        max: sorted.at(-1) ?? 0,
        tokenChanges: window.tokenChanges,
        inFlight,
        skippedTicks: window.skippedTicks,
      });
      window = { requests: 0, ok: 0, failures: {}, latencies: [], tokenChanges: 0, skippedTicks: 0 };
    } else if (message.type === 'stop') {
      stopped = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      const waitIdle = async () => {
        const deadline = Date.now() + 15_000;
        while (inFlight > 0 && Date.now() < deadline) await new Promise((done) => setTimeout(done, 50));
      };
      void waitIdle().then(async () => {
        const changes = sessions.map((s) => s.changes).sort((x, y) => x - y);
        send({
          type: 'report',
          sessions: sessions.length,
          requests: totals.requests,
          ok: totals.ok,
          failureTimes,
          tokenChanges: totals.tokenChanges,
          earlyChanges: totals.earlyChanges,
          splitTicks: totals.splitTicks,
          staleTokens: totals.staleTokens,
          sessionsWithoutChange: sessions.filter((s) => s.changes === 0).length,
          sessionsLost: sessions.filter((s) => s.lost).length,
          changesPerSession: { min: changes[0] ?? 0, median: quantile(changes, 0.5), max: changes.at(-1) ?? 0 },
          skippedTicks: totals.skippedTicks,
        });
        await dispatcher.close();
        upstream.closeAllConnections();
        upstream.close();
      });
    }
  });
  process.once('disconnect', () => process.exit(0));
  send({ type: 'ready', upstreamUrl: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}` });
}

void main();
