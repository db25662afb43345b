import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import { calculateJwkThumbprint, createRemoteJWKSet, EmbeddedJWK, jwtVerify, type JWTPayload } from 'jose';
import { WebSocketServer, type WebSocket } from 'ws';

export interface AuthResult {
  ok: boolean;
  claims?: JWTPayload;
  error?: string;
  /** Present only for `Authorization: DPoP`: whether the DPoP proof verifies (RFC 9449 section 4.3). */
  dpop?: { ok: boolean; error?: string; proof?: JWTPayload };
}

export interface UpstreamRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** Present only when the request carried `Authorization: Bearer` and a verifier is configured. */
  auth?: AuthResult;
}

export interface UpstreamOptions {
  issuer?: string;
  jwksUri?: string;
  audience?: string;
}

export interface Upstream {
  url: string;
  port: number;
  requests: UpstreamRequest[];
  /** Bearer tokens answered with 401 invalid_token even when their signature verifies. */
  rejectTokens: Set<string>;
  /**
   * When set, /protected answers a DPoP request whose proof lacks this nonce with 401
   * `use_dpop_nonce` and `DPoP-Nonce: <value>`.
   */
  requireDpopNonce: string | undefined;
  close(): Promise<void>;
}

/** The access token in an `Authorization: Bearer|DPoP` header, or '' when there is none. */
export function bearerOf(headers: IncomingHttpHeaders): string {
  const match = /^(?:Bearer|DPoP)\s+(.+)$/i.exec(headers.authorization ?? '');
  return match?.[1]?.trim() ?? '';
}

/** The token the upstream received on the first request whose URL ends with `marker`. */
export function bearerSeen(upstream: Pick<Upstream, 'requests'>, marker: string): string {
  const seen = upstream.requests.find((r) => r.url.endsWith(marker));
  return seen ? bearerOf(seen.headers) : '';
}

