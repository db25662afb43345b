// Storage adapter for the embedded IdP. oidc-provider's built-in memory adapter is an LRU capped
// at 1000 entries (long test runs would silently evict live sessions and grants) and prints a
// development warning; this one is per-IdP, uncapped, and honours the TTL oidc-provider asks for.

type Payload = Record<string, unknown> & { grantId?: string; uid?: string; userCode?: string; consumed?: number };

interface Entry {
  payload: Payload;
  expiresAt: number;
}

// Token types that oidc-provider revokes together when a grant is revoked (reuse detection,
// logout, revocation endpoint).
const GRANTABLE = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
  'PreAuthorizedCode',
]);

export interface IdpStore {
  adapterFactory: (model: string) => Adapter;
  clear(): void;
}

export interface Adapter {
  upsert(id: string, payload: Payload, expiresIn?: number): Promise<void>;
  find(id: string): Promise<Payload | undefined>;
  findByUid(uid: string): Promise<Payload | undefined>;
  findByUserCode(userCode: string): Promise<Payload | undefined>;
  consume(id: string): Promise<void>;
  destroy(id: string): Promise<void>;
  revokeByGrantId(grantId: string): Promise<void>;
}

export function createIdpStore(): IdpStore {
  const entries = new Map<string, Entry>();
  const byGrant = new Map<string, Set<string>>();
  const sessionByUid = new Map<string, string>();
  const byUserCode = new Map<string, string>();

  const live = (key: string): Entry | undefined => {
    const entry = entries.get(key);
    if (entry && entry.expiresAt <= Date.now()) {
      entries.delete(key);
      return undefined;
    }
    return entry;
  };

  const adapterFactory = (model: string): Adapter => {
    const keyOf = (id: string) => `${model}:${id}`;
    return {
      async upsert(id, payload, expiresIn) {
        const key = keyOf(id);
        const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
        entries.set(key, { payload, expiresAt });
        if (model === 'Session' && typeof payload.uid === 'string') sessionByUid.set(payload.uid, id);
        if (typeof payload.userCode === 'string') byUserCode.set(payload.userCode, id);
        if (GRANTABLE.has(model) && typeof payload.grantId === 'string') {
          let members = byGrant.get(payload.grantId);
          if (!members) byGrant.set(payload.grantId, (members = new Set()));
          members.add(key);
        }
      },
      async find(id) {
        return live(keyOf(id))?.payload;
      },
      async findByUid(uid) {
        const id = sessionByUid.get(uid);
        return id === undefined ? undefined : live(keyOf(id))?.payload;
      },
      async findByUserCode(userCode) {
        const id = byUserCode.get(userCode);
        return id === undefined ? undefined : live(keyOf(id))?.payload;
      },
      async consume(id) {
        const entry = live(keyOf(id));
        if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
      },
      async destroy(id) {
        const key = keyOf(id);
        const entry = entries.get(key);
        entries.delete(key);
        if (entry?.payload.uid !== undefined && sessionByUid.get(String(entry.payload.uid)) === id) {
          sessionByUid.delete(String(entry.payload.uid));
        }
      },
      async revokeByGrantId(grantId) {
        for (const key of byGrant.get(grantId) ?? []) entries.delete(key);
        byGrant.delete(grantId);
      },
    };
  };

  return {
    adapterFactory,
    clear() {
      entries.clear();
      byGrant.clear();
      sessionByUid.clear();
      byUserCode.clear();
    },
  };
}
