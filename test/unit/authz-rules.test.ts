import { describe, expect, test } from 'vitest';
import { compileAllow, type AllowConfig } from '../../src/authz/rules.ts';

const rule = (allow: AllowConfig) => compileAllow(allow) as NonNullable<ReturnType<typeof compileAllow>>;

describe('allow rules', () => {
  test('no rules: every user passes (no predicate at all)', () => {
    expect(compileAllow(undefined)).toBeUndefined();
  });

  test('equals compares type and value; a list claim never equals', () => {
    const admin = rule({ anyOf: [{ claim: 'role', equals: ['admin', 'owner'] }] });
    expect(admin({ role: 'admin' })).toBe(true);
    expect(admin({ role: 'owner' })).toBe(true);
    expect(admin({ role: 'Admin' })).toBe(false);
    expect(admin({ role: ['admin'] })).toBe(false);
    expect(admin({})).toBe(false);
    const verified = rule({ anyOf: [{ claim: 'email_verified', equals: [true] }] });
    expect(verified({ email_verified: true })).toBe(true);
    expect(verified({ email_verified: 'true' })).toBe(false);
  });

  test('contains: membership in a list claim; a single string counts as a list of one', () => {
    const staff = rule({ anyOf: [{ claim: 'groups', contains: ['staff', 'ops'] }] });
    expect(staff({ groups: ['users', 'ops'] })).toBe(true);
    expect(staff({ groups: ['users'] })).toBe(false);
    expect(staff({ groups: 'staff' })).toBe(true);
    expect(staff({ groups: 'staffers' })).toBe(false);
    expect(staff({ groups: { staff: true } })).toBe(false);
    expect(staff({})).toBe(false);
  });

  test('dotted claim names reach into nested objects; an own dotted name wins', () => {
    const realm = rule({ anyOf: [{ claim: 'realm_access.roles', contains: ['admin'] }] });
    expect(realm({ realm_access: { roles: ['admin'] } })).toBe(true);
    expect(realm({ 'realm_access.roles': ['admin'], realm_access: { roles: [] } })).toBe(true);
    expect(realm({ realm_access: ['admin'] })).toBe(false);
  });

  test('emailDomain: exact domain, case-insensitive, refused when the IdP says unverified', () => {
    const corp = rule({ anyOf: [{ emailDomain: ['example.com'] }] });
    expect(corp({ email: 'alice@Example.COM' })).toBe(true);
    expect(corp({ email: 'alice@example.com', email_verified: false })).toBe(false);
    expect(corp({ email: 'alice@sub.example.com' })).toBe(false);
    expect(corp({ email: 'alice@example.com.evil.test' })).toBe(false);
    expect(corp({ email: 'example.com' })).toBe(false);
    expect(corp({ email: '"x@example.com"@evil.test' })).toBe(false);
    expect(corp({})).toBe(false);
    const upn = rule({ anyOf: [{ claim: 'upn', emailDomain: ['corp.test'] }] });
    expect(upn({ upn: 'bob@corp.test', email: 'bob@gmail.test' })).toBe(true);
  });

  test('anyOf needs one, allOf needs all, both together need both', () => {
    const combined = rule({
      anyOf: [
        { claim: 'groups', contains: ['admins'] },
        { claim: 'groups', contains: ['support'] },
      ],
      allOf: [{ claim: 'acr', equals: ['urn:mfa'] }, { emailDomain: ['example.com'] }],
    });
    const base = { acr: 'urn:mfa', email: 'a@example.com' };
    expect(combined({ ...base, groups: ['support'] })).toBe(true);
    expect(combined({ ...base, groups: ['users'] })).toBe(false);
    expect(combined({ ...base, acr: 'urn:pwd', groups: ['admins'] })).toBe(false);
    expect(combined({ ...base, email: 'a@other.test', groups: ['admins'] })).toBe(false);
  });
});
