import { IncomingMessage, type ServerResponse } from 'node:http';
import type { Idp } from './idp.ts';
import type { InteractionHandler } from './idp-interactions.ts';

// The IdP's front door: instrumentation and fault injection happen here, before a request
// reaches oidc-provider, so faults look exactly like a misbehaving server to the gateway.

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';

export interface FrontOptions {
  idp: Idp;
  issuer: string;
  routes: { token: string; revocation: string };
  discoveryPath: string;
  providerCallback: (req: IncomingMessage, res: ServerResponse) => void;
  interaction: InteractionHandler;
}

export interface Front {
  handle(req: IncomingMessage, res: ServerResponse): void;
  /** Cancels pending fault delays so closing the IdP never waits on them. */
  dispose(): void;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

// The front consumes the token request body to record it; oidc-provider must still read a body
// stream (handing it a pre-parsed req.body works but logs a warning), so it gets a fresh
// IncomingMessage over the same socket carrying the same head and the buffered body.
function replay(req: IncomingMessage, body: Buffer): IncomingMessage {
  const copy = new IncomingMessage(req.socket);
  copy.method = req.method;
  copy.url = req.url;
  copy.headers = req.headers;
  copy.rawHeaders = req.rawHeaders;
  copy.httpVersion = req.httpVersion;
  copy.httpVersionMajor = req.httpVersionMajor;
  copy.httpVersionMinor = req.httpVersionMinor;
  copy.complete = true;
  copy.push(body);
  copy.push(null);
  return copy;
}

export function createFront({ idp, issuer, routes, discoveryPath, providerCallback, interaction }: FrontOptions): Front {
  const timers = new Set<NodeJS.Timeout>();
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        resolve();
      }, ms);
      timers.add(timer);
    });

  const handleToken = async (req: IncomingMessage, res: ServerResponse): Promise<IncomingMessage | undefined> => {
    const body = await readBody(req);
    const params = Object.fromEntries(new URLSearchParams(body.toString('utf8')));
    const grantType = params.grant_type ?? '';
    idp.tokenRequests.push({ grantType, params });
    if (grantType === 'refresh_token') idp.counters.refreshGrants += 1;
    else if (grantType === 'authorization_code') idp.counters.authorizationCodeGrants += 1;
    else if (grantType === 'client_credentials') idp.counters.clientCredentialsGrants += 1;
    else if (grantType === TOKEN_EXCHANGE) idp.counters.tokenExchanges += 1;

    if (idp.faults.tokenDelayMs > 0) await sleep(idp.faults.tokenDelayMs);
    switch (idp.faults.token) {
      case 'http503':
        res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '1' }).end('service unavailable\n');
        return undefined;
      case 'reset':
        req.socket.destroy();
        return undefined;
      case 'bare400':
        res.writeHead(400, { 'content-length': '0' }).end();
        return undefined;
      case 'invalid_grant':
        res.writeHead(400, { 'content-type': 'application/json', 'cache-control': 'no-store' })
          .end(JSON.stringify({ error: 'invalid_grant', error_description: 'forced' }));
        return undefined;
      default:
        return replay(req, body);
    }
  };

  const route = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = new URL(req.url ?? '/', issuer).pathname;
    if (path.startsWith('/interaction/')) {
      await interaction(req, res, decodeURIComponent(path.slice('/interaction/'.length)));
      return;
    }
    if (path === discoveryPath) {
      idp.counters.discovery += 1;
      if (idp.faults.discovery === 'http503') {
        res.writeHead(503, { 'content-type': 'text/plain' }).end('service unavailable\n');
        return;
      }
    }
    if (path === routes.revocation && req.method === 'POST') {
      idp.counters.revocations += 1;
      if (idp.faults.revocation === 'http503') {
        res.writeHead(503, { 'content-type': 'text/plain' }).end('service unavailable\n');
        return;
      }
      if (idp.faults.revocation === 'reset') {
        req.socket.destroy();
        return;
      }
    }
    if (path === routes.token && req.method === 'POST') {
      const replayed = await handleToken(req, res);
      if (replayed) providerCallback(replayed, res);
      return;
    }
    providerCallback(req, res);
  };

  return {
    handle(req, res) {
      route(req, res).catch((err: unknown) => {
        if (!res.headersSent && !res.destroyed) {
          res.writeHead(500, { 'content-type': 'text/plain' }).end(`idp front error: ${String(err)}\n`);
        } else {
          res.destroy();
        }
      });
    },
    dispose() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
    },
  };
}
