/**
 * Counts the store's failures for `bff_store_errors_total{op}`, so an alert sees Redis trouble
 * before users report 503s. A decorator rather than code in each store: every caller (requests,
 * refreshes, the refresher's deferred writes, logout, the admin listener) goes through it, and
 * the stores stay about storage. Only outages count (`session_store_unavailable`): a lost
 * compare-and-set or a missing record is an answer, not an error.
 */
import { isGatewayError } from '../errors.ts';
import type { SessionStore } from './store.ts';

/** The `op` label values: a few groups of commands, so the series stay few. */
export const STORE_OPS = ['read', 'write', 'delete', 'index', 'lock', 'one_time', 'ping'] as const;
export type StoreOp = (typeof STORE_OPS)[number];

export function countStoreErrors(store: SessionStore, onError: (op: StoreOp) => void): SessionStore {
  const counted = <T>(op: StoreOp, call: Promise<T>): Promise<T> =>
    call.catch((err: unknown) => {
      if (isGatewayError(err) && err.code === 'session_store_unavailable') onError(op);
      throw err;
    });
  return {
    get reachable() {
      return store.reachable;
    },
    get: (handle) => counted('read', store.get(handle)),
    set: (handle, sealed, ttlMs) => counted('write', store.set(handle, sealed, ttlMs)),
    update: (handle, sealed, ttlMs) => counted('write', store.update(handle, sealed, ttlMs)),
    replace: (handle, expected, sealed, ttlMs) => counted('write', store.replace(handle, expected, sealed, ttlMs)),
    destroy: (handle) => counted('delete', store.destroy(handle)),
    onEnded: (listener) => store.onEnded(listener),
    // The change feed is not a store call: passed through as is (absent when the store has none).
    ...(store.watchChanges
      ? {
          watchChanges: (listener: (handle: string | null) => void) =>
            (store.watchChanges as NonNullable<SessionStore['watchChanges']>).call(store, listener),
        }
      : {}),
    indexAdd: (index, handle, ttlMs) => counted('index', store.indexAdd(index, handle, ttlMs)),
    indexMembers: (index) => counted('index', store.indexMembers(index)),
    indexRemove: (index, handles) => counted('index', store.indexRemove(index, handles)),
    scanHandles: () => store.scanHandles(),
    acquireLock: (handle, ttlMs) => counted('lock', store.acquireLock(handle, ttlMs)),
    releaseLock: (handle, owner) => counted('lock', store.releaseLock(handle, owner)),
    isLocked: (handle) => counted('lock', store.isLocked(handle)),
    claimOnce: (key, ttlMs) => counted('one_time', store.claimOnce(key, ttlMs)),
    putOneTime: (key, value, ttlMs) => counted('one_time', store.putOneTime(key, value, ttlMs)),
    takeOneTime: (key) => counted('one_time', store.takeOneTime(key)),
    ping: () => counted('ping', store.ping()),
    close: () => store.close(),
  };
}
