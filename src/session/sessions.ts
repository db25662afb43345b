/**
 * Sessions: the record, its lifetime rules, and how it maps onto the store.
 *
 * - The browser holds a random 256-bit id; the store key is its SHA-256 (the "handle"), so
 *   a store dump cannot be replayed as cookies. The record is sealed with the handle as
 *   associated data, so records cannot be swapped between keys either. How it is laid out and
 *   sealed (a compact binary format; the older text format is still read): record-codec.ts.
 * - Idle timeout slides with use, lazily: the record is rewritten only when a noticeable part
 *   of the idle window has passed, so a steady stream of API calls costs one read each and no
 *   write. The absolute timeout never moves. The store TTL is the earlier of the two, so the
 *   store forgets ended sessions by itself.
 * - Back-channel logout needs "every session of this sid/sub": index sets keyed by an HMAC of
 *   the claim (the claim itself never appears in the store). The HMAC key is the encryption key
 *   ring's current key, so a store dump cannot be matched against guessed `sub` values. Entries
 *   are written under the current key and looked up under every key of the ring; a record that
 *   is re-sealed under a new key gets its entries under that key too, so once the old key is
 *   removed (the last step of a rotation) its entries are still found.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import type { GatewayConfig } from '../config/load.ts';
import { OneTimeClaims } from './one-time.ts';
import { openRecord, sealRecord } from './record-codec.ts';
import type { Sealer } from './seal.ts';
import type { SessionCache } from './session-cache.ts';
import type { SessionStore } from './store.ts';

/** An access token as the gateway keeps it: the session's main one, a route's, the client's. */
export interface AccessToken {
  accessToken: string;
  tokenType: string;
  /** Epoch ms; null when the IdP gave no lifetime and the token is not a JWT with `exp`. */
  expiresAt: number | null;
}

/**
 * Whether `token` expires within `marginMs` of `now` (a missing token always does). With a
 * margin of 0: whether it has expired. A token without a known lifetime never expires here.
 */
export function expiresWithin(token: AccessToken | undefined, now: number, marginMs: number): boolean {
  if (!token) return true;
  return token.expiresAt !== null && token.expiresAt - now <= marginMs;
}

export interface SessionTokens extends AccessToken {
  refreshToken?: string;
  idToken?: string;
  scope?: string;
}

/** A token minted for one route's `audience`/`scopes` from the session's grant (docs/http-interface.md#route-tokens). */
export type RouteToken = AccessToken;

export interface SessionRecord {
  v: 1;
  sub: string;
  /** The IdP's session id (`sid` claim), for back-channel logout. */
  idpSid?: string;
  claims: Record<string, unknown>;
  tokens: SessionTokens;
  /** Route tokens, keyed by route path. */
  routeTokens?: Record<string, RouteToken>;
  createdAt: number;
  absoluteExpiresAt: number;
  lastSeenAt: number;
  /** Random value in `logoutUrl`: proves a GET logout came from the app, not a cross-site link. */
  logoutSid: string;
  /** A summary of the browser that logged in ("Chrome on Linux"), for the user's session list. */
  device?: string;
}

export interface LoadedSession {
  handle: string;
  record: SessionRecord;
  /** The sealed value as read: the compare-and-set token for housekeeping writes. */
  sealed: string;
}

export type LoadResult =
  | { state: 'none' }
  | { state: 'ended'; record: SessionRecord; handle: string }
  /** `cached`: served by the in-process session cache, without a store read. */
  | ({ state: 'active'; cached?: true } & LoadedSession);

const MAX_SLIDE_INTERVAL_MS = 60_000;

export class Sessions {
  private readonly slideEveryMs: number;

  constructor(
    private readonly store: SessionStore,
    private readonly sealer: Sealer,
    private readonly config: GatewayConfig['session'],
    private readonly now: () => number,
    private readonly claims: OneTimeClaims = new OneTimeClaims(store),
    /** The in-process cache of opened records, when the store can keep it coherent (session-cache.ts). */
    private readonly cache?: SessionCache,
  ) {
    this.slideEveryMs = Math.min(config.idleTimeoutMs / 10, MAX_SLIDE_INTERVAL_MS);
  }

