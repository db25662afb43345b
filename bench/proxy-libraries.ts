/**
 * Which http-proxy-API library sits behind src/proxy/forward.ts? The same minimal proxy built
 * with each candidate (http-proxy 1.18.1, unmaintained since 2020; http-proxy-3; httpxy),
 * measured side by side against the same upstream, interleaved over rounds, with the direct
 * upstream as the baseline. Writes bench/results/proxy-libraries.md.
 *
 * Usage: node --import tsx bench/proxy-libraries.ts [seconds=5] [rounds=3] [connections=32]
 */
import { writeFile } from 'node:fs/promises';
import { startNodeProcess, stopProcess, table, wrk, type Row } from './lib.ts';

const [seconds = 5, rounds = 3, connections = 32] = process.argv.slice(2).map(Number);
const here = new URL('.', import.meta.url).pathname;

const upstream = await startNodeProcess(`${here}upstream-server.ts`);
const contenders = ['http-proxy', 'http-proxy-3', 'httpxy'];
const proxies = await Promise.all(contenders.map((name) => startNodeProcess(`${here}library-proxy.ts`, [name, String(upstream.port)])));
const targets = [
  { name: 'direct', port: upstream.port },
  ...contenders.map((name, i) => ({ name, port: (proxies[i] as { port: number }).port })),
];

const rows: Row[] = targets.map((target) => ({ name: target.name, results: [] }));
try {
  for (let round = 0; round < rounds; round += 1) {
    for (const [index, target] of targets.entries()) {
      await wrk(`http://127.0.0.1:${target.port}/small`, { seconds: 1, connections }); // warm-up
      (rows[index] as Row).results.push(await wrk(`http://127.0.0.1:${target.port}/small`, { seconds, connections }));
    }
  }
} finally {
  await Promise.all([upstream, ...proxies].map(({ child }) => stopProcess(child)));
}

const report = [
  '# Proxy library comparison',
  '',
  table(
    rows,
    'direct',
    `wrk -t1 -c${connections}, ${seconds}s per run, median of ${rounds} interleaved rounds, 200-byte JSON, loopback, ${new Date().toISOString().slice(0, 10)}.`,
  ),
  '',
].join('\n');
await writeFile(`${here}results/proxy-libraries.md`, report);
console.log(report);
