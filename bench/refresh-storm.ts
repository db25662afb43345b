/**
 * Refresh storm: what a burst of concurrent requests of ONE session costs at the moment its
 * access token enters the refresh window, over 1 and 3 real gateway processes (the CLI)
 * sharing one redis-server, against the embedded IdP (refresh-token rotation on).
 *
 *   node --import tsx bench/refresh-storm.ts [--rounds 3] [--sizes 50,200,1000]
 *
 * Goals: 1 IdP refresh call per expiry, and p99 latency of the storm's requests within one
 * IdP refresh round trip + 20 ms. The round trip is the gateway's own measurement of that
 * storm's refresh (bff_token_refresh_duration_seconds). For context, the same burst is also
 * sent while the token is fresh (no refresh): that is what the machine costs without one.
 * Everything runs on loopback; all loops are bounded. Writes bench/results/refresh-storm.md.
 */
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Agent, fetch as undiciFetch } from 'undici';
import { login } from '../test/support/login.ts';
import { metricValue, startProcessWorld, type ProcessWorld } from '../test/support/processes.ts';
import { apiHeaders } from '../test/support/world.ts';

const TOKEN_TTL_S = 40;
const WINDOW_S = 26;
const DUE_AFTER_MS = (TOKEN_TTL_S - WINDOW_S) * 1000 + 250;
// Both bursts follow the same idle gap, longer than the upstream's keep-alive timeout (Node's
// default 5 s): otherwise one burst would find warm upstream connections and the other not.
const IDLE_MS = 6_000;
const OUTPUT = new URL('./results/refresh-storm.md', import.meta.url);

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    sizes: { type: 'string', default: '50,200,1000' },
    'load-generator': { type: 'boolean', default: false },
  },
});
const ROUNDS = Math.min(Math.max(Number(values.rounds), 1), 10);
const SIZES = String(values.sizes)
  .split(',')
  .map(Number)
  .filter((n) => n > 0 && n <= 5000);
const INSTANCE_COUNTS = [1, 3];

const sleep = (ms: number) => new Promise((done) => setTimeout(done, Math.max(0, ms)));
const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? Number.NaN;
const median = (xs: number[]) =>
  quantile(
    [...xs].sort((a, b) => a - b),
    0.5,
  );

interface Burst {
  p50: number;
  p99: number;
  max: number;
  /** status (or "error ...") -> count, for everything that was not a 200 */
  failures: Map<string, number>;
}

interface BurstRequest {
  urls: string[];
  cookieHeader: string;
  n: number;
}

interface BurstReply {
  latencies: number[];
  statuses: string[];
}

/**
 * The load generator is a child process (this file with --load-generator): the IdP and the
 * upstream live on the bench process's event loop, and a thousand responses being parsed there
 * would otherwise delay the very IdP round trip being measured.
 */
function runLoadGenerator(): void {
  // Connections stay open between the baseline and the storm, so both measure requests, not
  // TCP handshakes.
  const dispatcher = new Agent({ keepAliveTimeout: 60_000, keepAliveMaxTimeout: 60_000, connections: null });
  process.once('disconnect', () => process.exit(0));
  process.on('message', async ({ urls, cookieHeader, n }: BurstRequest) => {
    const results = await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const started = performance.now();
        const res = await undiciFetch(`${urls[i % urls.length]}/api/echo?i=${i}`, { headers: apiHeaders(cookieHeader), dispatcher }).catch(
          (err: Error) => err,
        );
        if (res instanceof Error)
          return { ms: performance.now() - started, status: `error ${(res.cause as { code?: string } | undefined)?.code ?? res.message}` };
        const body = await res.text().catch(() => '');
        const code = res.status === 200 ? '' : ` ${(/"error":"(\w+)"/.exec(body) ?? [])[1] ?? ''}`;
        return { ms: performance.now() - started, status: `${res.status}${code}` };
      }),
    );
    process.send?.({ latencies: results.map((r) => r.ms), statuses: results.map((r) => r.status) } satisfies BurstReply);
  });
}

let loadGenerator: ChildProcess | undefined;

