/**
 * The anti-forgery rule for token routes and /auth/user (docs/http-interface.md#csrf):
 * - the request carries `<csrf.header>: 1`. A cross-site form or `<img>` cannot add a custom
 *   header, and a cross-origin fetch that adds one needs a CORS preflight we never grant;
 * - an `Origin` header, when present, is exactly the public origin (`Origin: null` is refused);
 * - `Sec-Fetch-Site: cross-site` is refused (defence in depth for browsers that send it).
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { GatewayConfig } from '../config/load.ts';

export function passesCsrf(headers: IncomingHttpHeaders, config: GatewayConfig): boolean {
  if (headers[config.csrf.header] !== '1') return false;
  const origin = headers.origin;
  if (origin !== undefined && origin !== config.publicUrl) return false;
  return headers['sec-fetch-site'] !== 'cross-site';
}
