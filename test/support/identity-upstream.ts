/**
 * An upstream that trusts nothing but what it can check: it records every request's header
 * lines exactly as they arrived (`rawHeaders`: names in their original spelling, repeats kept)
 * and verifies the gateway's identity assertion itself with jose against the gateway's
 * published JWKS (issuer and audience pinned). Answers `200 {"ok": true}`.
 */
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose';

export interface SeenRequest {
  method: string;
  url: string;
  rawHeaders: string[];
  headers: IncomingHttpHeaders;
  /** The assertion header's verification, when the request carried one. */
  assertion?: { ok: true; payload: JWTPayload } | { ok: false; error: string };
}

export interface IdentityUpstream {
  url: string;
  requests: SeenRequest[];
  /** Where to fetch the JWKS from, once the gateway (which needs this upstream's URL) runs. */
  useJwks(url: string): void;
  /** Header lines whose name, in any spelling (`_` for `-`, any case), is `name`. */
  linesNamed(request: SeenRequest, name: string): Array<[string, string]>;
  close(): Promise<void>;
}

export interface IdentityUpstreamOptions {
  /** Where the JWKS is published (admin `/jwks` or the public jwksPath). */
  jwksUrl?: string;
  issuer?: string;
  audience?: string;
  header?: string;
}

const canonical = (name: string) => name.toLowerCase().replace(/_/g, '-');

export async function startIdentityUpstream(options: IdentityUpstreamOptions = {}): Promise<IdentityUpstream> {
  let jwks = options.jwksUrl ? createRemoteJWKSet(new URL(options.jwksUrl)) : undefined;
  const header = options.header ?? 'x-identity-assertion';
  const requests: SeenRequest[] = [];
  const server = createServer(async (req, res) => {
    const seen: SeenRequest = { method: req.method ?? '', url: req.url ?? '', rawHeaders: [...req.rawHeaders], headers: req.headers };
    const jwt = req.headers[header];
    if (jwks && typeof jwt === 'string') {
      seen.assertion = await jwtVerify(jwt, jwks, { issuer: options.issuer, audience: options.audience }).then(
        ({ payload }) => ({ ok: true as const, payload }),
        (err: Error) => ({ ok: false as const, error: err.message }),
      );
    }
    requests.push(seen);
    req.resume();
    const body = JSON.stringify({ ok: true });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    useJwks(url) {
      jwks = createRemoteJWKSet(new URL(url));
    },
    linesNamed(request, name) {
      const lines: Array<[string, string]> = [];
      for (let i = 0; i < request.rawHeaders.length; i += 2) {
        if (canonical(request.rawHeaders[i] as string) === canonical(name))
          lines.push([request.rawHeaders[i] as string, request.rawHeaders[i + 1] as string]);
      }
      return lines;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
