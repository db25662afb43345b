/**
 * Per route, what the gateway decides and says about the user (docs/authorization.md): whether
 * the user may use the route (`allow`), and the identity headers sent with the request (claim
 * headers, the identity assertion). Built once from the configuration; the proxy, WebSockets
 * and the forward-auth check all ask this one place.
 */
import type { RouteConfig } from '../config/load.ts';
import { GatewayError } from '../errors.ts';
import type { SessionRecord } from '../session/sessions.ts';
import type { AssertionSigner } from './assertion.ts';
import { claimValue, sessionClaims } from './claims.ts';
import { claimHeaderValue } from './header-value.ts';
import { IdentityHeaderNames } from './identity-headers.ts';
import { compileAllow, type Rule } from './rules.ts';

/** What identity needs of a session: its store handle (for the assertion cache) and record. */
export interface IdentitySession {
  handle: string;
  record: SessionRecord;
}

interface CompiledRoute {
  rule: Rule | undefined;
  claimHeaders: ReadonlyArray<{ header: string; claim: string }>;
  assertion: { audience: string; select: readonly string[] | undefined } | undefined;
}

export interface RouteIdentityOptions {
  routes: readonly RouteConfig[];
  signer?: AssertionSigner | undefined;
  /** The assertion's header name, reserved even when no route sends it. */
  assertionHeader?: string | undefined;
}

export class RouteIdentity {
  /** Every identity header name: stripped from every client request on every route. */
  readonly names: IdentityHeaderNames;
  private readonly compiled = new Map<string, CompiledRoute>();
  private readonly signer: AssertionSigner | undefined;
  private readonly assertionHeader: string | undefined;

  constructor({ routes, signer, assertionHeader }: RouteIdentityOptions) {
    this.signer = signer;
    this.assertionHeader = assertionHeader;
    const names: string[] = assertionHeader ? [assertionHeader] : [];
    for (const route of routes) {
      const claimHeaders = route.claimHeaders ?? [];
      names.push(...claimHeaders.map((entry) => entry.header));
      const assertion = route.identityAssertion
        ? { audience: route.identityAssertion.audience ?? route.upstream.origin, select: route.identityAssertion.claims }
        : undefined;
      this.compiled.set(route.path, { rule: compileAllow(route.allow), claimHeaders, assertion });
    }
    this.names = new IdentityHeaderNames(names);
  }

  private of(route: RouteConfig): CompiledRoute | undefined {
    return this.compiled.get(route.path);
  }

  /** Whether a request on this route needs the session even when its token mode does not. */
  usesSession(route: RouteConfig): boolean {
    const compiled = this.of(route);
    return !!compiled && (compiled.rule !== undefined || compiled.claimHeaders.length > 0 || compiled.assertion !== undefined);
  }

  /** Whether the route has `allow` rules. */
  hasRules(route: RouteConfig): boolean {
    return this.of(route)?.rule !== undefined;
  }

  /**
   * Throws 401 `unauthenticated` when the route has rules and there is no session, 403
   * `forbidden` when the user's claims fail them. The log detail names the route, never a claim.
   */
  authorize(route: RouteConfig, session: IdentitySession | undefined): void {
    const rule = this.of(route)?.rule;
    if (!rule) return;
    if (!session) throw new GatewayError('unauthenticated', { detail: `route ${route.path} has allow rules and there is no session` });
    if (!rule(sessionClaims(session.record)))
      throw new GatewayError('forbidden', { detail: `allow rules of route ${route.path} refused the user` });
  }

  /** The identity headers for an upstream request (or a forward-auth answer) on this route. */
  async headers(route: RouteConfig, session: IdentitySession | undefined): Promise<Record<string, string>> {
    const compiled = this.of(route);
    const out: Record<string, string> = {};
    if (!compiled || !session) return out;
    const claims = sessionClaims(session.record);
    for (const { header, claim } of compiled.claimHeaders) {
      const value = claimHeaderValue(claimValue(claims, claim));
      if (value !== undefined) out[header] = value;
    }
    if (compiled.assertion && this.signer && this.assertionHeader) {
      out[this.assertionHeader] = await this.signer.assertion({
        session: session.handle,
        route: route.path,
        audience: compiled.assertion.audience,
        claims,
        select: compiled.assertion.select,
      });
    }
    return out;
  }
}
