/**
 * A WebSocket upstream for the relay tests. It records every handshake and every close it sees,
 * picks the *last* subprotocol the client offers (so a test can tell the upstream's choice from
 * the browser's first preference), and answers commands sent as text messages:
 *
 *   token-text         a text message carrying the bearer token it received
 *   token-binary       a binary message carrying the token between non-UTF-8 bytes
 *   token-deflated     a large, compressible text message with the token in the middle
 *   big:<bytes>        a binary message of that many bytes
 *   ping               pings the client; answers `pong-seen` once the pong arrives
 *   close:<code>:<why> closes with that code and reason
 *   anything else      echoed back as it came (text as text, binary as binary)
 *
 * `/refuse` answers the upgrade with a 403 whose headers and body echo the token.
 */
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';

export interface WsHandshake {
  path: string;
  headers: IncomingHttpHeaders;
  protocol: string;
  extensions: string;
}

export interface WsUpstream {
  url: string;
  handshakes: WsHandshake[];
  /** Close codes and reasons the upstream received, in order. */
  closes: Array<{ code: number; reason: string }>;
  /** Sockets currently open at the upstream. */
  open(): number;
  close(): Promise<void>;
}

/** Non-UTF-8 bytes around the token in binary messages: a text conversion would mangle them. */
export const BINARY_PREFIX = Buffer.from([0x00, 0xff, 0xfe, 0x80]);
export const BINARY_SUFFIX = Buffer.from([0xc3, 0x28, 0x00]);

function tokenOf(authorization: string | undefined): string {
  return /^(?:Bearer|DPoP)\s+(.+)$/i.exec(authorization ?? '')?.[1]?.trim() ?? '';
}

export async function startWsUpstream(): Promise<WsUpstream> {
  const handshakes: WsHandshake[] = [];
  const closes: WsUpstream['closes'] = [];
  const sockets = new Set<WebSocket>();
  const server = createServer((_req, res) => res.writeHead(426).end());
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: true,
    maxPayload: 64 * 1024 * 1024,
    handleProtocols: (offered) => [...offered].at(-1) ?? false,
  });

  server.on('upgrade', (req, socket, head) => {
    const path = new URL(req.url ?? '/', 'http://upstream.invalid').pathname;
    const auth = req.headers.authorization ?? '';
    if (path.endsWith('/refuse')) {
      const body = JSON.stringify({ error: 'refused', authorization: auth });
      socket.end(
        `HTTP/1.1 403 Forbidden\r\nx-access-token: ${auth}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      handshakes.push({ path, headers: req.headers, protocol: ws.protocol, extensions: ws.extensions });
      sockets.add(ws);
      const token = tokenOf(auth);
      ws.on('close', (code, reason) => {
        sockets.delete(ws);
        closes.push({ code, reason: reason.toString('utf8') });
      });
      ws.on('error', () => ws.terminate());
      ws.on('message', (data: Buffer, isBinary) => {
        const text = isBinary ? '' : data.toString('utf8');
        if (text === 'token-text') ws.send(`token=${token}; Authorization: ${auth}; again ${token}`);
        else if (text === 'token-binary') ws.send(Buffer.concat([BINARY_PREFIX, Buffer.from(token), BINARY_SUFFIX]), { binary: true });
        else if (text === 'token-deflated') ws.send(`${'a'.repeat(64 * 1024)}${token}${'b'.repeat(64 * 1024)}`, { compress: true });
        else if (text.startsWith('big:')) ws.send(Buffer.alloc(Number(text.slice(4)), 0x61), { binary: true });
        else if (text === 'ping') {
          ws.once('pong', () => ws.send('pong-seen'));
          ws.ping('are you there');
        } else if (text.startsWith('close:')) {
          const [, code, reason] = text.split(':');
          ws.close(Number(code), reason);
        } else ws.send(data, { binary: isBinary });
      });
    });
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    handshakes,
    closes,
    open: () => sockets.size,
    async close() {
      for (const ws of sockets) ws.terminate();
      wss.close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}
