/**
 * Comparing a secret the client sent with the one we hold, in constant time: a byte-by-byte
 * early exit would let an attacker learn the secret one character at a time from timings.
 */
import { timingSafeEqual } from 'node:crypto';

export function sameSecret(expected: string, given: string | undefined | null): boolean {
  if (typeof given !== 'string') return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}
