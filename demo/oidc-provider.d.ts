// oidc-provider ships no type declarations and @types/oidc-provider lags its majors; this covers
// the surface the embedded IdP and the tests use. Configuration stays loose on purpose: it is
// validated by oidc-provider itself at construction time.
declare module 'oidc-provider' {
  import { EventEmitter } from 'node:events';
  import type { IncomingMessage, ServerResponse } from 'node:http';

  export type Configuration = Record<string, unknown>;

  export interface InteractionResults {
    login?: { accountId: string; acr?: string; amr?: string[]; remember?: boolean; ts?: number };
    consent?: { grantId?: string };
    error?: string;
    error_description?: string;
    [key: string]: unknown;
  }

  export interface Interaction {
    uid: string;
    prompt: { name: string; reasons: string[]; details: Record<string, unknown> };
    params: Record<string, unknown>;
    session?: { accountId?: string; uid: string; cookie: string };
    grantId?: string;
    returnTo: string;
    lastSubmission?: InteractionResults;
  }

  export interface Grant {
    readonly jti: string;
    accountId?: string;
    clientId?: string;
    addOIDCScope(scope: string): void;
    addOIDCClaims(claims: string[]): void;
    addResourceScope(resource: string, scope: string): void;
    save(ttl?: number): Promise<string>;
    destroy(): Promise<void>;
  }

  export interface GrantConstructor {
    new (properties: { accountId: string; clientId: string }): Grant;
    find(id: string): Promise<Grant | undefined>;
  }

  export interface TokenModelConstructor {
    find(value: string, options?: { ignoreExpiration?: boolean }): Promise<Record<string, unknown> | undefined>;
  }

  // Provider extends Koa, which extends EventEmitter.
  export class Provider extends EventEmitter {
    constructor(issuer: string, configuration?: Configuration);
    readonly issuer: string;
    proxy: boolean;
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
    interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<Interaction>;
    interactionResult(
      req: IncomingMessage,
      res: ServerResponse,
      result: InteractionResults,
      options?: { mergeWithLastSubmission?: boolean },
    ): Promise<string>;
    interactionFinished(
      req: IncomingMessage,
      res: ServerResponse,
      result: InteractionResults,
      options?: { mergeWithLastSubmission?: boolean },
    ): Promise<void>;
    urlFor(name: string, options?: Record<string, unknown>): string;
    pathFor(name: string, options?: Record<string, unknown>): string;
    readonly Grant: GrantConstructor;
    readonly AccessToken: TokenModelConstructor;
    readonly RefreshToken: TokenModelConstructor;
    readonly AuthorizationCode: TokenModelConstructor;
    readonly Session: TokenModelConstructor;
  }

  export type OidcErrorConstructor = new (description?: string, detail?: string) => Error;
  export interface Errors {
    InvalidTarget: OidcErrorConstructor;
    InvalidGrant: OidcErrorConstructor;
    InvalidRequest: OidcErrorConstructor;
    [name: string]: OidcErrorConstructor | undefined;
  }
  export const errors: Errors;
  export default Provider;
}
