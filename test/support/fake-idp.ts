/**
 * A stand-in for the IdP client's token grants (src/oidc/client.ts `TokenGrants`), for unit tests
 * of the token layer: no process, no network. Each grant is answered by the next scripted
 * outcome (a token response or an error to throw); without a script, it issues fresh tokens
 * with rotation. Every call is recorded, and a call can be held open to test concurrency.
 */
import type { TokenGrants, TokenResponse } from '../../src/oidc/client.ts';
import { IdpError } from '../../src/oidc/idp-error.ts';

export interface GrantCall {
  grant: 'refresh' | 'tokenExchange' | 'clientCredentials';
  token?: string;
  parameters?: Record<string, string>;
}

export type Outcome = Partial<Pick<TokenResponse, 'access_token' | 'refresh_token' | 'expires_in' | 'token_type' | 'id_token'>> | IdpError;

export class FakeIdp implements TokenGrants {
  readonly calls: GrantCall[] = [];
  readonly revoked: string[] = [];
  readonly script: Outcome[] = [];
  supportsTokenExchange = false;
  canRevoke = true;
  /** When set, every grant waits for it before answering. */
  gate: Promise<void> | undefined;
  private issued = 0;

  /** Tokens issued so far get distinct names: at-1, rt-1, ... */
  private answer(call: GrantCall): Promise<TokenResponse> {
    this.calls.push(call);
    const outcome = this.script.shift();
    const wait = this.gate ?? Promise.resolve();
    return wait.then(() => {
      if (outcome instanceof IdpError) throw outcome;
      this.issued += 1;
      const response = {
        access_token: `at-${this.issued}`,
        token_type: 'bearer',
        expires_in: 300,
        refresh_token: `rt-${this.issued}`,
        ...outcome,
      };
      return { ...response, claims: () => undefined, expiresIn: () => response.expires_in } as unknown as TokenResponse;
    });
  }

  refresh(refreshToken: string, parameters?: Record<string, string>): Promise<TokenResponse> {
    return this.answer({ grant: 'refresh', token: refreshToken, parameters });
  }

  tokenExchange(subjectToken: string, parameters: Record<string, string>): Promise<TokenResponse> {
    return this.answer({ grant: 'tokenExchange', token: subjectToken, parameters });
  }

  clientCredentials(parameters: Record<string, string>): Promise<TokenResponse> {
    return this.answer({ grant: 'clientCredentials', parameters });
  }

  async revoke(token: string): Promise<void> {
    this.revoked.push(token);
  }
}

export const rejected = (error = 'invalid_grant') => new IdpError('rejected', `HTTP 400 ${error}`, { error });
export const unavailable = (retryAfterMs?: number) => new IdpError('unavailable', 'HTTP 503', { retryAfterMs });
