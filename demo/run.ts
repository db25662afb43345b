/**
 * `npm run demo`: the whole BFF flow on one machine with nothing but `npm ci` done.
 *   embedded IdP (oidc-provider)   127.0.0.1:9000, or the next free port
 *   sample API (verifies JWTs)     127.0.0.1:<free>
 *   SPA static files               127.0.0.1:<free>
 *   the gateway                    http://localhost:$PORT (default 8080), config/demo.yaml
 * `startDemo` is exported so the browser test can run the same stack in-process.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { pathToFileURL } from 'node:url';
import { parseConfigText, type GatewayConfig } from '../src/config/load.ts';
import { createLogger } from '../src/log.ts';
import { buildGateway, type Gateway } from '../src/server.ts';
import { startApi, type SampleApi } from './api.ts';
import { startIdp, type Idp } from '../fixtures/idp/idp.ts';
import { startSpaServer, type SpaServer } from './spa/serve.ts';

export const DEMO_USER = 'alice';
export const DEMO_PASSWORD = 'demo';
const CLIENT_ID = 'demo-spa';
const API_AUDIENCE = 'http://api.local';

export interface DemoOptions {
  /** Gateway port on localhost; 0 picks a free one. */
  port?: number;
  /** First port to try for the IdP; 0 picks a free one. */
  idpPort?: number;
  /** Gateway log level (pino); `silent` for tests. */
  logLevel?: string;
  env?: NodeJS.ProcessEnv;
}

export interface Demo {
  /** The gateway's public URL: what the browser opens. */
  url: string;
  adminUrl: string | undefined;
  idp: Idp;
  api: SampleApi;
  spa: SpaServer;
  gateway: Gateway;
  config: GatewayConfig;
  close(): Promise<void>;
}

function isAddressInUse(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === 'EADDRINUSE';
}

/** A port that was free a moment ago: the IdP must know the redirect URI before the gateway listens. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, 'localhost', () => resolve());
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (!address || typeof address === 'string') throw new Error('could not find a free port');
  return address.port;
}

async function startIdpNear(firstPort: number, options: Omit<Parameters<typeof startIdp>[0], 'port'>): Promise<Idp> {
  if (firstPort === 0) return startIdp({ ...options, port: 0 });
  for (let port = firstPort; port < firstPort + 20; port += 1) {
    try {
      return await startIdp({ ...options, port });
    } catch (err) {
      if (!isAddressInUse(err)) throw err;
    }
  }
  return startIdp({ ...options, port: 0 });
}

export async function startDemo(options: DemoOptions = {}): Promise<Demo> {
  const env = options.env ?? process.env;
  const port = options.port === 0 ? await freePort() : (options.port ?? 8080);
  const publicUrl = `http://localhost:${port}`;
  const clientSecret = randomBytes(24).toString('base64url');
  const closers: Array<() => Promise<void>> = [];
  const closeAll = async () => {
    for (const close of closers.reverse()) await close().catch(() => undefined);
  };

  try {
    const idp = await startIdpNear(options.idpPort ?? 9000, {
      clientId: CLIENT_ID,
      clientSecret,
      redirectUris: [`${publicUrl}/auth/callback`],
      postLogoutRedirectUris: [`${publicUrl}/`],
      backchannelLogoutUri: `${publicUrl}/auth/backchannel-logout`,
      audience: API_AUDIENCE,
      demoUser: DEMO_USER,
      demoPassword: DEMO_PASSWORD,
    });
    closers.push(() => idp.close());
    const api = await startApi({ issuer: idp.issuer, jwksUri: `${idp.issuer}/jwks`, audience: API_AUDIENCE });
    closers.push(() => api.close());
    const spa = await startSpaServer();
    closers.push(() => spa.close());

    const text = await readFile(new URL('../config/demo.yaml', import.meta.url), 'utf8');
    const config = parseConfigText(text, {
      ...env,
      PORT: String(port),
      DEMO_ISSUER: idp.issuer,
      DEMO_CLIENT_SECRET: clientSecret,
      DEMO_API_URL: api.url,
      DEMO_SPA_URL: spa.url,
      SESSION_SECRET: env.SESSION_SECRET || randomBytes(36).toString('base64url'),
      SESSION_KEY: env.SESSION_KEY || randomBytes(32).toString('base64'),
    });

    const log = createLogger({ level: options.logLevel ?? env.LOG_LEVEL ?? 'warn' });
    const gateway = await buildGateway(config, { log });
    closers.push(() => gateway.close());
    await gateway.app.listen({ host: config.listen.host, port: config.listen.port });
    let adminUrl: string | undefined;
    if (gateway.admin && config.admin) {
      await gateway.admin.listen({ host: config.admin.host, port: config.admin.port });
      const address = gateway.admin.server.address();
      if (address && typeof address === 'object') adminUrl = `http://${config.admin.host}:${address.port}`;
    }
    gateway.start();
    await gateway.services.idp.start();

    return { url: publicUrl, adminUrl, idp, api, spa, gateway, config, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

function banner(demo: Demo): string {
  return [
    '',
    '  bff-gateway demo is running',
    '',
    `    open      ${demo.url}`,
    `    log in    ${DEMO_USER} / ${DEMO_PASSWORD}`,
    '',
    `    IdP       ${demo.idp.issuer}   (embedded oidc-provider)`,
    `    API       ${demo.api.url}   (behind ${demo.url}/api, needs a bearer JWT)`,
    `    SPA files ${demo.spa.url}   (behind ${demo.url}/)`,
    ...(demo.adminUrl ? [`    admin     ${demo.adminUrl}/healthz  /readyz  /metrics`] : []),
    '',
    '  Sessions live in memory and end when the demo stops. LOG_LEVEL=info shows gateway logs.',
    '  Press Ctrl-C to stop.',
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const port = process.env.PORT ? Number(process.env.PORT) : 8080;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`PORT must be a port number, got ${process.env.PORT}`);
  let demo: Demo;
  try {
    demo = await startDemo({ port });
  } catch (err) {
    if (isAddressInUse(err)) throw new Error(`port ${port} is in use: start with another one, e.g. PORT=8081 npm run demo`);
    throw err;
  }
  console.log(banner(demo));
  let stopping = false;
  const stop = () => {
    if (stopping) process.exit(130);
    stopping = true;
    console.log('\n  stopping…');
    demo.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(`demo failed to start: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
