import { describe, expect, test } from 'vitest';
import { SessionCache } from '../../src/session/session-cache.ts';
import type { SessionRecord } from '../../src/session/sessions.ts';
import type { SessionStore } from '../../src/session/store.ts';

/** A store whose change feed is always live and never announces anything. */
const store = { watchChanges: () => ({ live: true, close() {} }) } as unknown as SessionStore;
const value = (n: number) => ({ record: { n } as unknown as SessionRecord, sealed: `sealed-${n}` });

function cache(maxEntries: number, maxAgeMs: number) {
  const clock = { now: 0 };
  const c = SessionCache.attach(store, { maxEntries, maxAgeMs }, () => clock.now) as SessionCache;
  const put = (handle: string, n = 0) => c.put(handle, c.ticket(), value(n));
  return { c, clock, put };
}

describe('SessionCache', () => {
  test('sessions that are no longer used leave once they expire, not when maxEntries newer ones push them out', () => {
    const { c, clock, put } = cache(100_000, 60_000);
    // 5,000 sessions each sent a request, then stopped (tabs closed, idle timeouts passed).
    for (let i = 0; i < 5_000; i++) put(`gone-${i}`);
    expect(c.size).toBe(5_000);
    // Two minutes later only 10 sessions are active.
    clock.now = 120_000;
    for (let i = 0; i < 10; i++) put(`active-${i}`);
    expect(c.size).toBe(10);
    expect(c.get('gone-0')).toBeUndefined();
    expect(c.get('active-9')?.sealed).toBe('sealed-0');
  });

  test('a rewritten entry counts from its rewrite: it is not dropped with the ones written before it', () => {
    const { c, clock, put } = cache(100, 60_000);
    put('a', 1);
    put('b', 1);
    clock.now = 50_000;
    put('a', 2);
    clock.now = 70_000;
    put('c', 1);
    expect(c.size).toBe(2);
    expect(c.get('a')?.sealed).toBe('sealed-2');
    expect(c.get('b')).toBeUndefined();
  });

  test('at maxEntries the entry written longest ago goes first', () => {
    const { c, clock, put } = cache(3, 60_000);
    put('a');
    clock.now = 1;
    put('b');
    clock.now = 2;
    put('c');
    clock.now = 3;
    put('a', 2);
    put('d');
    expect(c.size).toBe(3);
    expect(c.get('b')).toBeUndefined();
    expect(c.get('a')?.sealed).toBe('sealed-2');
    expect(c.get('c')).toBeDefined();
    expect(c.get('d')).toBeDefined();
  });
});
