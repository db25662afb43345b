/**
 * One-time things in the shared store, each in a named namespace, so no caller invents keys:
 *
 * - claims: "has this value been seen?", true for the first claimant only, on every instance.
 *   `login-state` (a callback's `state`: a replayed callback fails even with the login cookie
 *   copied), `logout-jti` (a back-channel logout token's `iss` + `jti`: a replay is refused),
 *   `session-ended` (a session's handle: its ending was accounted for, see Sessions.markEnded).
 * - values: a sealed value stored once and taken once (`logout-handoff`, the record behind the
 *   logout hand-off URL). Values live apart from session records: they never show up in session
 *   listings and taking one announces no session end.
 *
 * Secrets that name a claim or a value (a state, a jti, a hand-off handle) are hashed before they
 * reach the store. The key spellings (`state.`, `jti.`, `ended.`) are the ones stores already
 * hold, so instances of different versions agree during a rolling upgrade.
 */
import { createHash } from 'node:crypto';
import type { SessionStore } from './store.ts';

const CLAIM_PREFIX = {
  'login-state': 'state',
  'logout-jti': 'jti',
  'session-ended': 'ended',
} as const;

export type ClaimNamespace = keyof typeof CLAIM_PREFIX;

const VALUE_PREFIX = {
  'logout-handoff': 'logout',
} as const;

export type ValueNamespace = keyof typeof VALUE_PREFIX;

/** SHA-256, base64url: how a secret names its claim or value in the store. */
export function hashed(secret: string): string {
  return createHash('sha256').update(secret).digest('base64url');
}

export class OneTimeClaims {
  constructor(private readonly store: Pick<SessionStore, 'claimOnce'>) {}

  /** True the first time `name` is claimed in `namespace` (within `ttlMs`), false after. */
  claim(namespace: ClaimNamespace, name: string, ttlMs: number): Promise<boolean> {
    return this.store.claimOnce(`${CLAIM_PREFIX[namespace]}.${name}`, ttlMs);
  }
}

export class OneTimeValues {
  constructor(private readonly store: Pick<SessionStore, 'putOneTime' | 'takeOneTime'>) {}

  put(namespace: ValueNamespace, name: string, value: string, ttlMs: number): Promise<void> {
    return this.store.putOneTime(`${VALUE_PREFIX[namespace]}.${name}`, value, ttlMs);
  }

  /** The value, removed in the same step: of two concurrent takers exactly one gets it. */
  take(namespace: ValueNamespace, name: string): Promise<string | null> {
    return this.store.takeOneTime(`${VALUE_PREFIX[namespace]}.${name}`);
  }
}
