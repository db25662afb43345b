import { describe, expect, test } from 'vitest';
import { isSafeRequestId, requestIdOf } from '../../src/telemetry/request-id.ts';

describe('request ids', () => {
  test('safe values: ids of common formats up to 128 characters', () => {
    for (const value of [
      '7d0c7f3e-2f4b-4d7e-9a51-0b3c5d2f1a90',
      '01HZX3JQK5',
      'lb-4f2a:9',
      'Root=1-5759e988-bd862e3fe1be46a994272793',
      'a'.repeat(128),
    ]) {
      expect(isSafeRequestId(value), value).toBe(true);
    }
  });
  test('unsafe values: empty, too long, spaces, quotes, separators, control characters', () => {
    for (const value of ['', 'a'.repeat(129), 'a b', 'a"b', 'a;b', 'a,b', 'a\nb', 'é']) expect(isSafeRequestId(value), value).toBe(false);
  });
  test('a trusted front’s safe id is kept; an untrusted or unsafe one is replaced', () => {
    expect(requestIdOf({ 'x-request-id': 'abc-1' }, true)).toBe('abc-1');
    expect(requestIdOf({ 'x-request-id': 'abc-1' }, false)).not.toBe('abc-1');
    expect(requestIdOf({ 'x-request-id': 'abc 1' }, true)).not.toBe('abc 1');
    expect(requestIdOf({}, true)).toMatch(/^[0-9a-f-]{36}$/);
  });
});
