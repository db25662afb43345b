export interface StoredCookie {
  name: string;
  value: string;
  path: string;
  expiresAt: number;
  raw: string;
}

/**
 * Minimal cookie jar for driving redirects with fetch: cookies are kept per origin (never sent
 * across ports), honour Path, Max-Age and Expires, and a cookie set already expired deletes
 * the stored one. Domain, Secure and SameSite are ignored: everything here is loopback.
 */
export class CookieJar {
  readonly #byOrigin = new Map<string, Map<string, StoredCookie>>();

  /** Stores every Set-Cookie line of a response received from `url`. */
  store(url: string | URL, setCookies: string[]): void {
    const target = new URL(url);
    let cookies = this.#byOrigin.get(target.origin);
    if (!cookies) this.#byOrigin.set(target.origin, (cookies = new Map()));
    for (const line of setCookies) {
      const parsed = parseSetCookie(line, target.pathname);
      if (!parsed) continue;
      const key = `${parsed.name};${parsed.path}`;
      if (parsed.expiresAt <= Date.now()) cookies.delete(key);
      else cookies.set(key, parsed);
    }
  }

  /** Live cookies that a request to `url` would carry, most specific path first. */
  cookiesFor(url: string | URL): StoredCookie[] {
    const target = new URL(url);
    const now = Date.now();
    return [...(this.#byOrigin.get(target.origin)?.values() ?? [])]
      .filter((c) => c.expiresAt > now && pathMatches(target.pathname, c.path))
      .sort((a, b) => b.path.length - a.path.length);
  }

  get(url: string | URL, name: string): string | undefined {
    return this.cookiesFor(url).find((c) => c.name === name)?.value;
  }

  /** Value for a Cookie request header, or '' when nothing applies. */
  header(url: string | URL): string {
    return this.cookiesFor(url)
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
  }

  clear(origin?: string): void {
    if (origin) this.#byOrigin.delete(new URL(origin).origin);
    else this.#byOrigin.clear();
  }
}

export function parseSetCookie(line: string, requestPath = '/'): StoredCookie | undefined {
  const [pair = '', ...attributes] = line.split(';');
  const eq = pair.indexOf('=');
  if (eq <= 0) return undefined;
  const cookie: StoredCookie = {
    name: pair.slice(0, eq).trim(),
    value: pair.slice(eq + 1).trim(),
    path: defaultPath(requestPath),
    expiresAt: Infinity,
    raw: line,
  };
  let maxAgeSeen = false;
  for (const attribute of attributes) {
    const [rawKey = '', ...rest] = attribute.split('=');
    const key = rawKey.trim().toLowerCase();
    const value = rest.join('=').trim();
    if (key === 'path' && value.startsWith('/')) cookie.path = value;
    else if (key === 'max-age' && /^-?\d+$/.test(value)) {
      maxAgeSeen = true;
      const seconds = Number(value);
      cookie.expiresAt = seconds <= 0 ? 0 : Date.now() + seconds * 1000;
    } else if (key === 'expires' && !maxAgeSeen) {
      const at = Date.parse(value);
      if (!Number.isNaN(at)) cookie.expiresAt = at;
    }
  }
  return cookie;
}

// RFC 6265 5.1.4: the default path is the request path up to (not including) its last '/'.
function defaultPath(requestPath: string): string {
  const slash = requestPath.lastIndexOf('/');
  return slash <= 0 ? '/' : requestPath.slice(0, slash);
}

function pathMatches(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath.charAt(cookiePath.length) === '/';
}

/** A cookie line that clears rather than sets: empty value, Max-Age<=0 or Expires in the past. */
export function isClearingCookie(line: string): boolean {
  const parsed = parseSetCookie(line);
  return !parsed || parsed.value === '' || parsed.expiresAt <= Date.now();
}

/** fetch without following redirects, carrying and updating `jar` for the request's origin. */
export async function fetchWithJar(url: string | URL, jar: CookieJar, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const cookie = jar.header(url);
  if (cookie) headers.set('cookie', cookie);
  const res = await fetch(url, { ...init, headers, redirect: 'manual' });
  jar.store(url, res.headers.getSetCookie());
  return res;
}

export interface LoginOptions {
  user?: string;
  password?: string;
  returnTo?: string;
  /** Reuse an existing jar, e.g. to log in again while the IdP session is still alive. */
  jar?: CookieJar;
}

export interface CallbackPending {
  /** Absolute callback URL the IdP redirected to (code, state, iss untouched). */
  callbackUrl: string;
  /** Holds the gateway's login cookies and the IdP session cookies. */
  jar: CookieJar;
  /** Cookie header the browser would send to the callback. */
  gatewayCookieHeader: string;
}

export interface LoginResult {
  /** `name=value` of the session cookie the callback set. */
  cookie: string;
  cookieHeader: string;
  /** The raw Set-Cookie line of that session cookie. */
  setCookie: string;
  /** Location the callback redirected to. */
  location: string;
  jar: CookieJar;
}

const MAX_REDIRECTS = 20;

async function snippet(res: Response): Promise<string> {
  const text = await res.text().catch(() => '');
  return text.length > 500 ? `${text.slice(0, 500)}…` : text;
}

/**
 * Starts a login at the gateway and follows the redirects through the IdP, using the
 * interaction fast path (`?login=&password=`), up to the redirect back to the gateway.
 */
export async function loginUpToCallback(gatewayUrl: string, opts: LoginOptions = {}): Promise<CallbackPending> {
  const jar = opts.jar ?? new CookieJar();
  const gateway = new URL(gatewayUrl);
  const start = new URL('/auth/login', gateway);
  if (opts.returnTo !== undefined) start.searchParams.set('returnTo', opts.returnTo);

  let url = start;
  let leftGateway = false;
  for (let hop = 0; hop < MAX_REDIRECTS; hop++) {
    const res = await fetchWithJar(url, jar);
    const location = res.headers.get('location');
    if (res.status < 300 || res.status >= 400 || !location) {
      throw new Error(`login flow stopped at ${url.href}: HTTP ${res.status}\n${await snippet(res)}`);
    }
    await res.body?.cancel();
    const next = new URL(location, url);
    if (next.origin === gateway.origin) {
      if (leftGateway) {
        return { callbackUrl: next.href, jar, gatewayCookieHeader: jar.header(next) };
      }
    } else {
      leftGateway = true;
      if (next.pathname.startsWith('/interaction/') && !next.searchParams.has('login')) {
        next.searchParams.set('login', opts.user ?? 'alice');
        next.searchParams.set('password', opts.password ?? 'demo');
      }
    }
    url = next;
  }
  throw new Error(`login flow did not come back to ${gateway.origin} within ${MAX_REDIRECTS} redirects`);
}

/** Calls the gateway callback with the jar's cookies and extracts the new session cookie. */
export async function completeCallback(callbackUrl: string, jar: CookieJar): Promise<LoginResult> {
  const res = await fetchWithJar(callbackUrl, jar);
  const location = res.headers.get('location');
  if (res.status < 300 || res.status >= 400 || !location) {
    throw new Error(`callback ${callbackUrl} answered HTTP ${res.status}\n${await snippet(res)}`);
  }
  await res.body?.cancel();
  const kept = res.headers.getSetCookie().filter((line) => !isClearingCookie(line));
  const setCookie = kept.find((line) => /session/i.test(line.slice(0, line.indexOf('=')))) ?? kept[0];
  if (!setCookie) {
    throw new Error(`callback set no session cookie; Set-Cookie: ${JSON.stringify(res.headers.getSetCookie())}`);
  }
  const cookie = (setCookie.split(';')[0] ?? '').trim();
  return { cookie, cookieHeader: cookie, setCookie, location, jar };
}

/** Full login through the real gateway and IdP; resolves with the gateway session cookie. */
export async function login(gatewayUrl: string, opts: LoginOptions = {}): Promise<LoginResult> {
  const pending = await loginUpToCallback(gatewayUrl, opts);
  return completeCallback(pending.callbackUrl, pending.jar);
}

/**
 * Drives the IdP's end-session page the way a browser would (its form auto-submits with
 * `logout=yes`), which ends the IdP session and makes the IdP send back-channel logout tokens.
 * Resolves with the IdP's answer to the confirmation: a 303 to the post_logout_redirect_uri,
 * or to the IdP's own `/session/end/success` page when none was requested.
 */
export async function submitIdpLogout(endSessionUrl: string, jar: CookieJar): Promise<{ status: number; location?: string }> {
  const page = await fetchWithJar(endSessionUrl, jar);
  if (page.status >= 300 && page.status < 400) {
    await page.body?.cancel();
    const location = page.headers.get('location') ?? undefined;
    return location === undefined ? { status: page.status } : { status: page.status, location };
  }
  const html = await page.text();
  const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
  const xsrf = /name="xsrf" value="([^"]+)"/.exec(html)?.[1];
  if (!action || !xsrf) throw new Error(`no logout form at ${endSessionUrl} (HTTP ${page.status})`);
  const confirm = await fetchWithJar(new URL(action.replace(/&amp;/g, '&'), endSessionUrl), jar, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ xsrf, logout: 'yes' }),
  });
  await confirm.body?.cancel();
  const location = confirm.headers.get('location') ?? undefined;
  return location === undefined ? { status: confirm.status } : { status: confirm.status, location };
}
