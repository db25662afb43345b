/**
 * Writing an upstream response to the browser: header hygiene (headers.ts), then, when the
 * request carried tokens and `scrub.bodies` is on, a text-like body is decoded if compressed
 * and streamed through the token redactor (scrub.ts). Plain `pipe` with explicit error
 * handling rather than `stream.pipeline`: pipeline allocates an AbortController per call and
 * this is every proxied response.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { GatewayError } from '../errors.ts';
import { browserResponseHeaders } from './headers.ts';
import { decoderFor, isTextLike, TokenRedactor } from './scrub.ts';

export interface RespondOptions {
  dropNames: ReadonlySet<string>;
  gatewayCookies: ReadonlySet<string>;
  /** Tokens the request carried: never to be echoed back. */
  tokens: readonly string[];
  scrub: boolean;
  extraCookies: readonly string[];
}

export function respond(res: ServerResponse, upstream: IncomingMessage, options: RespondOptions): void {
  const headers = browserResponseHeaders(upstream.headers, options);
  if (options.extraCookies.length > 0) headers['set-cookie'] = [...[headers['set-cookie'] ?? []].flat().map(String), ...options.extraCookies];
  let body: Readable = upstream;
  const abort = () => {
    upstream.destroy();
    res.destroy();
  };
  if (options.scrub && options.tokens.length > 0 && isTextLike(upstream.headers['content-type'])) {
    const decoder = decoderFor(upstream.headers['content-encoding']);
    if (decoder === undefined) {
      upstream.resume();
      throw new GatewayError('bad_gateway', { detail: `upstream body encoding ${upstream.headers['content-encoding']} cannot be inspected for tokens` });
    }
    if (decoder) {
      body = body.pipe(decoder).on('error', abort);
      delete headers['content-encoding'];
    }
    body = body.pipe(new TokenRedactor(options.tokens)).on('error', abort);
    delete headers['content-length'];
  }
  upstream.on('error', abort);
  res.on('close', () => {
    if (!res.writableFinished) upstream.destroy();
  });
  res.writeHead(upstream.statusCode ?? 502, upstream.statusMessage, headers);
  body.pipe(res);
}
