/**
 * One login with login parameters, driven like a browser through the real gateway and IdP:
 * GET /auth/login?<query>, the IdP's redirects (answering its login page, when it shows one,
 * with `fields` on the interaction fast path), then the gateway callback. Reports how many
 * login pages the IdP showed and where the callback sent the browser.
 */
import { CookieJar, fetchWithJar } from './login.ts';

export interface LoginFlowResult {
  /** Login pages (interactions) the IdP asked the user to fill in. */
  interactions: number;
  /** The callback's answer. */
  status: number;
  /** Where the callback redirected, relative to the gateway ('' when it did not redirect). */
  location: string;
  /** The callback's JSON body when it did not redirect. */
  body?: unknown;
  jar: CookieJar;
}

const MAX_HOPS = 20;

export async function loginFlow(
  gatewayUrl: string,
  query: Record<string, string>,
  options: { jar?: CookieJar; fields?: Record<string, string>; headers?: Record<string, string> } = {},
): Promise<LoginFlowResult> {
  const jar = options.jar ?? new CookieJar();
  const gateway = new URL(gatewayUrl);
  let url = new URL(`/auth/login?${new URLSearchParams(query)}`, gateway);
  let interactions = 0;
  let leftGateway = false;
  for (let hop = 0; hop < MAX_HOPS; hop++) {
    const res = await fetchWithJar(url, jar, { headers: options.headers ?? {} });
    const location = res.headers.get('location');
    const atCallback = url.origin === gateway.origin && url.pathname === '/auth/callback';
    if (atCallback || !location) {
      const text = await res.text();
      if (!location) {
        if (!atCallback && url.origin !== gateway.origin)
          throw new Error(`login stopped at ${url.href}: HTTP ${res.status}\n${text.slice(0, 300)}`);
        return { interactions, status: res.status, location: '', body: text ? JSON.parse(text) : undefined, jar };
      }
      const next = new URL(location, url);
      return { interactions, status: res.status, location: `${next.pathname}${next.search}${next.hash}`, jar };
    }
    await res.body?.cancel();
    const next = new URL(location, url);
    if (next.origin !== gateway.origin) {
      leftGateway = true;
      if (next.pathname.startsWith('/interaction/') && !next.searchParams.has('login')) {
        interactions += 1;
        next.searchParams.set('login', 'alice');
        next.searchParams.set('password', 'demo');
        for (const [name, value] of Object.entries(options.fields ?? {})) next.searchParams.set(name, value);
      }
    } else if (!leftGateway) {
      throw new Error(`the gateway redirected to itself (${next.href}) before the IdP`);
    }
    url = next;
  }
  throw new Error(`login did not finish within ${MAX_HOPS} redirects`);
}
