/**
 * The hand-off between `POST /auth/logout` and the IdP's end-session endpoint.
 *
 * The POST answer is JSON that page script reads, and the end-session URL carries the ID token
 * as `id_token_hint`. So the POST answers a gateway URL instead,
 * `LOGOUT_CONTINUE_PATH?handoff=<handle>`, where the handle is 256 random bits that name a
 * record in the shared store holding the hint. The access log masks `handoff` like a token.
 * A top-level navigation to that URL gets the 302 to the IdP: the hint then travels only in a
 * redirect that no script of the page can read.
 *
 * The record is sealed (the store never holds the ID token in clear) and bound to its store key
 * as associated data; the key is a hash of the handle, so a store dump cannot be replayed as a
 * link. It lives HANDOFF_TTL_MS, long enough for the app to navigate, and is good for one use:
 * a store-side one-time claim decides the single winner, even across instances.
 *
 * The record sits in the store's record space under a `logout.` prefix (the store has no other
 * keyed-value primitive). Session listings skip it: sealed under its own associated data, it
 * never opens as a session record.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { SessionStore } from '../session/store.ts';
import type { Sealer } from '../session/seal.ts';

export const LOGOUT_CONTINUE_PATH = '/auth/logout/continue';
export const HANDOFF_TTL_MS = 2 * 60_000;

interface HandoffRecord {
  idToken?: string;
}

const HANDLE = /^[A-Za-z0-9_-]{43}$/;
const SEAL_CONTEXT = 'logout-handoff';

export class LogoutHandoffs {
  constructor(
    private readonly store: SessionStore,
    private readonly sealer: Sealer,
  ) {}

  private static keyOf(handle: string): string {
    return `logout.${createHash('sha256').update(handle).digest('base64url')}`;
  }

  /** Stores the hint for the redirect to come; returns the one-time handle for the URL. */
  async create(idToken: string | undefined): Promise<string> {
    const handle = randomBytes(32).toString('base64url');
    const key = LogoutHandoffs.keyOf(handle);
    const record: HandoffRecord = idToken ? { idToken } : {};
    await this.store.set(key, this.sealer.seal(record, `${SEAL_CONTEXT}:${key}`), HANDOFF_TTL_MS);
    return handle;
  }

  /**
   * The record behind a handle, consumed: undefined when the handle is malformed, unknown,
   * expired or already used.
   */
  async redeem(handle: string | null | undefined): Promise<HandoffRecord | undefined> {
    if (!handle || !HANDLE.test(handle)) return undefined;
    const key = LogoutHandoffs.keyOf(handle);
    const sealed = await this.store.get(key);
    if (sealed === null) return undefined;
    const opened = this.sealer.open<HandoffRecord>(sealed, `${SEAL_CONTEXT}:${key}`);
    if (!opened) return undefined;
    // The claim, not the read, makes it single-use: two concurrent redeems read the same value.
    if (!(await this.store.claimOnce(`${key}.used`, HANDOFF_TTL_MS))) return undefined;
    await this.store.destroy(key).catch(() => {});
    return opened.value;
  }
}
