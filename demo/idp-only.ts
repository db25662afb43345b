/**
 * `npm run idp`: only the embedded IdP (fixtures/idp, oidc-provider) and the demo's sample API,
 * no gateway: for trying the real gateway CLI against a real Redis and a real proxy
 * (docs/deployment.md, "Behind nginx"). Prints the issuer, the client id and secret, the users
 * and a configuration fragment for the gateway.
 *
 *   PUBLIC_URL     the gateway's publicUrl (the proxy's origin); comma-separated for several.
 *                  Default http://localhost:8080. The IdP accepts `<PUBLIC_URL>/auth/callback`
 *                  as redirect URI and sends back-channel logouts to `/auth/backchannel-logout`.
 *   IDP_PORT       default 9000 (0: a free port); the IdP listens on 127.0.0.1
 *   IDP_HOST       127.0.0.1 (default) or localhost: the host in the issuer URL
 *   CLIENT_ID      default bff-gateway
 *   CLIENT_SECRET  default: random, printed
 *   API_PORT       the sample API's port, default 0 (a free one)
 *
 * The gateway accepts an http issuer only on loopback, so the gateway runs on this machine.
 */
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { DEMO_OTP } from '../fixtures/idp/idp-acr.ts';
import { startIdp } from '../fixtures/idp/idp.ts';
import { startApi } from './api.ts';

const AUDIENCE = 'http://api.local';
const PASSWORD = 'demo';

function portFrom(name: string, fallback: number): number {
  const text = process.env[name];
  const port = text === undefined || text === '' ? fallback : Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`${name} must be a port number, got ${text}`);
  return port;
}

function originsFrom(text: string): string[] {
  return text.split(',').map((part) => {
    const url = new URL(part.trim());
    if (url.origin !== part.trim().replace(/\/$/, '')) throw new Error(`PUBLIC_URL must be origins (scheme, host, port), got ${part}`);
    return url.origin;
  });
}

async function main(): Promise<void> {
  const origins = originsFrom(process.env.PUBLIC_URL || 'http://localhost:8080');
  const host = process.env.IDP_HOST === 'localhost' ? 'localhost' : '127.0.0.1';
  const clientId = process.env.CLIENT_ID || 'bff-gateway';
  const clientSecret = process.env.CLIENT_SECRET || randomBytes(24).toString('base64url');
  const idp = await startIdp({
    port: portFrom('IDP_PORT', 9000),
    host,
    clientId,
    clientSecret,
    redirectUris: origins.map((origin) => `${origin}/auth/callback`),
    postLogoutRedirectUris: origins.map((origin) => `${origin}/`),
    ...(origins.length === 1 ? { backchannelLogoutUri: `${origins[0]}/auth/backchannel-logout` } : {}),
    audience: AUDIENCE,
    demoPassword: PASSWORD,
    accountClaims: { alice: { groups: ['admins'] }, bob: { groups: ['staff'] } },
  });
  const api = await startApi({ issuer: idp.issuer, jwksUri: `${idp.issuer}/jwks`, audience: AUDIENCE, port: portFrom('API_PORT', 0) });

  console.log(
    [
      '',
      '  embedded IdP (oidc-provider) is running',
      '',
      `    issuer         ${idp.issuer}`,
      `    client id      ${clientId}`,
      `    client secret  ${clientSecret}`,
      `    redirect URIs  ${origins.map((origin) => `${origin}/auth/callback`).join(' ')}`,
      `    users          any login name, password "${PASSWORD}" (alice: groups [admins], bob: groups [staff]);`,
      `                   email <login>@example.com; one-time code ${DEMO_OTP} when acr mfa is asked for`,
      `    access tokens  JWTs for audience ${AUDIENCE} (scope api), keys at ${idp.issuer}/jwks`,
      `    sample API     ${api.url}/api/hello (verifies those JWTs)`,
      '',
      '  for the gateway configuration:',
      '',
      `    publicUrl: ${origins[0]}`,
      '    oidc:',
      `      issuer: ${idp.issuer}`,
      `      clientId: ${clientId}`,
      `      clientSecret: ${clientSecret}`,
      '      scopes: [openid, profile, email, offline_access, api]',
      '    routes:',
      `      - { path: /api, upstream: ${api.url}, token: user }`,
      '',
      '  Ctrl-C stops it; logins and sessions at the IdP are kept in memory only.',
      '',
    ].join('\n'),
  );

  let stopping = false;
  const stop = () => {
    if (stopping) process.exit(130);
    stopping = true;
    Promise.all([idp.close(), api.close()]).then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    const message = (err as NodeJS.ErrnoException)?.code === 'EADDRINUSE' ? `${(err as Error).message}: set IDP_PORT` : String(err);
    console.error(`IdP failed to start: ${message}`);
    process.exit(1);
  });
}
