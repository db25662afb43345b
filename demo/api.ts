/**
 * The demo's sample API: a resource server that knows nothing about sessions or cookies. It
 * accepts only a bearer JWT signed by the IdP (checked against the IdP's JWKS, with issuer and
 * audience), which is exactly what the gateway attaches on `token: user` routes.
 *   GET /api/hello  -> 200 { message: "hello <sub>", claims, time }
 *   GET /api/sensitive -> the same; the gateway lets it through only after a step-up (acr mfa)
 *   anything else   -> 404; no or bad token -> 401 with WWW-Authenticate: Bearer error="invalid_token"
 */
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, jwtVerify } from 'jose';

export interface ApiOptions {
  issuer: string;
  jwksUri: string;
  audience: string;
  port?: number;
}

export interface SampleApi {
  url: string;
  /** The bearer tokens this API has accepted, newest last (tests use them to look for leaks). */
  acceptedTokens: string[];
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body, null, 2);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

export async function startApi(opts: ApiOptions): Promise<SampleApi> {
  const jwks = createRemoteJWKSet(new URL(opts.jwksUri));
  const acceptedTokens: string[] = [];

  const server = createServer((req, res) => {
    void (async () => {
      const path = new URL(req.url ?? '/', 'http://api.invalid').pathname;
      if (req.method !== 'GET' || (path !== '/api/hello' && path !== '/api/sensitive')) {
        send(res, 404, { error: 'not_found', message: 'try GET /api/hello' });
        return;
      }
      const token = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
      if (!token) {
        send(
          res,
          401,
          { error: 'invalid_token', message: 'a bearer token is required' },
          { 'www-authenticate': 'Bearer error="invalid_token"' },
        );
        return;
      }
      try {
        const { payload } = await jwtVerify(token, jwks, { issuer: opts.issuer, audience: opts.audience });
        acceptedTokens.push(token);
        const message = path === '/api/sensitive' ? `sensitive data for ${payload.sub}` : `hello ${payload.sub}`;
        send(res, 200, { message, claims: payload, time: new Date().toISOString() });
      } catch (err) {
        send(res, 401, { error: 'invalid_token', message: (err as Error).message }, { 'www-authenticate': 'Bearer error="invalid_token"' });
      }
    })().catch(() => {
      if (!res.headersSent) send(res, 500, { error: 'internal_error' });
      else res.destroy();
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    acceptedTokens,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
