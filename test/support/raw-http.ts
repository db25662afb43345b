/**
 * One HTTP/1.1 request with node:http, for what fetch cannot do: methods it forbids (TRACE),
 * headers it forbids (Connection, Keep-Alive, TE), and seeing the bytes exactly as sent (no
 * automatic decompression, the real content-length).
 */
import { request, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export function rawRequest(
  url: string,
  options: { method?: string; headers?: OutgoingHttpHeaders; body?: Buffer | string } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.once('error', reject);
    });
    req.once('error', reject);
    req.end(options.body);
  });
}

/** What a browser sends for a top-level navigation (a link followed, `location.assign`). */
export const NAVIGATION_HEADERS = { 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document', 'sec-fetch-site': 'same-origin' } as const;

/**
 * A GET as a browser's top-level navigation, answered as a fetch `Response` (redirects not
 * followed). fetch() cannot stand in for a navigation: it always sends `Sec-Fetch-Mode: cors`.
 */
export async function navigate(url: string | URL, headers: OutgoingHttpHeaders = {}): Promise<Response> {
  const answer = await rawRequest(String(url), { headers: { ...NAVIGATION_HEADERS, ...headers } });
  const out = new Headers();
  for (const [name, value] of Object.entries(answer.headers)) {
    for (const line of [value ?? []].flat()) out.append(name, line);
  }
  const noBody = answer.status === 204 || answer.status === 205 || answer.status === 304;
  return new Response(noBody ? null : new Uint8Array(answer.body), { status: answer.status, headers: out });
}
