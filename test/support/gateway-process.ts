/**
 * Entry for running the real CLI from TypeScript sources in a child process
 * (`node --import tsx test/support/gateway-process.ts --config FILE`), exactly as
 * bin/bff-gateway.js runs the compiled one: tests get real processes without a build step.
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
