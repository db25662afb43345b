/**
 * A raw WebSocket tunnel, for upgrades that carry no token (`none` routes, `optional` routes
 * without a session): nothing secret can come back in the frames, so after the handshake the
 * two sockets are simply piped into each other.
 *
 * The handshake is the gateway's to check: only a WebSocket handshake gets here (ws-handshake.ts),
 * and only a 101 that switches to `websocket` with the right `Sec-WebSocket-Accept` is relayed —
 * any other 101 is a 502, so the pipe never carries a protocol the gateway did not agree to. The
 * 101 gets the same header hygiene as any response. Any other answer is relayed cleaned, or — on
 * a route that could carry a token — replaced by the gateway's own 502 (its body could echo a
 * token on other routes of the kind, and a browser's WebSocket API cannot read it anyway). A
 * tunnel with no bytes either way for `idleTimeoutMs` is closed.
 */
import http, { type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import { Socket } from 'node:net';
import { GatewayError, rawHttpError } from '../errors.ts';
import { browserResponseHeaders } from './headers.ts';
import { isWebSocketAccept, type UpstreamHandshake } from './ws-handshake.ts';

/** `headers` keep `Connection: Upgrade` and `Upgrade` here: they are the upstream's handshake. */
export interface TunnelOptions extends UpstreamHandshake {
  /** Refuse any non-101 answer with the gateway's 502 instead of relaying it. */
  refuseOtherAnswers: boolean;
  /** Called once the tunnel is up, with a function that tears it down. */
  onOpen(close: () => void): void;
}

function headerLines(headers: OutgoingHttpHeaders): string {
  let lines = '';
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    for (const item of [value].flat()) lines += `${name}: ${String(item)}\r\n`;
  }
  return lines;
}

export function tunnel(options: TunnelOptions): void {
  const { socket, target } = options;
  const client = target.protocol === 'https:' ? https : http;
  // Its own connection: an upgraded socket never goes back to a pool anyway.
  const upstreamRequest = client.request(target, { method: 'GET', headers: options.headers, agent: false });
  let answered = false;
  const fail = (err: GatewayError) => {
    if (answered) return;
    answered = true;
    upstreamRequest.destroy();
    if (socket.writable) socket.end(rawHttpError(err));
    else socket.destroy();
  };
  const onBrowserGone = () => upstreamRequest.destroy();
  socket.once('close', onBrowserGone);

  upstreamRequest.setTimeout(options.timeoutMs, () =>
    fail(
      new GatewayError('gateway_timeout', { detail: `no WebSocket handshake answer from ${target.origin} within ${options.timeoutMs}ms` }),
    ),
  );
  upstreamRequest.on('error', (err: NodeJS.ErrnoException) =>
    fail(new GatewayError('bad_gateway', { detail: `upstream ${target.origin}: ${err.code ?? err.message}` })),
  );

  upstreamRequest.on('response', (response: IncomingMessage) => {
    if (options.refuseOtherAnswers) {
      response.resume();
      fail(new GatewayError('bad_gateway', { detail: `upstream refused the WebSocket upgrade with ${response.statusCode}` }));
      return;
    }
    answered = true;
    upstreamRequest.setTimeout(0);
    const kept = browserResponseHeaders(response.headers, options.rules);
    // The body is relayed as it arrives and the connection closed after it: no framing to keep.
    kept.connection = 'close';
    socket.write(`HTTP/1.1 ${response.statusCode} ${response.statusMessage ?? ''}\r\n${headerLines(kept)}\r\n`);
    response.pipe(socket);
    response.once('error', () => socket.destroy());
  });

  upstreamRequest.on('upgrade', (response: IncomingMessage, upstreamSocket: Socket, upstreamHead: Buffer) => {
    if (answered || socket.destroyed) {
      upstreamSocket.destroy();
      return;
    }
    if (!isWebSocketAccept(response.headers, [options.headers['sec-websocket-key']].flat()[0] as string | undefined)) {
      upstreamSocket.destroy();
      fail(
        new GatewayError('bad_gateway', {
          detail: `upstream switched to ${JSON.stringify(response.headers.upgrade ?? '')} without a valid WebSocket accept`,
        }),
      );
      return;
    }
    answered = true;
    socket.off('close', onBrowserGone);
    upstreamRequest.setTimeout(0);
    const kept = browserResponseHeaders(response.headers, options.rules);
    // The handshake's own hop-by-hop headers are what makes it a handshake.
    kept.connection = 'Upgrade';
    if (response.headers.upgrade) kept.upgrade = response.headers.upgrade;
    const close = () => {
      socket.destroy();
      upstreamSocket.destroy();
    };
    upstreamSocket.on('error', close);
    socket.on('error', close);
    upstreamSocket.once('close', close);
    socket.once('close', close);
    upstreamSocket.setTimeout(0);
    upstreamSocket.setNoDelay(true);
    // Bytes either way pass through the browser's socket: its timeout is the tunnel's.
    if (socket instanceof Socket) {
      socket.setTimeout(options.idleTimeoutMs);
      socket.once('timeout', close);
    }
    socket.write(`HTTP/1.1 101 Switching Protocols\r\n${headerLines(kept)}\r\n`);
    if (upstreamHead.length > 0) socket.write(upstreamHead);
    if (options.head.length > 0) upstreamSocket.write(options.head);
    upstreamSocket.pipe(socket);
    socket.pipe(upstreamSocket);
    options.onOpen(close);
  });
  upstreamRequest.end();
}
