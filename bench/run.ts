/**
 * `npm run bench`: every benchmark in turn, each in its own process so none inherits another's
 * warm state. Results land in bench/results/; see bench/README.md for what each one measures.
 */
import { spawnSync } from 'node:child_process';

const here = new URL('.', import.meta.url).pathname;
const scripts = ['proxy-libraries.ts', 'gateway-overhead.ts', 'refresh-storm.ts'];
let failed = 0;
for (const script of scripts) {
  console.log(`\n=== ${script}`);
  const result = spawnSync(process.execPath, ['--import', 'tsx', `${here}${script}`, ...process.argv.slice(2)], { stdio: 'inherit' });
  if (result.status !== 0) failed += 1;
}
process.exit(failed > 0 ? 1 : 0);