  static newId(): string {
    return randomBytes(32).toString('base64url');
  }

  static handleOf(id: string): string {
    return createHash('sha256').update(id).digest('base64url');
  }

  /** Index names under every key of the ring: written under the first, looked up under all. */
  private indexNames(kind: 'sid' | 'sub', value: string): string[] {
    return this.config.encryptionKeys.map((key) => `${kind}.${createHmac('sha256', key).update(`${kind}:${value}`).digest('base64url')}`);
  }

  idleExpiresAt(record: SessionRecord): number {
    return Math.min(record.lastSeenAt + this.config.idleTimeoutMs, record.absoluteExpiresAt);
  }

  private ttl(record: SessionRecord): number {
    return this.idleExpiresAt(record) - this.now();
  }

  /** Creates and stores a brand-new session. Returns the browser-side id. */
  async create(
    data: Pick<SessionRecord, 'sub' | 'idpSid' | 'claims' | 'tokens' | 'device'>,
    lifetimeCapMs?: number,
  ): Promise<{ id: string } & LoadedSession> {
    const now = this.now();
    const id = Sessions.newId();
    const handle = Sessions.handleOf(id);
    const absoluteMs = Math.min(this.config.absoluteTimeoutMs, lifetimeCapMs ?? Infinity);
    const record: SessionRecord = {
      v: 1,
      ...data,
      createdAt: now,
      absoluteExpiresAt: now + absoluteMs,
      lastSeenAt: now,
      logoutSid: randomBytes(16).toString('base64url'),
    };
    const sealed = sealRecord(this.sealer, record, handle);
    await this.store.set(handle, sealed, this.ttl(record));
    await this.indexUnderCurrentKey(handle, record);
    return { id, handle, record, sealed };
  }

  /**
   * Adds the record's sid/sub index entries under the current key (idempotent: a set add). They
   * outlive the record by a minute, so a lookup never misses a session that is still alive.
   */
  private async indexUnderCurrentKey(handle: string, record: SessionRecord): Promise<void> {
    const ttl = record.absoluteExpiresAt - this.now() + 60_000;
    await this.store.indexAdd(this.indexNames('sub', record.sub)[0] as string, handle, ttl);
    if (record.idpSid) await this.store.indexAdd(this.indexNames('sid', record.idpSid)[0] as string, handle, ttl);
  }

  /** Reads a session by its browser-side id; ends it (and says so) when a timeout has passed. */
  async load(id: string): Promise<LoadResult> {
    return this.loadHandle(Sessions.handleOf(id));
  }

  /**
   * The read behind a request's cookie: from the in-process cache while it is usable, else from
   * the store (and then cached). Never used by the refresh protocol, which reads the store.
   */
  async loadCached(handle: string): Promise<LoadResult> {
    const cache = this.cache;
    if (!cache?.usable) return this.loadHandle(handle);
    const hit = cache.get(handle);
    // An idle-expired record is ended by the store path, which also says so.
    if (hit && this.now() < this.idleExpiresAt(hit.record))
      return { state: 'active', handle, record: hit.record, sealed: hit.sealed, cached: true };
    const ticket = cache.ticket();
    const result = await this.loadHandle(handle);
    if (result.state === 'active') cache.put(handle, ticket, result);
    return result;
  }

  async loadHandle(handle: string): Promise<LoadResult> {
    const sealed = await this.store.get(handle);
    if (sealed === null) return { state: 'none' };
    const opened = openRecord(this.sealer, sealed, handle);
    if (opened?.value.v !== 1) return { state: 'none' };
    const record = opened.value;
    if (this.now() >= this.idleExpiresAt(record)) {
      await this.destroy(handle, record);
      return { state: 'ended', record, handle };
    }
    const session = { handle, record, sealed };
    if (opened.stale) {
      // Sealed under a retired key: re-seal now so the old key can be dropped later, and index
      // it under the current key, or dropping the old key would hide it from back-channel
      // logout and `sessions --sub` (its entries are HMACs under the old key).
      await this.housekeep(session);
      await this.indexUnderCurrentKey(handle, session.record);
    }
    return { state: 'active', ...session };
  }

