/**
 * `npm run bench`: the side-by-side comparison (bench/side-by-side.ts), which takes its options
 * (`npm run bench -- --seconds 2 --rounds 1`). `npm run bench -- <script> [args]` runs one of
 * the other benchmarks; `npm run bench -- all` runs every benchmark in turn, each with its
 * defaults. Each runs in its own process so none inherits another's warm state. Results land in
 * bench/results/; see bench/README.md for what each one measures.
 */
import { spawnSync } from 'node:child_process';

const here = new URL('.', import.meta.url).pathname;
const scripts = ['side-by-side', 'proxy-libraries', 'gateway-overhead', 'refresh-storm'];
const [first, ...rest] = process.argv.slice(2);
const name = first?.replace(/\.ts$/, '');
const runs: Array<[string, string[]]> =
  name === 'all'
    ? scripts.map((script) => [script, []])
    : name !== undefined && scripts.includes(name)
      ? [[name, rest]]
      : [['side-by-side', process.argv.slice(2)]];

let failed = 0;
for (const [script, args] of runs) {
  console.log(`\n=== ${script}.ts ${args.join(' ')}`);
  const result = spawnSync(process.execPath, ['--import', 'tsx', `${here}${script}.ts`, ...args], { stdio: 'inherit' });
  if (result.status !== 0) failed += 1;
}
process.exit(failed > 0 ? 1 : 0);
