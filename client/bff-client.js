// bff-client: the browser side of bff-gateway, as one dependency-free ES module
// (docs/frontend.md). It never sees a token: the session is an HttpOnly cookie the page cannot
// read, and everything here is same-origin fetches and top-level navigations.
//
//   const bff = createBffClient();
//   const res = await bff.fetch('/api/orders');   // x-csrf added; 401 session ends -> login
//   bff.addEventListener('stepup', (e) => bff.stepUp(e.detail.loginUrl));
//   bff.addEventListener('expiring', (e) => showStaySignedIn(e.detail.expiresAt));

const SESSION_ENDED = new Set(['session_expired', 'unauthenticated']);
const LOGIN_PARAMS = { prompt: 'prompt', maxAge: 'max_age', acrValues: 'acr_values', loginHint: 'login_hint', uiLocales: 'ui_locales' };

/** The page's own path, query and fragment: where a login should come back to. */
function currentPath() {
  const { pathname, search, hash } = window.location;
  return `${pathname}${search}${hash}`;
}

/** Reads a JSON error body without consuming the response the caller gets. */
async function errorOf(response) {
  if (!(response.headers.get('content-type') || '').includes('application/json')) return undefined;
  try {
    return await response.clone().json();
  } catch {
    return undefined;
  }
}

export class BffClient extends EventTarget {
  constructor(options = {}) {
    super();
    this.options = {
      csrfHeader: 'x-csrf',
      redirectOnSessionEnd: true,
      expiryWarningMs: 60_000,
      navigate: (url) => window.location.assign(url),
      ...options,
    };
    this.timer = undefined;
    this.deadlines = undefined;
  }

  /** `fetch` for the gateway: same-origin credentials, the CSRF header, session-end and step-up handling. */
  async fetch(input, init = {}) {
    const headers = new Headers(init.headers);
    headers.set(this.options.csrfHeader, '1');
    const response = await fetch(input, { ...init, headers, credentials: 'same-origin' });
    if (response.status !== 401) {
      this.activity();
      return response;
    }
    const body = await errorOf(response);
    if (body?.error === 'step_up_required') {
      this.dispatchEvent(new CustomEvent('stepup', { detail: { loginUrl: body.loginUrl, message: body.message, response } }));
    } else if (SESSION_ENDED.has(body?.error)) {
      this.clearExpiry();
      const proceed = this.dispatchEvent(new CustomEvent('sessionend', { cancelable: true, detail: { error: body.error, response } }));
      if (proceed && this.options.redirectOnSessionEnd) this.login();
    }
    return response;
  }

  /** The login URL for these parameters (returnTo defaults to the current page). */
  loginUrl(params = {}) {
    const query = new URLSearchParams({ returnTo: params.returnTo ?? currentPath() });
    for (const [name, wire] of Object.entries(LOGIN_PARAMS)) {
      const value = params[name];
      if (value === undefined || value === null) continue;
      query.set(wire, Array.isArray(value) ? value.join(' ') : String(value));
    }
    return `/auth/login?${query}`;
  }

  /** Navigates to the gateway's login (top level: the IdP's pages cannot be framed). */
  login(params = {}) {
    this.options.navigate(this.loginUrl(params));
  }

  /** The silent check: a top-level `prompt=none` login that comes back with or without a session. */
  checkSession(params = {}) {
    this.login({ ...params, prompt: 'none' });
  }

  /** Follows a step_up_required `loginUrl`, coming back to the current page rather than the API path. */
  stepUp(loginUrl, returnTo = currentPath()) {
    const url = new URL(loginUrl, window.location.origin);
    if (url.origin !== window.location.origin || url.pathname !== '/auth/login') throw new Error('not a gateway login URL');
    url.searchParams.set('returnTo', returnTo);
    this.options.navigate(`${url.pathname}${url.search}`);
  }

  /** The `error=` a login came back with (login_required, access_denied, ...), or null. */
  loginError(clear = true) {
    const url = new URL(window.location.href);
    const error = url.searchParams.get('error');
    if (error !== null && clear) {
      url.searchParams.delete('error');
      window.history.replaceState(window.history.state, '', `${url.pathname}${url.search}${url.hash}`);
    }
    return error;
  }

  /** GET /auth/user: the user, or null without a session. Schedules the `expiring` event. */
  async user() {
    const response = await fetch('/auth/user', { headers: { [this.options.csrfHeader]: '1' }, credentials: 'same-origin' });
    if (response.status === 401) {
      this.clearExpiry();
      return null;
    }
    if (!response.ok) throw new Error(`GET /auth/user answered ${response.status}`);
    const user = await response.json();
    this.scheduleExpiry(user.session, response.headers.get('date'));
    return user;
  }

  /** POST /auth/logout, then the navigation to the returned `logoutUrl` (the IdP's logout). */
  async logout() {
    const response = await fetch('/auth/logout', {
      method: 'POST',
      headers: { [this.options.csrfHeader]: '1' },
      credentials: 'same-origin',
    });
    this.clearExpiry();
    const body = response.ok ? await response.json() : undefined;
    this.options.navigate(body?.logoutUrl ?? '/');
  }

  /** GET /auth/sessions: this user's sessions on every device. */
  async sessions() {
    const response = await this.json('/auth/sessions');
    return response.sessions;
  }

  /** Ends another session of this user by its `ref`. Resolves with the number ended. */
  async endSession(ref) {
    return (await this.json('/auth/sessions/end', { session: ref })).ended;
  }

  /** "Log out other devices". Resolves with the number ended. */
  async endOtherSessions() {
    return (await this.json('/auth/sessions/end', { others: true })).ended;
  }

  async json(path, body) {
    const init = body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
    const response = await this.fetch(path, init);
    const parsed = await response.json();
    if (!response.ok)
      throw Object.assign(new Error(parsed.message || `${path} answered ${response.status}`), {
        status: response.status,
        code: parsed.error,
      });
    return parsed;
  }

  /**
   * The idle and absolute deadlines, on this browser's clock (corrected by the server's `Date`),
   * and the idle window: each later successful call moves the idle deadline by that window, as
   * the gateway slides the session. An estimate: the gateway slides lazily, so call user() to be sure.
   */
  scheduleExpiry(session, dateHeader) {
    if (!session) return;
    const serverNow = Date.parse(dateHeader ?? '') || Date.now();
    const skew = Date.now() - serverNow;
    const idle = Date.parse(session.idleExpiresAt) + skew;
    const absolute = Date.parse(session.expiresAt) + skew;
    this.deadlines = { idle, absolute, idleWindow: Math.max(0, idle - Date.now()) };
    this.armExpiry();
  }

  activity() {
    if (!this.deadlines) return;
    this.deadlines.idle = Math.max(this.deadlines.idle, Date.now() + this.deadlines.idleWindow);
    this.armExpiry();
  }

  armExpiry() {
    clearTimeout(this.timer);
    const { idle, absolute } = this.deadlines;
    const reason = absolute <= idle ? 'absolute' : 'idle';
    const expiresAt = Math.min(idle, absolute);
    const fire = () => this.dispatchEvent(new CustomEvent('expiring', { detail: { expiresAt: new Date(expiresAt), reason } }));
    // Timers hold at most 2^31-1 ms; a session that long is re-armed by later activity anyway.
    this.timer = setTimeout(fire, Math.min(Math.max(0, expiresAt - this.options.expiryWarningMs - Date.now()), 2 ** 31 - 1));
  }

  clearExpiry() {
    clearTimeout(this.timer);
    this.deadlines = undefined;
  }
}

export function createBffClient(options) {
  return new BffClient(options);
}