  /** The lazy slide: rewrite only when enough of the idle window has passed since the last write. */
  async touch(session: LoadedSession): Promise<void> {
    if (this.now() - session.record.lastSeenAt < this.slideEveryMs) return;
    await this.housekeep(session);
  }

  /** Slide + re-seal as a compare-and-set: losing the race to a token update is fine. */
  private async housekeep(session: LoadedSession): Promise<void> {
    const record = { ...session.record, lastSeenAt: this.now() };
    const sealed = sealRecord(this.sealer, record, session.handle);
    if (await this.store.replace(session.handle, session.sealed, sealed, this.ttl(record))) {
      session.record = record;
      session.sealed = sealed;
    }
  }

  /**
   * Stores new tokens (after a refresh, under the session's lock). Writes only if the session
   * still exists, so a logout that happened meanwhile stays final. False when it was gone.
   */
  async update(session: LoadedSession, record: SessionRecord): Promise<boolean> {
    const ttl = this.ttl(record);
    if (ttl <= 0) return false;
    const sealed = sealRecord(this.sealer, record, session.handle);
    if (!(await this.store.update(session.handle, sealed, ttl))) return false;
    session.record = record;
    session.sealed = sealed;
    return true;
  }

  async destroy(handle: string, record?: SessionRecord): Promise<void> {
    await this.store.destroy(handle);
    // An ended session is accounted for now: a later request with its cookie is no timeout.
    await this.markEnded(handle).catch(() => false);
    if (!record) return;
    // Index cleanup is best effort: lookups skip handles whose record is gone anyway.
    const names = [...this.indexNames('sub', record.sub), ...(record.idpSid ? this.indexNames('sid', record.idpSid) : [])];
    await Promise.all(names.map((name) => this.store.indexRemove(name, [handle]).catch(() => {})));
  }

  /**
   * Claims the one-time "this session has ended" marker; true only for the first claimant.
   * The store forgets a record by itself when its TTL runs out, and nothing tells a timeout from
   * a logout afterwards: every deliberate ending claims the marker, so a signed cookie whose
   * record is gone *and* whose marker is still unclaimed is a session that timed out — counted
   * once, however many requests carry that cookie.
   */
  markEnded(handle: string): Promise<boolean> {
    return this.claims.claim('session-ended', handle, this.config.absoluteTimeoutMs);
  }

  /** Handles of the live sessions for an IdP `sid` or `sub`; prunes dead index entries. */
  async findBy(kind: 'sid' | 'sub', value: string): Promise<LoadedSession[]> {
    const found: LoadedSession[] = [];
    // A session re-sealed during a key rotation is indexed under both keys: load and count it once.
    const seen = new Set<string>();
    const dead = new Set<string>();
    for (const name of this.indexNames(kind, value)) {
      const handles = await this.store.indexMembers(name);
      for (const handle of handles) {
        if (seen.has(handle)) continue;
        seen.add(handle);
        const result = await this.loadHandle(handle);
        if (result.state === 'active' && (kind === 'sub' ? result.record.sub === value : result.record.idpSid === value)) {
          found.push(result);
        } else if (result.state !== 'active') {
          dead.add(handle);
        }
      }
      await this.store.indexRemove(
        name,
        handles.filter((handle) => dead.has(handle)),
      );
    }
    return found;
  }

  async *all(): AsyncIterable<LoadedSession> {
    for await (const handle of this.store.scanHandles()) {
      const result = await this.loadHandle(handle);
      if (result.state === 'active') yield result;
    }
  }
}