function burst(world: ProcessWorld, cookieHeader: string, n: number): Promise<Burst> {
  loadGenerator ??= fork(fileURLToPath(import.meta.url), ['--load-generator'], { execArgv: ['--import', 'tsx'] });
  const worker = loadGenerator;
  return new Promise((resolve, reject) => {
    worker.once('exit', reject);
    worker.once('message', (message) => {
      const { latencies, statuses } = message as BurstReply;
      worker.off('exit', reject);
      const sorted = [...latencies].sort((a, b) => a - b);
      const failures = new Map<string, number>();
      for (const status of statuses) if (status !== '200') failures.set(status, (failures.get(status) ?? 0) + 1);
      resolve({ p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), max: sorted.at(-1) ?? Number.NaN, failures });
    });
    worker.send({ urls: world.gateways.map((g) => g.url), cookieHeader, n } satisfies BurstRequest);
  });
}

async function refreshHistogram(world: ProcessWorld): Promise<{ sum: number; count: number }> {
  const texts = await Promise.all(world.gateways.map((g) => g.metrics()));
  return {
    sum: texts.reduce((total, text) => total + metricValue(text, 'bff_token_refresh_duration_seconds_sum'), 0),
    count: texts.reduce((total, text) => total + metricValue(text, 'bff_token_refresh_duration_seconds_count'), 0),
  };
}

interface Round {
  calls: number;
  rttMs: number;
  storm: Burst;
  baseline: Burst;
  baselineCalls: number;
}

async function round(world: ProcessWorld, n: number): Promise<Round> {
  // Two sessions: `fresh` for the baseline (its token needs no refresh), `due` for the storm.
  const loggedInAt = Date.now();
  const due = await login(world.publicUrl);
  const fresh = await login(world.publicUrl);
  await sleep(loggedInAt + IDLE_MS - Date.now());
  const beforeBaseline = world.idp.counters.refreshGrants;
  const baseline = await burst(world, fresh.cookieHeader, n);
  const baselineCalls = world.idp.counters.refreshGrants - beforeBaseline;
  await sleep(Math.max(loggedInAt + DUE_AFTER_MS, Date.now() + IDLE_MS) - Date.now());
  const histogramBefore = await refreshHistogram(world);
  const grantsBefore = world.idp.counters.refreshGrants;
  const storm = await burst(world, due.cookieHeader, n);
  const calls = world.idp.counters.refreshGrants - grantsBefore;
  const histogramAfter = await refreshHistogram(world);
  const timed = histogramAfter.count - histogramBefore.count;
  const rttMs = timed > 0 ? ((histogramAfter.sum - histogramBefore.sum) / timed) * 1000 : Number.NaN;
  return { calls, rttMs, storm, baseline, baselineCalls };
}

function failureText(rounds: Round[]): string {
  const total = new Map<string, number>();
  for (const r of rounds)
    for (const [status, count] of [...r.storm.failures, ...r.baseline.failures]) total.set(status, (total.get(status) ?? 0) + count);
  const extra = rounds.reduce((sum, r) => sum + r.baselineCalls, 0);
  if (extra > 0) total.set('refreshes during baseline', extra);
  return total.size === 0 ? 'none' : [...total].map(([status, count]) => `${count}× ${status}`).join(', ');
}

const fmt = (ms: number) => (Number.isFinite(ms) ? ms.toFixed(1) : 'n/a');

const load = () =>
  loadavg()
    .map((x) => x.toFixed(1))
    .join(' / ');