function isDpopScheme(headers: IncomingHttpHeaders): boolean {
  return /^DPoP\s/i.test(headers.authorization ?? '');
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

export async function startUpstream(opts: UpstreamOptions = {}): Promise<Upstream> {
  const jwks = opts.jwksUri ? createRemoteJWKSet(new URL(opts.jwksUri)) : undefined;
  const requests: UpstreamRequest[] = [];
  const rejectTokens = new Set<string>();
  const seenJtis = new Set<string>();
  let port = 0;
  const timers = new Set<NodeJS.Timeout>();
  const sockets = new Set<WebSocket>();

  const later = (ms: number, fn: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
  };

  const verify = async (token: string | undefined): Promise<AuthResult | undefined> => {
    if (token === undefined || !jwks || !opts.issuer) return undefined;
    try {
      const { payload } = await jwtVerify(token, jwks, {
        issuer: opts.issuer,
        ...(opts.audience ? { audience: opts.audience } : {}),
      });
      return { ok: true, claims: payload };
    } catch (err) {
      return { ok: false, error: (err as Error).message };
    }
  };

  /** RFC 9449 section 4.3 checks, at the URL this server was called at. */
  const verifyProof = async (
    req: IncomingMessage,
    token: string,
    claims: JWTPayload | undefined,
  ): Promise<NonNullable<AuthResult['dpop']>> => {
    const proof = req.headers.dpop;
    if (typeof proof !== 'string') return { ok: false, error: 'no single DPoP header' };
    try {
      const { payload, protectedHeader } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt' });
      const path = new URL(req.url ?? '/', 'http://upstream.invalid').pathname;
      const expectedHtu = `http://127.0.0.1:${port}${path}`;
      const ath = createHash('sha256').update(token).digest('base64url');
      const now = Math.floor(Date.now() / 1000);
      const jkt = await calculateJwkThumbprint(protectedHeader.jwk as NonNullable<typeof protectedHeader.jwk>);
      const problem =
        payload.htm !== req.method
          ? `htm ${String(payload.htm)}`
          : payload.htu !== expectedHtu
            ? `htu ${String(payload.htu)} (expected ${expectedHtu})`
            : payload.ath !== ath
              ? 'ath does not match the token'
              : typeof payload.iat !== 'number' || Math.abs(now - payload.iat) > 60
                ? 'iat out of range'
                : typeof payload.jti !== 'string' || seenJtis.has(payload.jti)
                  ? 'jti missing or replayed'
                  : (claims?.cnf as { jkt?: string } | undefined)?.jkt !== jkt
                    ? 'key does not match the token cnf.jkt'
                    : undefined;
      if (typeof payload.jti === 'string') seenJtis.add(payload.jti);
      return problem ? { ok: false, error: problem, proof: payload } : { ok: true, proof: payload };
    } catch (err) {
      return { ok: false, error: (err as Error).message };
    }
  };

  const record = async (req: IncomingMessage, body: Buffer): Promise<UpstreamRequest> => {
    const entry: UpstreamRequest = { method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, body };
    const token = bearerOf(req.headers);
    const auth = await verify(token);
    if (auth && token !== undefined && isDpopScheme(req.headers)) auth.dpop = await verifyProof(req, token, auth.claims);
    if (auth) entry.auth = auth;
    requests.push(entry);
    return entry;
  };

  const echoOf = (url: URL, entry: UpstreamRequest) => ({
    method: entry.method,
    path: url.pathname,
    url: entry.url,
    query: Object.fromEntries(url.searchParams),
    headers: entry.headers,
    body: entry.body.toString('utf8'),
    auth: entry.auth,
  });

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const body = await readBody(req);
    const entry = await record(req, body);
    const url = new URL(req.url ?? '/', 'http://upstream.invalid');
    const path = url.pathname;
    const token = bearerOf(req.headers);

    const status = /\/status\/(\d{3})$/.exec(path);
    if (status) {
      const code = Number(status[1]);
      if (code === 204 || code === 304) res.writeHead(code).end();
      else sendJson(res, code, { status: code });
      return;
    }
    if (path.endsWith('/protected')) {
      if (!jwks || !opts.issuer) {
        sendJson(res, 500, { error: 'upstream started without issuer/jwksUri: cannot verify tokens' });
      } else if (
        entry.auth?.dpop &&
        upstream.requireDpopNonce !== undefined &&
        entry.auth.dpop.proof?.nonce !== upstream.requireDpopNonce
      ) {
        res.writeHead(401, {
          'www-authenticate': 'DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"',
          'dpop-nonce': upstream.requireDpopNonce,
          'content-type': 'application/json',
        });
        res.end(JSON.stringify({ error: 'use_dpop_nonce' }));
      } else if (!entry.auth?.ok || (entry.auth.dpop && !entry.auth.dpop.ok) || (token !== undefined && rejectTokens.has(token))) {
        const scheme = isDpopScheme(req.headers) ? 'DPoP' : 'Bearer';
        res.writeHead(401, { 'www-authenticate': `${scheme} error="invalid_token"`, 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'invalid_token', detail: entry.auth?.error ?? 'token rejected' }));
      } else {
        sendJson(res, 200, echoOf(url, entry));
      }
      return;
    }
    if (path.endsWith('/slow')) {
      const ms = Number(url.searchParams.get('ms') ?? '1000');
      later(ms, () => {
        if (!res.destroyed) sendJson(res, 200, { sleptMs: ms });
      });
      return;
    }
    if (path.endsWith('/reset')) {
      req.socket.destroy();
      return;
    }
    if (path.endsWith('/leak')) {
      const t = token ?? '';
      const type = url.searchParams.get('type') ?? 'application/json';
      // `?pad=N`: N more bytes before the token's second appearance (a body of any size).
      const pad = 'p'.repeat(Number(url.searchParams.get('pad') ?? 0));
      const text = type.includes('json')
        ? JSON.stringify({ token: t, message: `the upstream received ${pad}Bearer ${t}` })
        : `<p>token=${t}</p>\nAuthorization: ${pad}Bearer ${t}\n`;
      // `?gzip=1` or `?encoding=gzip|deflate|br`: the body compressed that way; `&broken=1`:
      // its last bytes cut off (announced, and sent, at the shorter length).
      const encoding = url.searchParams.get('gzip') === '1' ? 'gzip' : url.searchParams.get('encoding');
      const encoders: Record<string, (input: string) => Buffer> = { gzip: gzipSync, deflate: deflateSync, br: brotliCompressSync };
      const encode = encoding ? encoders[encoding] : undefined;
      const encoded = encode ? encode(text) : Buffer.from(text);
      const payload = url.searchParams.has('broken') ? encoded.subarray(0, encoded.length - 8) : encoded;
      res.writeHead(200, {
        'content-type': type,
        'content-length': payload.length,
        'x-access-token': t,
        'x-debug': `token=${t}`,
        ...(encode ? { 'content-encoding': encoding as string } : {}),
      });
      res.end(payload);
      return;
    }
    if (path.endsWith('/set-cookie')) {
      res.setHeader('set-cookie', ['bff-session=evil; Path=/', '__Host-Http-bff-session=evil; Path=/; Secure', 'theme=dark; Path=/']);
      sendJson(res, 200, { cookies: 3 });
      return;
    }
    if (path.endsWith('/sse')) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.flushHeaders();
      // `every` spaces the events further apart (default 50 ms), for tests that watch them arrive.
      const every = Number(url.searchParams.get('every') ?? '50');
      for (let i = 1; i <= 3; i++) {
        later(i * every, () => {
          if (res.destroyed) return;
          res.write(`id: ${i}\nevent: tick\ndata: ${JSON.stringify({ n: i })}\n\n`);
          if (i === 3) res.end();
        });
      }
      return;
    }
    if (path.endsWith('/download')) {
      let remaining = Number(url.searchParams.get('bytes') ?? '0');
      // `?at-once=1`: the whole body in one write, with its length, instead of 64 KiB pieces
      // written with backpressure (the reader gets many pieces in one turn of the event loop).
      if (url.searchParams.has('at-once')) {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': remaining });
        res.end(Buffer.alloc(remaining, 'x'));
        return;
      }
      const chunk = Buffer.alloc(64 * 1024, 'x');
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const pump = () => {
        while (remaining > 0 && !res.destroyed) {
          const size = Math.min(remaining, chunk.length);
          remaining -= size;
          if (!res.write(size === chunk.length ? chunk : chunk.subarray(0, size))) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
      return;
    }
    if (path.endsWith('/hop')) {
      res.writeHead(200, {
        connection: 'x-secret',
        'x-secret': '1',
        'keep-alive': 'timeout=5',
        'proxy-authenticate': 'x',
        'x-visible': '1',
        'content-type': 'application/json',
      });
      res.end(JSON.stringify({ hop: true }));
      return;
    }
    // `/echo` and any path not listed above echo the request back; `?respond-header=name:value`
    // adds a response header (for header-dropping rules).
    const extra = url.searchParams.getAll('respond-header').map((pair) => pair.split(':', 2) as [string, string]);
    sendJson(res, 200, echoOf(url, entry), Object.fromEntries(extra.filter(([name, value]) => name && value !== undefined)));
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: String(err) });
      else res.destroy();
    });
  });

  const wss = new WebSocketServer({ noServer: true });
  // `/ws-leak`: a 101 handshake that echoes the bearer token and sets the gateway's cookie name.
  wss.on('headers', (headers, req) => {
    if (!req.url?.includes('/ws-leak')) return;
    const auth = req.headers.authorization ?? '';
    headers.push(
      `x-access-token: ${auth}`,
      `x-debug: token=${auth}`,
      'Set-Cookie: bff-session=evil; Path=/',
      'Set-Cookie: theme=dark; Path=/',
    );
  });
  server.on('upgrade', (req: IncomingMessage, socket, head: Buffer) => {
    void record(req, Buffer.alloc(0)).then(() => {
      const path = new URL(req.url ?? '/', 'http://upstream.invalid').pathname;
      if (path.endsWith('/ws-refuse')) {
        // Refuses the upgrade with an ordinary HTTP answer that leaks the token (headers and body).
        const auth = req.headers.authorization ?? '';
        const body = JSON.stringify({ error: 'no websocket here', token: auth });
        socket.end(
          `HTTP/1.1 401 Unauthorized\r\nx-access-token: ${auth}\r\nset-cookie: bff-session=evil; Path=/\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
        );
        return;
      }
      if (!path.endsWith('/ws') && !path.endsWith('/ws-leak')) {
        socket.destroy();
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        sockets.add(ws);
        ws.on('close', () => sockets.delete(ws));
        ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      });
    });
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;

  const upstream: Upstream = {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    rejectTokens,
    requireDpopNonce: undefined,
    async close() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      for (const ws of sockets) ws.terminate();
      wss.close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
  return upstream;
}
