/**
 * Writing an upstream response to the browser: header hygiene (headers.ts), then, when the
 * request carried tokens and `scrub.bodies` is on, the body — whatever its content type — is
 * decoded if compressed and streamed through the token redactor (scrub.ts). A token is a long
 * random byte string, so matching it in binary bodies (octet-stream, protobuf, images) cannot
 * hit by accident, and an upstream that echoes the Authorization header into any format is
 * covered. Answers that have no body — to HEAD, 1xx, 204 and 304 — are relayed as they are,
 * `content-encoding` and `content-length` included: there is nothing to decode, and decoding
 * an empty stream would fail.
 *
 * Plain `pipe` with explicit error handling rather than `stream.pipeline`: pipeline allocates
 * an AbortController per call and this is every proxied response.
 */
import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { GatewayError } from '../errors.ts';
import type { UpstreamResponse } from './forward.ts';
import { browserResponseHeaders } from './headers.ts';
import { decoderFor, TokenRedactor } from './scrub.ts';

export interface RespondOptions {
  dropNames: ReadonlySet<string>;
  gatewayCookies: ReadonlySet<string>;
  /** Tokens the request carried: never to be echoed back. */
  tokens: readonly string[];
  scrub: boolean;
  extraCookies: readonly string[];
}

/** Whether a response to `method` with `status` carries a body (RFC 9110 section 6.4.1). */
export function hasResponseBody(method: string, status: number): boolean {
  return method !== 'HEAD' && status >= 200 && status !== 204 && status !== 304;
}

export function respond(res: ServerResponse, method: string, upstream: UpstreamResponse, options: RespondOptions): void {
  const headers = browserResponseHeaders(upstream.headers, options);
  if (options.extraCookies.length > 0) headers['set-cookie'] = [...[headers['set-cookie'] ?? []].flat().map(String), ...options.extraCookies];
  let body: Readable = upstream.body;
  const abort = () => {
    upstream.body.destroy();
    res.destroy();
  };
  if (options.scrub && options.tokens.length > 0 && hasResponseBody(method, upstream.statusCode)) {
    const decoder = decoderFor(upstream.headers['content-encoding']);
    if (decoder === undefined) {
      upstream.body.destroy();
      throw new GatewayError('bad_gateway', { detail: `upstream body encoding ${String(upstream.headers['content-encoding'])} cannot be inspected for tokens` });
    }
    if (decoder) {
      body = body.pipe(decoder).on('error', abort);
      delete headers['content-encoding'];
    }
    body = body.pipe(new TokenRedactor(options.tokens)).on('error', abort);
    delete headers['content-length'];
  }
  upstream.body.on('error', abort);
  res.on('close', () => {
    if (!res.writableFinished) upstream.body.destroy();
  });
  res.writeHead(upstream.statusCode, upstream.statusMessage || undefined, headers);
  body.pipe(res);
}
