/**
 * The WebSocket relay for upgrades that carry a token: the gateway is a WebSocket server to the
 * browser and a WebSocket client to the upstream (the `ws` library on both sides), and relays
 * messages between them, so it can scrub what comes back — a raw tunnel would hand a token the
 * upstream echoes in a frame to page script.
 *
 * - The upstream handshake comes first; the browser's completes only once the upstream
 *   accepted, with the subprotocol the upstream chose and the upstream's 101 headers after the
 *   usual hygiene. A refusal is never relayed: the browser gets the gateway's 502 (504 when
 *   the upstream does not answer within the route's timeout).
 * - Messages keep their type (text stays text, binary binary). Upstream messages have every
 *   token of the credentials replaced by `[redacted]`, and so have close reasons. Messages over
 *   `MAX_MESSAGE_BYTES` (after inflation) close that side with 1009, and the other side with it.
 * - permessage-deflate is negotiated on each side on its own; each side answers its own peer's
 *   pings (the gateway is the peer of both).
 * - Close codes and reasons are passed on; an abnormal end (no close frame) on one side ends the
 *   other abruptly too. A slow reader pauses the other side (bounded buffering).
 * - Messages on their way (received whole, not yet written to the other side) are held against a
 *   byte budget shared by every relay of the process (`limits.maxBufferedBytes`, a budget of its
 *   own next to the HTTP replay buffers'); a message that does not fit closes both sides with
 *   1013 (try again later). What `ws` holds while a message is still arriving is bounded by
 *   `MAX_MESSAGE_BYTES` per socket, and sockets per client by `limits.perClientWebSockets`.
 * - No message, ping or pong either way for `idleTimeoutMs`: both sides are closed with 1001.
 */
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { GatewayError, rawHttpError } from '../errors.ts';
import { browserResponseHeaders } from './headers.ts';
import type { BufferBudget } from './request-body.ts';
import type { UpstreamHandshake } from './ws-handshake.ts';
import type { MessageRedactor } from './ws-redact.ts';

export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
/** Past this much unsent data towards one side, the other side is paused until it drains. */
const HIGH_WATER_BYTES = 1024 * 1024;
/** The longest close reason the protocol allows (RFC 6455 section 5.5: 125-byte payload). */
const MAX_REASON_BYTES = 123;

/** The handshake headers each side's library sets itself; never copied across. */
const HANDSHAKE_HEADERS = new Set([
  'sec-websocket-key',
  'sec-websocket-version',
  'sec-websocket-protocol',
  'sec-websocket-extensions',
  'sec-websocket-accept',
  'connection',
  'upgrade',
  'host',
]);
/** RFC 6455 section 7.4.1: going away (the idle timeout), and try again later (the budget). */
const IDLE_CLOSE = { code: 1001, reason: 'idle timeout' } as const;
const OVERLOADED_CLOSE = { code: 1013, reason: 'try again later' } as const;

/** The close code ws sends when a peer's frames break the protocol, by ws error code. */
const RECEIVER_ERRORS: Record<string, number> = {
  WS_ERR_UNSUPPORTED_MESSAGE_LENGTH: 1009,
  WS_ERR_INVALID_UTF8: 1007,
  WS_ERR_INVALID_CLOSE_CODE: 1002,
  WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH: 1002,
  WS_ERR_INVALID_OPCODE: 1002,
  WS_ERR_EXPECTED_FIN: 1002,
  WS_ERR_EXPECTED_MASK: 1002,
  WS_ERR_UNEXPECTED_MASK: 1002,
  WS_ERR_UNEXPECTED_RSV_1: 1002,
  WS_ERR_UNEXPECTED_RSV_2_3: 1002,
  WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH: 1009,
  WS_ERR_TOO_MANY_BUFFERED_PARTS: 1008,
};

export interface Relay {
  /** Closes both sides with this code and reason (e.g. 1008 when the session ended). */
  close(code: number, reason: string): void;
  /** Ends both sides now, without a closing handshake. */
  terminate(): void;
  readonly closed: Promise<void>;
}

/** `headers` carry the token; their handshake headers are dropped here (`ws` sets its own). */
export interface RelayOptions extends UpstreamHandshake {
  /** The browser's handshake (checked already: ws-handshake.ts). */
  req: IncomingMessage;
  redact: MessageRedactor;
  /** Holds messages on their way, for every relay together. */
  budget: BufferBudget;
  /** Once both sides are open. */
  onOpen(relay: Relay): void;
  /** Each browser message (activity, for the session's idle timeout). */
  onBrowserMessage?(): void;
}

/** The subprotocols the browser offered. */
function browserProtocols(req: IncomingMessage): string[] {
  const offered = req.headers['sec-websocket-protocol'];
  return offered === undefined ? [] : offered.split(',').map((name) => name.trim());
}

