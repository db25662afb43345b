/**
 * Route matching (docs/http-interface.md#routes): the longest route path that is a prefix of the request
 * path on a segment boundary wins (`/api` matches `/api` and `/api/x`, never `/apix`).
 *
 * Matching happens on a normalised path, and the normalised path is what goes upstream, so a
 * request can never leave its route (or its upstream's base path) by path tricks: dot segments
 * in any spelling (`..`, `%2e%2e`, `.%2E`, `..;x`) are resolved or refused, encoded slashes and
 * backslashes (`%2f`, `%5c`, `\`), double-encoded dots (`%252e`) and NUL are refused, `//` collapses.
 */
import type { RouteConfig } from '../config/load.ts';
import { GatewayError } from '../errors.ts';

export type NormalisedPath = { ok: true; path: string } | { ok: false; reason: string };

const DOT = /^(?:\.|%2e)$/i;
const DOT_DOT = /^(?:\.|%2e){2}$/i;

export function normalisePath(rawPath: string): NormalisedPath {
  if (!rawPath.startsWith('/')) return { ok: false, reason: 'path must start with /' };
  if (/\\|%2f|%5c|%25(?:2e|2f|5c)/i.test(rawPath)) return { ok: false, reason: 'encoded slash, backslash or double encoding in path' };
  // An encoded NUL truncates paths in some upstream stacks (`..%00` becoming `..`).
  if (/%00|\0/.test(rawPath)) return { ok: false, reason: 'NUL in path' };
  const out: string[] = [];
  const segments = rawPath.split('/').slice(1);
  segments.forEach((segment, index) => {
    const bare = segment.split(';')[0] as string;
    if (DOT.test(bare)) {
      if (bare !== segment) out.push('\0');
      return;
    }
    if (DOT_DOT.test(bare)) {
      if (bare !== segment || out.length === 0) out.push('\0');
      else out.pop();
      return;
    }
    if (segment === '' && index !== segments.length - 1) return;
    out.push(segment);
  });
  if (out.includes('\0')) return { ok: false, reason: 'dot segment escapes the root or carries parameters' };
  const last = segments[segments.length - 1];
  let path = `/${out.join('/')}`;
  // Keep a trailing slash the client asked for (`/api/` is not always `/api` upstream).
  if ((last === '' || DOT.test(last ?? '') || DOT_DOT.test(last ?? '')) && !path.endsWith('/')) path += '/';
  return { ok: true, path };
}

export class RouteTable {
  private readonly routes: readonly RouteConfig[];

  constructor(routes: readonly RouteConfig[]) {
    this.routes = [...routes].sort((a, b) => b.path.length - a.path.length);
  }

  match(path: string): RouteConfig | undefined {
    return this.routes.find((route) => route.path === '/' || path === route.path || path.startsWith(`${route.path}/`));
  }
}

/** The upstream URL for a normalised request path and its raw query string. */
export function upstreamUrl(route: RouteConfig, path: string, query: string): URL {
  let forwarded = route.stripPrefix && route.path !== '/' ? path.slice(route.path.length) : path;
  if (!forwarded.startsWith('/')) forwarded = `/${forwarded}`;
  const base = route.upstream.pathname.replace(/\/+$/, '');
  const url = new URL(route.upstream.origin);
  url.pathname = `${base}${forwarded}`;
  url.search = query;
  return url;
}

/** Splits `request.url` into path and raw query (without the `?`). */
function splitUrl(url: string): { path: string; query: string } {
  const index = url.indexOf('?');
  return index === -1 ? { path: url, query: '' } : { path: url.slice(0, index), query: url.slice(index + 1) };
}

/** Resolves the route for a raw URL (normalised path, raw query), or throws the gateway error. */
export function resolveRoute(routes: RouteTable, rawUrl: string): { route: RouteConfig; path: string; query: string } {
  const { path: rawPath, query } = splitUrl(rawUrl);
  const normalised = normalisePath(rawPath);
  if (!normalised.ok)
    throw new GatewayError('invalid_request', { message: 'The request path is not acceptable.', detail: normalised.reason });
  const route = routes.match(normalised.path);
  if (!route) throw new GatewayError('not_found');
  return { route, path: normalised.path, query };
}
