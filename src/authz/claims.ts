/**
 * The user's claims as rules, claim headers and assertions see them: the session's ID-token and
 * userinfo claims, with `sub` always the session's subject. A name that is not a claim of its
 * own may be a dotted path into nested objects (`realm_access.roles` in Keycloak tokens).
 */
export type Claims = Readonly<Record<string, unknown>>;

export function claimValue(claims: Claims, name: string): unknown {
  if (Object.hasOwn(claims, name)) return claims[name];
  if (!name.includes('.')) return undefined;
  let current: unknown = claims;
  for (const part of name.split('.')) {
    if (!current || typeof current !== 'object' || Array.isArray(current) || !Object.hasOwn(current, part)) return undefined;
    current = (current as Record<string, unknown>)[part];
  }
  return current;
}

/** The claims of a session record, `sub` taken from the record itself. */
export function sessionClaims(record: { sub: string; claims: Record<string, unknown> }): Claims {
  return { ...record.claims, sub: record.sub };
}
