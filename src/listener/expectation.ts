/**
 * `Expect` with any value but `100-continue`. Node answers such a request itself with a bare
 * `417 Expectation Failed` (no body, no `cache-control`, no security headers) unless the server
 * listens for `checkExpectation`; every listener of the gateway (public and admin) listens, and
 * answers in the gateway's JSON error shape instead. The request reaches no route (Node emits no
 * `request` event for it). The connection is closed after the answer: whether the client sends
 * the body it announced is anyone's guess, so nothing more is read from it.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { GatewayError, writeRawError } from '../errors.ts';

export function answerExpectationFailed(server: Server, before?: (req: IncomingMessage, res: ServerResponse) => void): void {
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    before?.(req, res);
    writeRawError(res, new GatewayError('expectation_failed'), { connection: 'close' });
  });
}
