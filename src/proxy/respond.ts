/**
 * Writing an upstream response to the browser: header hygiene (headers.ts), then the body,
 * relayed from undici's data callback straight into the browser's response (no stream in
 * between). When the request carried tokens and `scrub.bodies` is on, the body — whatever its
 * content type — is decoded if compressed and run through the token redactor (scrub.ts) piece
 * by piece. A token is a long random byte string, so matching it in binary bodies
 * (octet-stream, protobuf, images) cannot hit by accident, and an upstream that echoes the
 * Authorization header into any format is covered.
 *
 * Answers that have no body — to HEAD, 1xx, 204, 205, 304, and any with a declared
 * `content-length: 0` — are relayed as they are, `content-encoding` and `content-length`
 * included: there is nothing to decode, and decoding an empty stream would fail. A 205 goes
 * out with `content-length: 0` whatever the upstream said (RFC 9110 section 15.3.6).
 *
 * A scrubbed body that declares at most 16 KiB (most API answers) is read whole first, decoded
 * in one call if compressed, redacted, and sent with its exact `content-length` in one socket
 * write together with the status line and headers (whole-body.ts). A larger or undeclared one
 * streams, chunked, with backpressure and a deadline for a browser that stops reading
 * (stream-sink.ts).
 */
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { GatewayError } from '../errors.ts';
import type { UpstreamResponse } from './forward.ts';
import { browserResponseHeaders, type ResponseHeaderOptions } from './headers.ts';
import { bodyEncoding, decoderFor, Redactor } from './scrub.ts';
import { BrowserSink, bodylessSink } from './stream-sink.ts';
import { type Head, sendHead, WHOLE_BODY_BYTES, WholeBodySink } from './whole-body.ts';

/** The gateway's settings for every answer (one object, built once). */
export interface RespondOptions {
  /** `scrub.bodies`. */
  scrub: boolean;
  /** Longest a browser may take no bytes while some are waiting for it (`limits.sendIdleTimeout`). */
  sendIdleTimeoutMs: number;
}

/** What one answer is checked against: the header rules and the tokens its request carried. */
export interface AnswerRules extends ResponseHeaderOptions {
  /** Set-Cookie lines of the gateway's own to add (a re-signed session cookie). */
  extraCookies: readonly string[];
}

/**
 * Whether a response to `method` with `status` carries a body (RFC 9110 section 6.4.1); a
 * declared `content-length: 0` says it has none either.
 */
export function hasResponseBody(method: string, status: number, headers?: IncomingHttpHeaders): boolean {
  return method !== 'HEAD' && status >= 200 && status !== 204 && status !== 205 && status !== 304 && headers?.['content-length'] !== '0';
}

/**
 * Relays `upstream` to the browser. `failed` answers an error while nothing has been sent yet
 * (a small body that does not decode, or breaks off before its end): the caller's error path,
 * which logs it, records it and closes the connection when the request is not complete.
 */
export function respond(
  res: ServerResponse,
  method: string,
  upstream: UpstreamResponse,
  rules: AnswerRules,
  options: RespondOptions,
  failed: (error: GatewayError) => void,
): void {
  const headers = browserResponseHeaders(upstream.headers, rules);
  if (rules.extraCookies.length > 0) headers['set-cookie'] = [...[headers['set-cookie'] ?? []].flat().map(String), ...rules.extraCookies];
  if (upstream.statusCode === 205) headers['content-length'] = '0';
  const head: Head = { res, status: upstream.statusCode, message: upstream.statusMessage || undefined, headers };
  if (!hasResponseBody(method, upstream.statusCode, upstream.headers)) {
    sendHead(head);
    upstream.relay(bodylessSink(res));
    return;
  }
  if (!options.scrub || rules.tokens.length === 0) {
    sendHead(head);
    upstream.relay(new BrowserSink(res, upstream, null, undefined, options.sendIdleTimeoutMs));
    return;
  }
  const encoding = bodyEncoding(upstream.headers['content-encoding']);
  if (encoding === undefined) {
    upstream.discard();
    throw new GatewayError('bad_gateway', {
      detail: `upstream body encoding ${String(upstream.headers['content-encoding'])} cannot be inspected for tokens`,
    });
  }
  // The body is sent decoded, and redaction may change its length.
  if (encoding !== 'identity') delete headers['content-encoding'];
  delete headers['content-length'];
  const redactor = new Redactor(rules.tokens);
  const declared = Number(upstream.headers['content-length']);
  if (declared > 0 && declared <= WHOLE_BODY_BYTES) {
    upstream.relay(new WholeBodySink(head, upstream, encoding, redactor, options.sendIdleTimeoutMs, failed));
    return;
  }
  sendHead(head);
  upstream.relay(new BrowserSink(res, upstream, decoderFor(encoding), redactor, options.sendIdleTimeoutMs));
}
