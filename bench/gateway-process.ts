/** Runs the real gateway CLI in its own process for benchmarks: `gateway-process.ts --config FILE`. */
import { main } from '../src/cli.ts';

const code = await main(process.argv.slice(2));
if (typeof code === 'number') process.exit(code);
