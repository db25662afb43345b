import { describe, expect, test } from 'vitest';
import { claimHeaderValue, MAX_CLAIM_HEADER_LENGTH } from '../../src/authz/header-value.ts';
import { IdentityHeaderNames } from '../../src/authz/identity-headers.ts';

describe('claim header values', () => {
  test('plain values pass unchanged, addresses stay readable', () => {
    expect(claimHeaderValue('alice')).toBe('alice');
    expect(claimHeaderValue('alice@example.com')).toBe('alice@example.com');
    expect(claimHeaderValue(42)).toBe('42');
    expect(claimHeaderValue(true)).toBe('true');
  });

  test('CR, LF, NUL, spaces, % and commas are encoded: no value can split a header', () => {
    const value = claimHeaderValue('a\r\nX-Admin: 1\0b, 100%') as string;
    expect(value).toBe('a%0D%0AX-Admin:%201%00b%2C%20100%25');
    expect(value).not.toMatch(/[\r\n\0 ,]/);
    expect(decodeURIComponent(value)).toBe('a\r\nX-Admin: 1\0b, 100%');
  });

  test('non-ASCII is UTF-8 percent-encoded and decodes back', () => {
    const value = claimHeaderValue('Zoë Ångström 山田') as string;
    expect(value).toMatch(/^[\x21-\x7e]+$/);
    expect(decodeURIComponent(value)).toBe('Zoë Ångström 山田');
  });

  test('lists are joined with commas, each element encoded; objects as JSON', () => {
    expect(claimHeaderValue(['admins', 'a,b', 'x y'])).toBe('admins,a%2Cb,x%20y');
    expect(decodeURIComponent(claimHeaderValue({ a: 1 }) as string)).toBe('{"a":1}');
  });

  test('absent, null and over-long values are not sent at all', () => {
    expect(claimHeaderValue(undefined)).toBeUndefined();
    expect(claimHeaderValue(null)).toBeUndefined();
    expect(claimHeaderValue('x'.repeat(MAX_CLAIM_HEADER_LENGTH))).toHaveLength(MAX_CLAIM_HEADER_LENGTH);
    expect(claimHeaderValue('x'.repeat(MAX_CLAIM_HEADER_LENGTH + 1))).toBeUndefined();
    expect(claimHeaderValue(' '.repeat(MAX_CLAIM_HEADER_LENGTH / 2))).toBeUndefined();
  });
});

describe('identity header names', () => {
  test('every case and underscore spelling is stripped; other headers stay', () => {
    const names = new IdentityHeaderNames(['x-user-email', 'X-Identity-Assertion']);
    const headers: Record<string, string> = {
      'x-user-email': 'a',
      x_user_email: 'b',
      'x_user-email': 'c',
      'X-USER-EMAIL': 'd',
      x_identity_assertion: 'e',
      'x-user-emails': 'kept',
      accept: 'kept',
    };
    expect(names.strip(headers)).toEqual({ 'x-user-emails': 'kept', accept: 'kept' });
  });
});