function sendable(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

/** Passes a close on to `to`: same code and reason where the protocol allows sending them. */
function closeWith(to: WebSocket, code: number, reason: Buffer): void {
  if (to.readyState === WebSocket.CLOSED) return;
  if (code === 1006 || to.readyState === WebSocket.CONNECTING) to.terminate();
  else if (sendable(code)) to.close(code, reason.length <= MAX_REASON_BYTES ? reason : undefined);
  else to.close();
}

export function relay(options: RelayOptions): void {
  const { socket, req } = options;
  const protocols = browserProtocols(req);
  const upstreamUrl = new URL(options.target);
  upstreamUrl.protocol = upstreamUrl.protocol === 'https:' ? 'wss:' : 'ws:';
  const headers: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(options.headers)) if (!HANDSHAKE_HEADERS.has(name)) headers[name] = value;

  let answered = false;
  const fail = (err: GatewayError) => {
    if (answered) return;
    answered = true;
    if (socket.writable) socket.end(rawHttpError(err));
    else socket.destroy();
  };

  // Throws (invalid subprotocol names, duplicates) before anything is sent: a bad request.
  let upstream: WebSocket;
  try {
    upstream = new WebSocket(upstreamUrl, protocols, {
      headers: headers as Record<string, string>,
      perMessageDeflate: true,
      maxPayload: MAX_MESSAGE_BYTES,
      handshakeTimeout: options.timeoutMs,
      followRedirects: false,
    });
  } catch (err) {
    throw new GatewayError('invalid_request', { message: 'Not a valid WebSocket handshake.', detail: (err as Error).message });
  }
  const onBrowserGone = () => upstream.terminate();
  socket.once('close', onBrowserGone);

  let acceptedHeaders: string[] = [];
  upstream.once('upgrade', (response: IncomingMessage) => {
    const kept = browserResponseHeaders(response.headers, options.rules);
    acceptedHeaders = Object.entries(kept).flatMap(([name, value]) =>
      HANDSHAKE_HEADERS.has(name) || value === undefined ? [] : [value].flat().map((item) => `${name}: ${String(item)}`),
    );
  });
  upstream.once('unexpected-response', (_request, response: IncomingMessage) => {
    response.resume();
    fail(new GatewayError('bad_gateway', { detail: `upstream refused the WebSocket upgrade with ${response.statusCode}` }));
    upstream.terminate();
  });
  upstream.on('error', (err: Error) => {
    const timedOut = /handshake has timed out/i.test(err.message);
    fail(
      timedOut
        ? new GatewayError('gateway_timeout', {
            detail: `no WebSocket handshake answer from ${options.target.origin} within ${options.timeoutMs}ms`,
          })
        : new GatewayError('bad_gateway', { detail: `upstream ${options.target.origin}: ${err.message}` }),
    );
  });

  upstream.once('open', () => {
    if (answered || socket.destroyed) {
      upstream.terminate();
      return;
    }
    answered = true;
    const server = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: true,
      maxPayload: MAX_MESSAGE_BYTES,
      handleProtocols: () => upstream.protocol || false,
    });
    server.once('headers', (lines) => lines.push(...acceptedHeaders));
    server.handleUpgrade(req, socket, options.head, (browser) => {
      socket.off('close', onBrowserGone);
      wire(browser, upstream, options);
    });
  });
}

function wire(browser: WebSocket, upstream: WebSocket, options: RelayOptions): void {
  let resolveClosed: () => void;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  const closeBoth = (code: number, reason: string) => {
    const bytes = Buffer.from(reason);
    for (const side of [browser, upstream]) if (side.readyState === WebSocket.OPEN) side.close(code, bytes);
  };

  // Budget bytes this relay holds; whatever a closed side never confirmed is given back at the end.
  let held = 0;
  const release = (bytes: number) => {
    const released = Math.min(bytes, held);
    held -= released;
    options.budget.release(released);
  };

  const idle = setTimeout(() => closeBoth(IDLE_CLOSE.code, IDLE_CLOSE.reason), options.idleTimeoutMs);
  const activity = () => idle.refresh();
  for (const side of [browser, upstream]) {
    side.on('ping', activity);
    side.on('pong', activity);
  }

  let open = 2;
  const onSideClosed = () => {
    if (--open > 0) return;
    clearTimeout(idle);
    release(held);
    resolveClosed();
  };

  const forward = (from: WebSocket, to: WebSocket, transform: (data: Buffer) => Buffer) => (data: RawData, isBinary: boolean) => {
    activity();
    if (to.readyState !== WebSocket.OPEN) return;
    const message = transform(data as Buffer);
    if (!options.budget.reserve(message.length)) {
      closeBoth(OVERLOADED_CLOSE.code, OVERLOADED_CLOSE.reason);
      return;
    }
    held += message.length;
    let sent = false;
    to.send(message, { binary: isBinary }, () => {
      if (!sent) release(message.length);
      sent = true;
      if (from.isPaused && to.bufferedAmount < HIGH_WATER_BYTES) from.resume();
    });
    if (to.bufferedAmount >= HIGH_WATER_BYTES) from.pause();
  };
  upstream.on('message', forward(upstream, browser, options.redact));
  const toUpstream = forward(browser, upstream, (data) => data);
  browser.on('message', (data, isBinary) => {
    options.onBrowserMessage?.();
    toUpstream(data, isBinary);
  });

  // A side that broke the protocol (an oversized message, invalid UTF-8, a bad frame) is sent
  // a close with the matching code by ws, and the other side gets the same code at once. Its
  // own 'close' comes later, typically as 1006 (ws stops reading after such an error): the
  // code already passed on is the one that counts.
  const failedWith = new Map<WebSocket, number>();
  const onError = (side: WebSocket, other: WebSocket) => (err: Error & { code?: string }) => {
    const code = RECEIVER_ERRORS[err.code ?? ''];
    if (code === undefined || failedWith.has(side)) return;
    failedWith.set(side, code);
    closeWith(other, code, Buffer.alloc(0));
  };
  upstream.on('error', onError(upstream, browser));
  browser.on('error', onError(browser, upstream));
  upstream.on('close', (code, reason) => {
    onSideClosed();
    closeWith(browser, failedWith.get(upstream) ?? code, options.redact(reason));
  });
  browser.on('close', (code, reason) => {
    onSideClosed();
    closeWith(upstream, failedWith.get(browser) ?? code, reason);
  });

  options.onOpen({
    close: closeBoth,
    terminate() {
      browser.terminate();
      upstream.terminate();
    },
    closed,
  });
}
