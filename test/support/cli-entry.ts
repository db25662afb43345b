/**
 * The real CLI from TypeScript sources, for child-process tests:
 * `node --import tsx test/support/cli-entry.ts [check] --config FILE`. Mirrors bin/bff-gateway.js
 * (which runs the compiled CLI), so tests need no build step. A returned code becomes the exit
 * code; `undefined` means a server is running and the process lives until a signal.
 */
import { main } from '../../src/cli.ts';

main(process.argv.slice(2)).then(
  (code) => {
    if (typeof code === 'number') process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  },
);
