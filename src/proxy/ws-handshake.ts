/**
 * What the two ways of carrying a WebSocket (ws-relay.ts, ws-tunnel.ts) share: the checks on the
 * browser's handshake and the upstream's answer, and the options both take.
 *
 * Only WebSocket upgrades exist here. Node hands the gateway every request with `Connection:
 * upgrade` and an `Upgrade` header as an upgrade; anything but `Upgrade: websocket` (one token,
 * any case) on a GET with a valid key and version — an h2c upgrade, a list of protocols, a POST —
 * is refused with 400 before anything is sent upstream. Tunnelling it would turn the connection
 * into a raw pipe carrying requests the gateway never parsed, outside the route's path prefix.
 * For the same reason an upstream's 101 is relayed only when it switches to `websocket` and its
 * `Sec-WebSocket-Accept` answers the browser's key (RFC 6455 section 4.2.2): anything else is a
 * 502.
 */
import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import { GatewayError } from '../errors.ts';
import type { ResponseHeaderOptions } from './headers.ts';

/** RFC 6455 section 1.3. */
const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** What `ws` accepts as a key (RFC 6455 section 4.2.1: 16 bytes, base64). */
const KEY = /^[+/0-9A-Za-z]{22}==$/;

/** What a relay and a tunnel are given, once the gateway has decided where the socket goes. */
export interface UpstreamHandshake {
  /** The browser's socket, handed over by Node's `upgrade` event. */
  socket: Duplex;
  /** Bytes the browser sent after its handshake. */
  head: Buffer;
  /** The upstream URL in its http(s) form. */
  target: URL;
  /** The cleaned request headers (the gateway's Authorization and DPoP proof, if any). */
  headers: OutgoingHttpHeaders;
  /** How long the upstream has to answer the handshake. */
  timeoutMs: number;
  /** Hygiene for the upstream's handshake answer. */
  rules: ResponseHeaderOptions;
  /** A socket with no traffic either way for this long is closed. */
  idleTimeoutMs: number;
}

function refuse(detail: string): GatewayError {
  return new GatewayError('invalid_request', { message: 'Only WebSocket upgrades are accepted.', detail });
}

/**
 * Throws 400 unless `req` is a WebSocket handshake: GET, `Upgrade: websocket` as the only token,
 * a valid key, version 13 (or the draft's 8, which `ws` speaks too).
 */
export function assertWebSocketHandshake(req: IncomingMessage): void {
  const upgrade = req.headers.upgrade?.trim().toLowerCase();
  if (upgrade !== 'websocket') throw refuse(`upgrade to ${JSON.stringify(req.headers.upgrade ?? '')}`);
  if (req.method !== 'GET') throw refuse(`websocket upgrade with ${req.method}`);
  const version = req.headers['sec-websocket-version'];
  if (!KEY.test(req.headers['sec-websocket-key'] ?? '') || (version !== '13' && version !== '8'))
    throw refuse('websocket handshake without a valid key or version');
}

/** The `Sec-WebSocket-Accept` that answers `key`. */
export function acceptFor(key: string): string {
  return createHash('sha1')
    .update(key + WEBSOCKET_GUID)
    .digest('base64');
}

/** Whether an upstream's 101 really switched to WebSocket for the browser's `key`. */
export function isWebSocketAccept(response: IncomingHttpHeaders, key: string | undefined): boolean {
  return response.upgrade?.trim().toLowerCase() === 'websocket' && key !== undefined && response['sec-websocket-accept'] === acceptFor(key);
}
