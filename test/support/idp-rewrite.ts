/**
 * Making the embedded IdP look like a different IdP without a second issuer: its JSON answers
 * are rewritten as oidc-provider sets them. The issuer, keys and tokens stay real, so the
 * gateway's validation runs unchanged. Rewrites apply to requests that arrive after the call
 * (a gateway discovers once: start a new one afterwards).
 *
 * Koa composes the middleware stack when the server callback is created, so a late `use()`
 * never runs; the hook goes on the app's response prototype instead (`ctx.body = ...`), which
 * every later request inherits.
 */
import type { Idp } from '../../fixtures/idp/idp.ts';

interface KoaResponse {
  ctx: { path: string; method: string };
}

type Rewrite = (body: Record<string, unknown>) => Record<string, unknown>;

function bodyDescriptor(proto: object): PropertyDescriptor {
  for (let level: object | null = proto; level; level = Object.getPrototypeOf(level)) {
    const descriptor = Object.getOwnPropertyDescriptor(level, 'body');
    if (descriptor?.set && descriptor.get) return descriptor;
  }
  throw new Error('koa response prototype without a body accessor');
}

function rewriteJson(idp: Idp, matches: (ctx: KoaResponse['ctx']) => boolean, rewrite: Rewrite): void {
  const proto = (idp.provider as unknown as { response: object }).response;
  const inherited = bodyDescriptor(proto);
  Object.defineProperty(proto, 'body', {
    configurable: true,
    get(this: KoaResponse) {
      return inherited.get!.call(this);
    },
    set(this: KoaResponse, value: unknown) {
      const plainObject =
        value !== null &&
        typeof value === 'object' &&
        !Buffer.isBuffer(value) &&
        !Array.isArray(value) &&
        typeof (value as { pipe?: unknown }).pipe !== 'function';
      inherited.set!.call(this, plainObject && matches(this.ctx) ? rewrite({ ...(value as Record<string, unknown>) }) : value);
    },
  });
}

/** Discovery without `end_session_endpoint`: an IdP that offers no RP-initiated logout. */
export function withoutEndSession(idp: Idp): void {
  rewriteJson(
    idp,
    (ctx) => ctx.path === '/.well-known/openid-configuration',
    ({ end_session_endpoint: _dropped, ...rest }) => rest,
  );
}

/** Token responses carry `refresh_expires_in` (as Keycloak sends), in seconds. */
export function withRefreshExpiresIn(idp: Idp, seconds: number): void {
  rewriteJson(
    idp,
    (ctx) => ctx.path === '/token' && ctx.method === 'POST',
    (body) => (typeof body.refresh_token === 'string' ? { ...body, refresh_expires_in: seconds } : body),
  );
}
