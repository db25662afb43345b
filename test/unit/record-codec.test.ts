/**
 * The stored form of a session record (src/session/record-codec.ts): the compact binary format
 * round-trips every record exactly, is authenticated (tampering, another handle, another key:
 * nothing opens), follows key rotation, and records written in the older text format still
 * open — through the codec and through Sessions on a store.
 */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { decodePlain, encodeRecord, openRecord, sealRecord } from '../../src/session/record-codec.ts';
import { Sealer } from '../../src/session/seal.ts';
import { Sessions, type SessionRecord } from '../../src/session/sessions.ts';
import { tokenWorld } from '../support/token-world.ts';

const KEY_A = randomBytes(32);
const KEY_B = randomBytes(32);
const HANDLE = Sessions.handleOf('browser-session-id');
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
const jwt = (payload: Record<string, unknown>) =>
  `${b64({ alg: 'RS256', typ: 'JWT', kid: 'key-1' })}.${b64(payload)}.${randomBytes(256).toString('base64url')}`;

const NOW = 1_764_000_000_000;
const ID_CLAIMS = {
  sub: 'alice',
  sid: 'idp-session-1',
  auth_time: 1_764_000_000,
  acr: 'urn:mfa',
  email: 'alice@example.com',
  email_verified: true,
  name: 'Alice',
  nonce: 'n-0S6_WzA2Mj',
  at_hash: 'x8EqLmS5',
  aud: 'spa-bff',
  exp: 1_764_003_600,
  iat: 1_764_000_000,
  iss: 'https://idp.example.com',
};

/** A record as the callback makes it: userinfo claims first, then the ID token's, minus nonce/at_hash/sid. */
function loginRecord(): SessionRecord {
  const { nonce: _n, at_hash: _a, sid: _s, ...idUserClaims } = ID_CLAIMS;
  return {
    v: 1,
    sub: 'alice',
    idpSid: 'idp-session-1',
    claims: { groups: ['admins', 'ops'], ...idUserClaims },
    tokens: {
      accessToken: jwt({ iss: ID_CLAIMS.iss, sub: 'alice', aud: 'api', exp: 1_764_000_300, scope: 'openid api', jti: 'a1' }),
      tokenType: 'Bearer',
      expiresAt: NOW + 300_000,
      refreshToken: randomBytes(32).toString('base64url'),
      idToken: jwt(ID_CLAIMS),
      scope: 'openid profile email api',
    },
    createdAt: NOW,
    absoluteExpiresAt: NOW + 12 * 3_600_000,
    lastSeenAt: NOW + 61_000,
    logoutSid: randomBytes(16).toString('base64url'),
    device: 'Firefox on Linux',
  };
}

const layout = (record: SessionRecord) => encodeRecord(record)[0];
const tokenBytes = (r: SessionRecord) => [r.tokens.accessToken, r.tokens.refreshToken, r.tokens.idToken].join('').length;

