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
 * The record is sealed (the store never holds the ID token in clear) and bound to its name as
 * associated data; the name is a hash of the handle, so a store dump cannot be replayed as a
 * link. It lives HANDOFF_TTL_MS, long enough for the app to navigate, and is good for one use:
 * the store hands a one-time value out once, with an atomic get-and-delete, even across
 * instances. It is a one-time value, not a session record: it never shows up in session
 * listings, and taking it announces no session end.
 */
import { randomBytes } from 'node:crypto';
import { hashed, type OneTimeValues } from '../session/one-time.ts';
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
    private readonly values: OneTimeValues,
    private readonly sealer: Sealer,
  ) {}

  /** Stores the hint for the redirect to come; returns the one-time handle for the URL. */
  async create(idToken: string | undefined): Promise<string> {
    const handle = randomBytes(32).toString('base64url');
    const name = hashed(handle);
    const record: HandoffRecord = idToken ? { idToken } : {};
    await this.values.put('logout-handoff', name, this.sealer.seal(record, `${SEAL_CONTEXT}:${name}`), HANDOFF_TTL_MS);
    return handle;
  }

  /**
   * The record behind a handle, consumed: undefined when the handle is malformed, unknown,
   * expired or already used.
   */
  async redeem(handle: string | null | undefined): Promise<HandoffRecord | undefined> {
    if (!handle || !HANDLE.test(handle)) return undefined;
    const name = hashed(handle);
    const sealed = await this.values.take('logout-handoff', name);
    if (sealed === null) return undefined;
    return this.sealer.open<HandoffRecord>(sealed, `${SEAL_CONTEXT}:${name}`)?.value;
  }
}
