import { expect, test } from 'vitest';
import { LruMap } from '../../src/util/lru-map.ts';

test('at its limit the least recently used entry goes; a hit counts as a use', () => {
  const map = new LruMap<string, number>(3);
  map.set('a', 1);
  map.set('b', 2);
  map.set('c', 3);
  expect(map.get('a')).toBe(1);
  map.set('d', 4);
  expect(map.size).toBe(3);
  expect(map.get('b')).toBeUndefined();
  expect([map.get('a'), map.get('c'), map.get('d')]).toEqual([1, 3, 4]);
});

test('setting a known key replaces it without pushing anything out', () => {
  const map = new LruMap<string, number>(2);
  map.set('a', 1);
  map.set('b', 2);
  map.set('a', 10);
  expect(map.size).toBe(2);
  expect([map.get('a'), map.get('b')]).toEqual([10, 2]);
});
