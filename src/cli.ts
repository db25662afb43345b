/**
 * Command line (docs/http-interface.md#running-it):
 *   bff-gateway [--config FILE]            start (FILE may come from BFF_CONFIG)
 *   bff-gateway check --config FILE        validate; print every problem with its YAML path
 *   bff-gateway check --connect ...        also try the session store and the IdP's discovery
 *   bff-gateway sessions list|revoke ...   operator tools (see `sessions --help`)
 * An invalid configuration never starts a server: exit 1 with the same messages as `check`.
 * SIGTERM/SIGINT: drain — stop accepting, answer everything from then on with
 * `Connection: close`, refuse late requests with 503 shutting_down, let in-flight requests
 * finish (up to shutdownGrace) — then close the store and exit 0.
 */
import { parseArgs } from 'node:util';
import { ConfigError, loadConfigFile, type GatewayConfig } from './config/load.ts';
import { createLogger } from './log.ts';
import { runSessionsCommand } from './admin/sessions-cli.ts';
import { checkConnections } from './ops/check-connect.ts';

const USAGE = `Usage:
  bff-gateway [--config FILE]                 start the gateway (or set BFF_CONFIG)
  bff-gateway check [--connect] --config FILE validate a configuration file; --connect also
                                              tries the session store and the IdP's discovery
  bff-gateway sessions list [--sub SUB] --config FILE
  bff-gateway sessions revoke (--sub SUB | --sid IDP_SID | --handle H | --all) --config FILE
`;

/** After the grace period, how long closing may still take before the process just exits. */
const SHUTDOWN_MARGIN_MS = 2_000;

export interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
}

const defaultIo: Io = { out: (line) => process.stdout.write(`${line}\n`), err: (line) => process.stderr.write(`${line}\n`) };

async function readConfig(file: string | undefined, io: Io): Promise<GatewayConfig | undefined> {
  if (!file) {
    io.err('no configuration: pass --config FILE or set BFF_CONFIG');
    return undefined;
  }
  try {
    return await loadConfigFile(file);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const problem of err.problems) io.err(problem);
    return undefined;
  }
}

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  help: { type: 'boolean', short: 'h' },
  sub: { type: 'string' },
  sid: { type: 'string' },
  handle: { type: 'string' },
  all: { type: 'boolean' },
  connect: { type: 'boolean' },
} as const;

const VALUE_OPTIONS = new Set(['--config', '-c', '--sub', '--sid', '--handle']);

/**
 * Store handles and IdP sids are base64url, so some begin with `-`; parseArgs would take such a
 * value for an option. Values that follow a value-taking option are glued on as `--opt=value`.
 */
function glueOptionValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i] as string;
    const next = argv[i + 1];
    if (VALUE_OPTIONS.has(arg) && next !== undefined) {
      out.push(`${arg.startsWith('--') ? arg : '--config'}=${next}`);
      i += 1;
    } else {
      out.push(arg);
    }
  }
  return out;
}

export async function main(argv: string[], io: Io = defaultIo): Promise<number | undefined> {
  let parsed: ReturnType<typeof parseArgs<{ args: string[]; allowPositionals: true; options: typeof OPTIONS }>>;
  try {
    parsed = parseArgs({ args: glueOptionValues(argv), allowPositionals: true, options: OPTIONS });
  } catch (err) {
    io.err((err as Error).message);
    io.err(USAGE);
    return 1;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.out(USAGE);
    return 0;
  }
  const file = values.config ?? process.env.BFF_CONFIG;
  const command = positionals[0];
  if (command === 'check') {
    const config = await readConfig(file, io);
    if (!config) return 1;
    io.out(`${file}: configuration is valid`);
    if (values.connect) return (await checkConnections(config, io)) ? 0 : 1;
    return 0;
  }
  if (command === 'sessions') {
    const config = await readConfig(file, io);
    if (!config) return 1;
    return runSessionsCommand(config, positionals.slice(1), values, io);
  }
  if (command !== undefined) {
    io.err(`unknown command: ${command}`);
    io.err(USAGE);
    return 1;
  }
  const config = await readConfig(file, io);
  if (!config) return 1;
  await serve(config);
  return undefined;
}

async function serve(config: GatewayConfig): Promise<void> {
  const log = createLogger();
  // Loaded only to serve: the other commands never load the web server.
  const { buildGateway } = await import('./server.ts');
  const gateway = await buildGateway(config, { log });
  await gateway.app.listen({ host: config.listen.host, port: config.listen.port });
  if (gateway.admin && config.admin) await gateway.admin.listen({ host: config.admin.host, port: config.admin.port });
  gateway.start();
  log.info(
    {
      publicUrl: config.publicUrl,
      listen: config.listen,
      admin: config.admin ? { host: config.admin.host, port: config.admin.port } : undefined,
    },
    'bff-gateway started',
  );

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, graceMs: config.shutdownGraceMs }, 'shutting down: finishing in-flight requests');
    const force = setTimeout(() => {
      log.warn('shutdown grace period over: closing remaining connections');
      gateway.app.server.closeAllConnections();
      // Upgraded sockets (WebSockets) or a store that never answers must not keep us alive.
      setTimeout(() => {
        log.warn('shutdown did not complete: exiting');
        log.flush?.();
        process.exit(0);
      }, SHUTDOWN_MARGIN_MS).unref();
    }, config.shutdownGraceMs);
    force.unref();
    gateway.close().then(
      () => {
        clearTimeout(force);
        log.info('stopped');
        log.flush?.();
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'error during shutdown');
        process.exit(0);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}