describe('compact session records', () => {
  test('a login record round-trips exactly in the binary layout, smaller than its tokens as text', () => {
    const sealer = new Sealer([KEY_A]);
    const record = loginRecord();
    expect(layout(record)).toBe(1);
    const sealed = sealRecord(sealer, record, HANDLE);
    expect(sealed.charCodeAt(0)).toBe(0x02);
    const opened = openRecord(sealer, sealed, HANDLE);
    expect(opened).toEqual({ value: record, stale: false });
    // Claims keep their order (userinfo's first), and the JSON the rest of the gateway sees is the same.
    expect(Object.keys(opened?.value.claims ?? {})).toEqual(Object.keys(record.claims));
    expect(JSON.stringify(opened?.value.claims)).toBe(JSON.stringify(record.claims));
    // Tokens as bytes, claims by reference: the whole sealed record is below the tokens' text.
    expect(Buffer.from(sealed, 'latin1').length).toBeLessThan(tokenBytes(record));
    expect(sealer.seal(record, HANDLE).length).toBeGreaterThan(tokenBytes(record) * 1.5);
  });

  test('after a refresh (new ID token, the login claims kept) it still round-trips in the binary layout', () => {
    const record = loginRecord();
    record.tokens.idToken = jwt({ ...ID_CLAIMS, iat: ID_CLAIMS.iat + 900, exp: ID_CLAIMS.exp + 900, sid: 'idp-session-2' });
    record.tokens.refreshToken = undefined;
    record.routeTokens = {
      '/orders': { accessToken: jwt({ aud: 'orders' }), tokenType: 'DPoP', expiresAt: NOW + 60_000 },
      '/legacy': { accessToken: 'opaque+token/with=odd.chars', tokenType: 'bearer', expiresAt: null },
    };
    expect(layout(record)).toBe(1);
    expect(decodePlain(encodeRecord(record))).toEqual(JSON.parse(JSON.stringify(record)));
  });

  test('sub and sid that differ from the ID token, no ID token at all, odd tokens: stored as they are', () => {
    const base = loginRecord();
    const variants: SessionRecord[] = [
      { ...base, sub: 'someone-else', idpSid: 'other-sid' },
      { ...base, idpSid: undefined, tokens: { accessToken: 'at-0', tokenType: 'bearer', expiresAt: null } },
      { ...base, tokens: { ...base.tokens, idToken: 'not-a-jwt', accessToken: 'a.b.c.d.e' } },
      { ...base, tokens: { ...base.tokens, idToken: `x.${b64(['not', 'an', 'object'])}.y`, accessToken: 'tok=en', refreshToken: '' } },
      { ...base, claims: {}, device: undefined, logoutSid: 'not base64url!' },
      { ...base, claims: JSON.parse('{"__proto__":{"admin":true},"constructor":"x","sub":"alice"}') },
    ];
    for (const record of variants) {
      expect(layout(record)).toBe(1);
      const decoded = decodePlain(encodeRecord(record));
      expect(decoded).toEqual(JSON.parse(JSON.stringify(record)));
      expect(({} as Record<string, unknown>).admin).toBeUndefined();
    }
  });

  test('what the binary layout cannot hold exactly is stored as JSON, and still round-trips', () => {
    const base = loginRecord();
    const variants: SessionRecord[] = [
      { ...base, tokens: { ...base.tokens, expiresAt: NOW + 0.5 } },
      { ...base, lastSeenAt: base.createdAt - 1 },
      { ...base, claims: { ...base.claims, missing: undefined, extra: null } },
      { ...base, unexpected: 'field' } as SessionRecord,
    ];
    for (const record of variants) {
      expect(layout(record)).toBe(0);
      expect(decodePlain(encodeRecord(record))).toEqual(JSON.parse(JSON.stringify(record)));
    }
  });

  test('property: any record comes back as its JSON round trip', () => {
    const token = fc.oneof(
      fc.string(),
      fc
        .array(fc.uint8Array({ maxLength: 40 }), { minLength: 1, maxLength: 4 })
        .map((parts) => parts.map((p) => Buffer.from(p).toString('base64url')).join('.')),
    );
    const json = fc.jsonValue({ maxDepth: 2 });
    const claims = fc.dictionary(fc.string({ maxLength: 8 }), json, { maxKeys: 6 });
    const time = fc.oneof(fc.integer({ min: 0, max: 2 ** 45 }), fc.double({ noNaN: true, noDefaultInfinity: true }));
    const record = fc.record(
      {
        v: fc.constant(1 as const),
        sub: fc.string(),
        idpSid: fc.option(fc.string(), { nil: undefined }),
        claims,
        tokens: fc.record(
          {
            accessToken: token,
            tokenType: fc.string({ maxLength: 8 }),
            expiresAt: fc.option(time, { nil: null }),
            refreshToken: token,
            idToken: fc.oneof(
              token,
              claims.map((c) => jwt(c)),
            ),
            scope: fc.string(),
          },
          { requiredKeys: ['accessToken', 'tokenType', 'expiresAt'] },
        ),
        routeTokens: fc.dictionary(
          fc.string({ maxLength: 10 }),
          fc.record({ accessToken: token, tokenType: fc.string({ maxLength: 8 }), expiresAt: fc.option(time, { nil: null }) }),
          { maxKeys: 3 },
        ),
        createdAt: time,
        absoluteExpiresAt: time,
        lastSeenAt: time,
        logoutSid: token,
        device: fc.string(),
      },
      { requiredKeys: ['v', 'sub', 'claims', 'tokens', 'createdAt', 'absoluteExpiresAt', 'lastSeenAt', 'logoutSid'] },
    );
    fc.assert(
      fc.property(record, (r) => {
        expect(decodePlain(encodeRecord(r as SessionRecord))).toEqual(JSON.parse(JSON.stringify(r)));
      }),
      { numRuns: 500 },
    );
  });

  test('any tampering yields undefined: every byte of the envelope, a truncation, an extension, the version', () => {
    const sealer = new Sealer([KEY_A]);
    const sealed = sealRecord(sealer, loginRecord(), HANDLE);
    const bytes = Buffer.from(sealed, 'latin1');
    for (let at = 0; at < bytes.length; at++) {
      const changed = Buffer.from(bytes);
      changed[at] = (changed[at] as number) ^ 0x01;
      expect(openRecord(sealer, changed.toString('latin1'), HANDLE)).toBeUndefined();
    }
    expect(openRecord(sealer, sealed.slice(0, -1), HANDLE)).toBeUndefined();
    expect(openRecord(sealer, `${sealed}\x00`, HANDLE)).toBeUndefined();
    expect(openRecord(sealer, `v${sealed.slice(1)}`, HANDLE)).toBeUndefined();
    expect(openRecord(sealer, '', HANDLE)).toBeUndefined();
    expect(openRecord(sealer, '\x02', HANDLE)).toBeUndefined();
  });

  test('sealed for one handle, it does not open under another', () => {
    const sealer = new Sealer([KEY_A]);
    const sealed = sealRecord(sealer, loginRecord(), HANDLE);
    expect(openRecord(sealer, sealed, Sessions.handleOf('another-id'))).toBeUndefined();
    expect(openRecord(sealer, sealed, '')).toBeUndefined();
  });

  test('a wrong key cannot open it; rotation: older keys open and report stale, removed keys do not', () => {
    const record = loginRecord();
    const before = sealRecord(new Sealer([KEY_A]), record, HANDLE);
    expect(openRecord(new Sealer([KEY_B]), before, HANDLE)).toBeUndefined();
    const rotated = new Sealer([KEY_B, KEY_A]);
    expect(openRecord(rotated, before, HANDLE)).toEqual({ value: record, stale: true });
    const after = sealRecord(rotated, record, HANDLE);
    expect(openRecord(rotated, after, HANDLE)).toEqual({ value: record, stale: false });
    expect(openRecord(new Sealer([KEY_B]), after, HANDLE)?.value).toEqual(record);
    expect(openRecord(new Sealer([KEY_A]), after, HANDLE)).toBeUndefined();
  });

  test('a record in the older text format (sealed JSON, base64url) still opens, under any key of the ring', () => {
    const record = loginRecord();
    const old = new Sealer([KEY_A]).seal(record, HANDLE);
    expect(old).toMatch(/^v1\./);
    expect(openRecord(new Sealer([KEY_A]), old, HANDLE)).toEqual({ value: record, stale: false });
    expect(openRecord(new Sealer([KEY_B, KEY_A]), old, HANDLE)).toEqual({ value: record, stale: true });
    expect(openRecord(new Sealer([KEY_B]), old, HANDLE)).toBeUndefined();
    expect(openRecord(new Sealer([KEY_A]), old, Sessions.handleOf('another-id'))).toBeUndefined();
  });
});

test('Sessions: a session stored in the older text format keeps working, and its next write is compact', async () => {
  const w = tokenWorld();
  const s = await w.session();
  expect((await w.store.get(s.handle))?.charCodeAt(0)).toBe(0x02);
  // What the previous version wrote: the same record, sealed as JSON text.
  const old = new Sealer(w.config.session.encryptionKeys).seal(s.record, s.handle);
  await w.store.set(s.handle, old, 3_600_000);
  const found = await w.main.requestSessions.fromHeaders({ cookie: s.cookieHeader });
  expect(found?.record).toEqual(s.record);
  expect(found?.sealed).toBe(old);
  // The lazy slide rewrites it, now in the compact format, and it still reads the same.
  w.clock.advance(61_000);
  await w.main.sessions.touch(found as NonNullable<typeof found>);
  const rewritten = (await w.store.get(s.handle)) as string;
  expect(rewritten.charCodeAt(0)).toBe(0x02);
  expect(rewritten.length).toBeLessThan(old.length);
  const again = await w.main.requestSessions.fromHeaders({ cookie: s.cookieHeader });
  expect(again?.record).toEqual({ ...s.record, lastSeenAt: w.clock.now() });
});
