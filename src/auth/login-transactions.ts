/**
 * Pending logins, bound to the browser by the short-lived login cookie
 * (docs/http-interface.md#cookies).
 * The cookie holds a sealed list of transactions (state, nonce, PKCE verifier, returnTo, the
 * handle of the session to replace), so
 * an anonymous visitor costs no store write and nothing in it can be read or forged. Several
 * tabs may log in at once, so up to MAX_PENDING transactions are kept; each lives 10 minutes.
 * Single use is enforced at the callback with a store-side one-time claim on the state.
 */
import { hashed, type OneTimeClaims } from '../session/one-time.ts';
import type { Sealer } from '../session/seal.ts';

export interface LoginTransaction {
  state: string;
  nonce: string;
  codeVerifier: string;
  returnTo: string;
  createdAt: number;
  /**
   * Store handle of the session this browser had when the login started. The callback ends it:
   * with SameSite=Strict the browser withholds the session cookie on the IdP's cross-site
   * redirect back, so the callback cannot see that session itself.
   */
  previousHandle?: string;
  /** What this login asked for (`acr_values`, `max_age`): the ID token must satisfy it. */
  acrValues?: string[];
  maxAge?: number;
}

export const LOGIN_TTL_MS = 10 * 60_000;
const MAX_PENDING = 5;
const SEAL_CONTEXT = 'login-transactions';

export class LoginTransactions {
  constructor(
    private readonly sealer: Sealer,
    private readonly now: () => number,
    private readonly claims: OneTimeClaims,
  ) {}

  /** The live transactions in a login cookie value; tampered or expired ones are dropped. */
  read(cookieValue: string | undefined): LoginTransaction[] {
    if (!cookieValue) return [];
    const opened = this.sealer.open<LoginTransaction[]>(cookieValue, SEAL_CONTEXT);
    if (!opened || !Array.isArray(opened.value)) return [];
    const oldest = this.now() - LOGIN_TTL_MS;
    return opened.value.filter((tx) => typeof tx?.state === 'string' && tx.createdAt > oldest);
  }

  /** Adds a transaction, keeping the newest MAX_PENDING. Returns the new cookie value. */
  add(existing: LoginTransaction[], transaction: LoginTransaction): string {
    return this.sealer.seal([...existing, transaction].slice(-MAX_PENDING), SEAL_CONTEXT);
  }

  /**
   * Uses up a transaction's state, on every instance: true the first time only, so a replayed
   * callback fails even with the login cookie copied. The state is never stored in clear.
   */
  claim(state: string): Promise<boolean> {
    return this.claims.claim('login-state', hashed(state), LOGIN_TTL_MS);
  }
}
