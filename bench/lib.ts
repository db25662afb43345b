/**
 * Shared benchmark plumbing: run wrk against a URL and parse its latency report, start child
 * processes and wait for the port they print, write markdown tables. Benchmarks run every
 * contender side by side in the same run, interleaved over rounds, and report ratios to a
 * baseline — absolute numbers on a shared 2-core machine mean little, ratios do.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';

export interface WrkResult {
  rps: number;
  p50ms: number;
  p99ms: number;
  /** Non-2xx/3xx answers plus socket errors (wrk counts a 3xx as a success). */
  errors: number;
  /** Requests completed, as wrk counted them. */
  requests: number;
  /** CPU time wrk itself used (user + system), in clock ticks (see clockTicks()). */
  cpuTicks: number;
}

function toMs(value: string): number {
  const match = /^([\d.]+)(us|ms|s)$/.exec(value.trim());
  if (!match) return Number.NaN;
  const n = Number(match[1]);
  return match[2] === 'us' ? n / 1000 : match[2] === 's' ? n * 1000 : n;
}

export async function wrk(
  url: string,
  options: { seconds: number; connections: number; headers?: Record<string, string> },
): Promise<WrkResult> {
  const args = ['-t1', `-c${options.connections}`, `-d${options.seconds}s`, '--latency'];
  for (const [name, value] of Object.entries(options.headers ?? {})) args.push('-H', `${name}: ${value}`);
  args.push(url);
  // wrk runs under a shell that, once it has reaped wrk, prints its own /proc stat line: its
  // cutime + cstime are then exactly wrk's CPU time (the load generator's cost is reported).
  const script = 'wrk "$@"; status=$?; echo; echo "WRKSTAT $(cat /proc/$$/stat)"; exit $status';
  const child = spawn('sh', ['-c', script, 'sh', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (chunk) => (out += chunk));
  await once(child, 'exit');
  const stat = /WRKSTAT .*\) (.*)/.exec(out)?.[1]?.split(' ') ?? [];
  const cpuTicks = Number(stat[13] ?? Number.NaN) + Number(stat[14] ?? Number.NaN);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? Number.NaN);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? Number.NaN);
  const p50 = /\s50%\s+([\d.]+\w+)/.exec(out)?.[1] ?? '';
  const p99 = /\s99%\s+([\d.]+\w+)/.exec(out)?.[1] ?? '';
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = non2xx + (socketErrors ? socketErrors.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0);
  return { rps, p50ms: toMs(p50), p99ms: toMs(p99), errors, requests, cpuTicks };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Starts `node --import tsx <script> ...args`, resolves once it prints `LISTENING <port>`. */
export async function startNodeProcess(
  script: string,
  args: string[] = [],
  env: NodeJS.ProcessEnv = {},
): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, ...env },
  });
  const port = await new Promise<number>((resolve, reject) => {
    let buffered = '';
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString();
      const match = /LISTENING (\d+)/.exec(buffered);
      if (match) {
        child.stdout?.off('data', onData);
        child.stdout?.resume();
        resolve(Number(match[1]));
      }
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}`)));
  });
  return { child, port };
}

export async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  child.kill('SIGTERM');
  await Promise.race([once(child, 'exit'), new Promise((resolve) => setTimeout(resolve, 3000))]);
  if (child.exitCode === null) child.kill('SIGKILL');
}

export interface Row {
  name: string;
  results: WrkResult[];
}

export function table(rows: Row[], baseline: string, note: string): string {
  const base = rows.find((row) => row.name === baseline);
  const baseRps = median(base?.results.map((r) => r.rps) ?? [1]);
  const baseP50 = median(base?.results.map((r) => r.p50ms) ?? [1]);
  const lines = [note, '', `| contender | req/s (median) | vs ${baseline} | p50 ms | p99 ms | errors |`, '|---|---:|---:|---:|---:|---:|'];
  for (const row of rows) {
    const rps = median(row.results.map((r) => r.rps));
    const p50 = median(row.results.map((r) => r.p50ms));
    const p99 = median(row.results.map((r) => r.p99ms));
    const errors = row.results.reduce((sum, r) => sum + r.errors, 0);
    lines.push(
      `| ${row.name} | ${rps.toFixed(0)} | ${(rps / baseRps).toFixed(2)}× (p50 ${(p50 / baseP50).toFixed(2)}×) | ${p50.toFixed(2)} | ${p99.toFixed(2)} | ${errors} |`,
    );
  }
  return lines.join('\n');
}
