// Types of bff-client.js (docs/frontend.md).

export interface BffClientOptions {
  /** The CSRF header the gateway expects (`csrf.header`); default `x-csrf`. */
  csrfHeader?: string;
  /** Navigate to the login when a call answers 401 session_expired/unauthenticated; default true. */
  redirectOnSessionEnd?: boolean;
  /** How long before the session's idle/absolute expiry the `expiring` event fires; default 60 s. */
  expiryWarningMs?: number;
  /** How the client navigates (tests, routers); default `location.assign`. */
  navigate?: (url: string) => void;
}

export interface LoginParams {
  /** Where the login comes back to; default the current page. */
  returnTo?: string;
  prompt?: 'none' | 'login' | 'consent' | 'select_account' | string;
  /** Seconds: the IdP must have authenticated the user at most this long ago. */
  maxAge?: number;
  acrValues?: string | string[];
  loginHint?: string;
  uiLocales?: string | string[];
}

export interface BffUser {
  sub: string;
  claims: Record<string, unknown>;
  acr: string | null;
  auth_time: number | null;
  session: { expiresAt: string; idleExpiresAt: string };
  logoutUrl: string;
}

export interface BffSession {
  /** Names the session for endSession(); not a cookie, useless to anyone else. */
  ref: string;
  current: boolean;
  device: string;
  createdAt: string;
  lastSeenAt: string;
  expiresAt: string;
}

export interface StepUpDetail {
  loginUrl: string;
  message: string;
  response: Response;
}

export interface SessionEndDetail {
  error: 'session_expired' | 'unauthenticated';
  response: Response;
}

export interface ExpiringDetail {
  expiresAt: Date;
  reason: 'idle' | 'absolute';
}

export interface BffClientEventMap {
  stepup: CustomEvent<StepUpDetail>;
  /** Cancelable: preventDefault() keeps the client from navigating to the login. */
  sessionend: CustomEvent<SessionEndDetail>;
  expiring: CustomEvent<ExpiringDetail>;
}

export declare class BffClient extends EventTarget {
  constructor(options?: BffClientOptions);
  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
  loginUrl(params?: LoginParams): string;
  login(params?: LoginParams): void;
  checkSession(params?: Omit<LoginParams, 'prompt'>): void;
  stepUp(loginUrl: string, returnTo?: string): void;
  loginError(clear?: boolean): string | null;
  user(): Promise<BffUser | null>;
  logout(): Promise<void>;
  sessions(): Promise<BffSession[]>;
  endSession(ref: string): Promise<number>;
  endOtherSessions(): Promise<number>;
  addEventListener<K extends keyof BffClientEventMap>(
    type: K,
    listener: (event: BffClientEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof BffClientEventMap>(
    type: K,
    listener: (event: BffClientEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}

export declare function createBffClient(options?: BffClientOptions): BffClient;