async function main(): Promise<void> {
  const loadAtStart = load();
  const rows: string[] = [];
  for (const instances of INSTANCE_COUNTS) {
    const world = await startProcessWorld({
      instances,
      idp: { accessTokenTtl: TOKEN_TTL_S },
      config: { tokens: { refreshBeforeExpiry: `${WINDOW_S}s` } },
    });
    try {
      // One unmeasured round warms up JIT, connection pools and the IdP.
      await round(world, SIZES[0] ?? 50);
      for (const n of SIZES) {
        const rounds: Round[] = [];
        for (let r = 0; r < ROUNDS; r++) rounds.push(await round(world, n));
        const rtt = median(rounds.map((r) => r.rttMs));
        const p99 = median(rounds.map((r) => r.storm.p99));
        const baselineP99 = median(rounds.map((r) => r.baseline.p99));
        const row = [
          instances,
          n,
          rounds.map((r) => r.calls).join(' / '),
          fmt(rtt),
          fmt(median(rounds.map((r) => r.storm.p50))),
          fmt(p99),
          fmt(median(rounds.map((r) => r.storm.max))),
          `${fmt(median(rounds.map((r) => r.baseline.p50)))} / ${fmt(median(rounds.map((r) => r.baseline.p99)))}`,
          fmt(p99 - rtt),
          fmt(p99 - baselineP99),
          rounds.every((r) => r.calls === 1) ? 'yes' : 'NO',
          p99 <= rtt + 20 ? 'yes' : 'no',
          p99 - baselineP99 <= rtt + 20 ? 'yes' : 'no',
          failureText(rounds),
        ];
        rows.push(`| ${row.join(' | ')} |`);
        console.log(rows.at(-1));
      }
      // Why requests failed, in the gateways' own words (printed, not tabulated).
      const reasons = new Map<string, number>();
      for (const gateway of world.gateways) {
        for (const line of gateway.output) {
          const detail = /"msg":"(?:proxy )?request failed"/.test(line) ? /"detail":"([^"]*)"/.exec(line)?.[1] : undefined;
          if (detail) reasons.set(detail, (reasons.get(detail) ?? 0) + 1);
        }
      }
      if (reasons.size > 0) console.log(`failure details with ${instances} instance(s):`, Object.fromEntries(reasons));
    } finally {
      await world.close();
    }
  }

  const table = [
    '# Refresh storm',
    '',
    `Generated by \`node --import tsx bench/refresh-storm.ts\` on ${new Date().toISOString().slice(0, 10)}: Node ${process.version}, ${cpus().length} CPU cores, ` +
      `${ROUNDS} measured rounds per row (plus one warm-up per instance count), medians shown. Real gateway processes (the CLI) sharing one redis-server; ` +
      `the embedded oidc-provider IdP (refresh-token rotation, reuse detection) and the upstream share the bench process; the load generator is its own process (undici, keep-alive). ` +
      `Tokens live ${TOKEN_TTL_S} s with \`refreshBeforeExpiry: ${WINDOW_S}s\`; each round logs in two new sessions, sends the burst with one whose token is fresh ` +
      `(baseline), then with the other right after its token entered the refresh window (storm); both bursts follow the same ${IDLE_MS / 1000} s idle gap. ` +
      `Requests are spread round-robin over the instances. The round trip is the gateway's own bff_token_refresh_duration_seconds for that storm's refresh.`,
    '',
    `Machine load average (1 / 5 / 15 min) at start: ${loadAtStart}; at end: ${load()}. Absolute latencies on a shared 2-core machine mostly measure ` +
      'the machine: compare the storm with its own baseline, and read the call counts as the result that must hold anywhere.',
    '',
    'How to read it: "goal: p99 ≤ rtt + 20 ms" compares absolute latency with one IdP round trip. It can only hold where the machine serves the ' +
      'burst itself in under 20 ms, which a 2-core box running the load generator, IdP, upstream, Redis and the gateways cannot do even without a ' +
      'refresh (see the baseline). The column after it asks the question the goal is about — what the refresh adds: the extra p99 a storm costs ' +
      'over the same burst without a refresh, against one round trip + 20 ms.',
    '',
    '| instances | N | IdP refresh calls per expiry (each round) | IdP refresh round trip ms | storm p50 ms | storm p99 ms | storm max ms | baseline p50 / p99 ms (no refresh) | storm p99 − round trip ms | storm p99 − baseline p99 ms | goal: 1 call | goal: p99 ≤ rtt + 20 ms | storm p99 − baseline p99 ≤ rtt + 20 ms | not 200 |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
  writeFileSync(OUTPUT, table);
  console.log(`\nwritten to ${OUTPUT.pathname}`);
}

if (!values['load-generator']) {
  main().then(
    () => {
      loadGenerator?.kill();
      process.exit(0);
    },
    (err: unknown) => {
      console.error(err);
      loadGenerator?.kill();
      process.exit(1);
    },
  );
} else {
  runLoadGenerator();
}
