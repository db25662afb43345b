import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { Sealer } from '../../src/session/seal.ts';

const KEY_A = randomBytes(32);
const KEY_B = randomBytes(32);
const RECORD = {
  tokens: { accessToken: 'at-123', refreshToken: 'rt-456' },
  claims: { sub: 'alice', name: 'Ålice ✓' },
  expiresAt: 1_700_000_000_000,
};

/** Flips one bit of the base64url part `index` of an envelope. */
function flip(envelope: string, index: number, at = 0): string {
  const parts = envelope.split('.');
  const bytes = Buffer.from(parts[index] as string, 'base64url');
  bytes[at % bytes.length] = (bytes[at % bytes.length] as number) ^ 0x01;
  parts[index] = bytes.toString('base64url');
  return parts.join('.');
}

describe('AES-256-GCM sealing', () => {
  test('round trip: what is sealed opens to an equal value, and the envelope hides it', () => {
    const sealer = new Sealer([KEY_A]);
    const sealed = sealer.seal(RECORD, 'session');
    expect(sealed).toMatch(/^v1\.[\w-]+\.[\w-]{16}\.[\w-]+$/);
    expect(sealed).not.toContain('at-123');
    expect(Buffer.from(sealed.split('.')[3] as string, 'base64url').toString('latin1')).not.toContain('alice');
    expect(sealer.open(sealed, 'session')).toEqual({ value: RECORD, stale: false });
  });

  test('a fresh random IV each time: two seals of the same value differ', () => {
    const sealer = new Sealer([KEY_A]);
    const one = sealer.seal(RECORD);
    const two = sealer.seal(RECORD);
    expect(one).not.toBe(two);
    expect(one.split('.')[2]).not.toBe(two.split('.')[2]);
    expect(sealer.open(one)?.value).toEqual(sealer.open(two)?.value);
  });

  test('any tampering yields undefined: IV, ciphertext, tag, key id, version', () => {
    const sealer = new Sealer([KEY_A]);
    const sealed = sealer.seal(RECORD, 'ctx');
    const body = Buffer.from(sealed.split('.')[3] as string, 'base64url');
    for (let at = 0; at < body.length; at += 1) expect(sealer.open(flip(sealed, 3, at), 'ctx')).toBeUndefined();
    for (let at = 0; at < 12; at += 1) expect(sealer.open(flip(sealed, 2, at), 'ctx')).toBeUndefined();
    expect(sealer.open(sealed.replace(/^v1\./, 'v2.'), 'ctx')).toBeUndefined();
    expect(sealer.open(sealed.replace(/^v1\.[^.]+/, 'v1.AAAAAAAA'), 'ctx')).toBeUndefined();
    expect(sealer.open(`${sealed}.extra`, 'ctx')).toBeUndefined();
    expect(sealer.open(sealed.slice(0, -4), 'ctx')).toBeUndefined();
  });

  test('a blob sealed for one context does not open in another', () => {
    const sealer = new Sealer([KEY_A]);
    const sealed = sealer.seal(RECORD, 'session:handle-1');
    expect(sealer.open(sealed, 'session:handle-2')).toBeUndefined();
    expect(sealer.open(sealed, 'login')).toBeUndefined();
    expect(sealer.open(sealed)).toBeUndefined();
    expect(sealer.open(sealed, 'session:handle-1')?.value).toEqual(RECORD);
  });

  test('a different key cannot open it', () => {
    expect(new Sealer([KEY_B]).open(new Sealer([KEY_A]).seal(RECORD))).toBeUndefined();
  });

  test('key rotation: the first key seals, older keys still open and report stale', () => {
    const before = new Sealer([KEY_A]).seal(RECORD, 'c');
    const rotated = new Sealer([KEY_B, KEY_A]);
    expect(rotated.open(before, 'c')).toEqual({ value: RECORD, stale: true });
    const after = rotated.seal(RECORD, 'c');
    expect(rotated.open(after, 'c')).toEqual({ value: RECORD, stale: false });
    expect(new Sealer([KEY_B]).open(after, 'c')?.value).toEqual(RECORD);
    expect(new Sealer([KEY_A]).open(after, 'c')).toBeUndefined();
  });

  test('keys must be 32 bytes and at least one is needed', () => {
    expect(() => new Sealer([])).toThrow();
    expect(() => new Sealer([randomBytes(16)])).toThrow();
    expect(() => new Sealer([KEY_A, randomBytes(31)])).toThrow();
  });

  test('property: arbitrary strings never throw and never open', () => {
    const sealer = new Sealer([KEY_A]);
    const kid = sealer.seal(1).split('.')[1] as string;
    const part = fc.stringMatching(/^[A-Za-z0-9_-]{0,40}$/);
    const envelope = fc.oneof(
      fc.string(),
      fc.tuple(part, part).map(([iv, body]) => `v1.${kid}.${iv}.${body}`),
    );
    fc.assert(
      fc.property(envelope, (text) => sealer.open(text) === undefined),
      { numRuns: 2000 },
    );
  });
});
