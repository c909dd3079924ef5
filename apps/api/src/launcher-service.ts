import { EventEmitter } from 'node:events';
import {
  ACCESS_CHANGED_CHANNEL,
  type AccessChange,
  type CanonicalId,
  canonicalId,
  HEAD_CHANGED_CHANNEL,
  type HeadChange,
  LauncherAccess,
  type LauncherTokenRecord,
  RELEASE_SIGNED_CHANNEL,
  type RealmView,
  type ReleaseSigned,
  type Settings,
  type UnlockGrant,
  type UnlockState,
} from '@splintertree/core';
import { SplinterError } from '@splintertree/errors';
import { type ChangeListener, openChangeListener } from './change-listener.js';

/** Who is calling: a launcher token, or a player's JWT, and the realm it is scoped to. */
export interface Principal {
  /** The launcher (realm) token's id; absent for a player authenticated by a JWT. */
  tokenId?: CanonicalId;
  /** A player authenticated by a JWT: its issuer and subject (`iss#sub`). */
  player?: string;
  realm: string;
}

export interface LauncherOptions {
  settings: Settings;
  /** Database connections for queries (default: the settings' pool size); the LISTEN connection is one more. */
  poolSize?: number;
  /**
   * Heartbeat interval of the LISTEN connection (default 3 s). A heartbeat not back within one
   * interval, like a connection error, makes the listener lost: caches are bypassed and the service
   * is not ready until it listens again.
   */
  heartbeatMs?: number;
  /** Delay before listening again after a lost connection (default 1 s). */
  relistenDelayMs?: number;
  /**
   * How long a realm view read from the database is served again, in ms (default 0: read every
   * time). A head change or revocation drops it at once (by its NOTIFY); a new preload shows within it.
   */
  viewTtlMs?: number;
}

export const DEFAULT_HEARTBEAT_MS = 3000;

/** A realm's newest signed release statement: its sequence number and its DSSE envelope (JSON). */
export interface ReleaseStatement {
  sequence: string;
  envelope: string;
}

/** Emitted as `listener` when the LISTEN connection is lost and when it is back. */
export type ListenerState = { listening: false; error: Error } | { listening: true };

/**
 * What the launcher API serves, over the release database. Decisions that release keys are cached in
 * memory and dropped by the NOTIFY of every head change and revocation, release statements by that
 * of every statement stored; a locked answer is always re-read from the database, so an unlock
 * succeeds as soon as the activation has committed, even before its notification arrives. While the LISTEN connection is lost or silent (see
 * LauncherOptions.heartbeatMs), nothing is cached: every answer is read from the database.
 */
export class LauncherService extends EventEmitter<{ listener: [ListenerState] }> {
  private readonly grants = new Map<CanonicalId, UnlockGrant & { realm: string }>();
  private readonly tokens = new Map<CanonicalId, LauncherTokenRecord>();
  private readonly reads = new Map<
    CanonicalId,
    { running?: Promise<UnlockState | undefined>; queued?: Promise<UnlockState | undefined> }
  >();
  private readonly views = new Map<string, { view: RealmView; expires: number }>();
  private readonly viewReads = new Map<string, { generation: number; read: Promise<RealmView> }>();
  private readonly statements = new Map<string, ReleaseStatement>();
  private readonly statementReads = new Map<
    string,
    { generation: number; read: Promise<ReleaseStatement> }
  >();
  /** Bumped by every invalidation: a read that started before one must not fill the cache after it. */
  private generation = 0;
  private listening = false;
  private listener: ChangeListener | undefined;
  /** Numbers each listener opened, so that a late loss of an old one changes nothing. */
  private session = 0;
  private relistenTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly heartbeatMs: number;

  private constructor(
    private readonly access: LauncherAccess,
    private readonly options: LauncherOptions,
  ) {
    super();
    this.heartbeatMs = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
  }

  static async open(options: LauncherOptions): Promise<LauncherService> {
    const access = await LauncherAccess.open(options.settings, { poolSize: options.poolSize });
    try {
      const launcher = new LauncherService(access, options);
      await launcher.listen();
      return launcher;
    } catch (error) {
      await access.close();
      throw error;
    }
  }

  /**
   * The principal of a bearer token; UNAUTHENTICATED for a missing, malformed, unknown or revoked one
   * (with `details.tokenId` when the token named a canonical id, for limits on failures per token).
   */
  async authenticate(token: string | undefined): Promise<Principal> {
    return this.access.authenticate(token, (id) => this.tokenRecord(id));
  }

  private async tokenRecord(id: CanonicalId): Promise<LauncherTokenRecord | undefined> {
    const cached = this.listening ? this.tokens.get(id) : undefined;
    if (cached) return cached;
    const generation = this.generation;
    const known = await this.access.tokenRecord(id);
    if (known && this.listening && generation === this.generation) this.tokens.set(id, known);
    return known;
  }

  /**
   * The realm's head, chain and preloads. With `viewTtlMs`, one read serves every caller of the realm
   * until it expires or a head change drops it, and callers that arrive while it runs share it.
   */
  async realm(realm: string, principal: Principal): Promise<RealmView> {
    this.access.checkRealm(realm);
    assertRealm(principal, realm, `realm ${realm}`);
    const ttl = this.options.viewTtlMs ?? 0;
    if (!this.listening || ttl <= 0) return this.access.realmView(realm);
    const cached = this.views.get(realm);
    if (cached && cached.expires > performance.now()) return cached.view;
    const generation = this.generation;
    let pending = this.viewReads.get(realm);
    if (!pending || pending.generation !== generation) {
      const read = this.access.realmView(realm);
      const slot = { generation, read };
      pending = slot;
      this.viewReads.set(realm, slot);
      const done = () => {
        if (this.viewReads.get(realm) === slot) this.viewReads.delete(realm);
      };
      read.then((view) => {
        if (this.listening && generation === this.generation) {
          this.views.set(realm, { view, expires: performance.now() + ttl });
        }
        done();
      }, done);
    }
    return pending.read;
  }

  /**
   * The realm's newest signed release statement (a DSSE envelope, JSON, exactly as signed at
   * activation or refresh: nothing is signed per request). RELEASE_MISSING when there is none.
   * Every statement stored is announced (RELEASE_SIGNED_CHANNEL) in its own transaction, so one
   * read serves every caller of the realm until the next announcement; callers that arrive while
   * it runs share it.
   */
  async releaseStatement(realm: string, principal: Principal): Promise<ReleaseStatement> {
    this.access.checkRealm(realm);
    assertRealm(principal, realm, `realm ${realm}`);
    if (!this.listening) return this.access.releaseStatement(realm);
    const cached = this.statements.get(realm);
    if (cached) return cached;
    const generation = this.generation;
    let pending = this.statementReads.get(realm);
    if (!pending || pending.generation !== generation) {
      const read = this.access.releaseStatement(realm);
      const slot = { generation, read };
      pending = slot;
      this.statementReads.set(realm, slot);
      const done = () => {
        if (this.statementReads.get(realm) === slot) this.statementReads.delete(realm);
      };
      read.then((statement) => {
        if (this.listening && generation === this.generation) this.statements.set(realm, statement);
        done();
      }, done);
    }
    return pending.read;
  }

  async unlock(patchId: CanonicalId, principal: Principal): Promise<UnlockGrant> {
    const cached = this.listening ? this.grants.get(patchId) : undefined;
    if (cached) {
      assertRealm(principal, cached.realm, `patch ${patchId}`);
      return { patchId, keyId: cached.keyId, key: cached.key, ancestors: cached.ancestors };
    }
    const generation = this.generation;
    const state = await this.freshState(patchId);
    if (!state) throw new SplinterError('PATCH_UNKNOWN', `no patch ${JSON.stringify(patchId)}`);
    assertRealm(principal, state.realm, `patch ${patchId}`);
    const grant = await this.access.grant(state);
    if (this.listening && generation === this.generation)
      this.grants.set(patchId, { ...grant, realm: state.realm });
    return grant;
  }

  /**
   * The database answers and head changes are being heard. Answers within one heartbeat interval:
   * a database that does not answer by then counts as down (a hung one must not hang the probe).
   */
  async ready(): Promise<{ ready: boolean; database: boolean; listening: boolean }> {
    let deadline: NodeJS.Timeout | undefined;
    const database = await Promise.race([
      this.access.ping(),
      new Promise<false>((resolve) => {
        deadline = setTimeout(() => resolve(false), this.heartbeatMs);
      }),
    ]);
    clearTimeout(deadline);
    return { ready: database && this.listening, database, listening: this.listening };
  }

  /** Statements sent to the database so far (the LISTEN connection's heartbeats aside). */
  queries(): number {
    return this.access.queries();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.relistenTimer);
    await this.listener?.close();
    await this.access.close();
  }

  /**
   * The patch's unlock state as read by a query that starts after this call. Callers that arrive
   * while one query runs share the next one, so a poll storm on a locked patch costs at most two
   * queries at a time, and no answer predates its request.
   */
  private freshState(patchId: CanonicalId): Promise<UnlockState | undefined> {
    let slot = this.reads.get(patchId);
    if (!slot) {
      slot = {};
      this.reads.set(patchId, slot);
    }
    if (slot.queued) return slot.queued;
    const current = slot;
    const start = () => {
      const query = this.access.unlockState(patchId);
      current.running = query;
      current.queued = undefined;
      const done = () => {
        if (current.running !== query) return;
        current.running = undefined;
        if (!current.queued) this.reads.delete(patchId);
      };
      query.then(done, done);
      return query;
    };
    if (!current.running) return start();
    current.queued = current.running.then(start, start);
    return current.queued;
  }

  private invalidate(realm?: string): void {
    this.generation += 1;
    if (realm === undefined) {
      this.grants.clear();
      this.tokens.clear();
      this.views.clear();
      this.statements.clear();
      return;
    }
    for (const [id, grant] of this.grants) if (grant.realm === realm) this.grants.delete(id);
    this.views.delete(realm);
  }

  private async listen(): Promise<void> {
    const session = ++this.session;
    const listener = await openChangeListener({
      connectionString: this.options.settings.databaseUrl!,
      applicationName: `${this.options.settings.databaseApplicationName}-listener`,
      heartbeatMs: this.heartbeatMs,
      channels: {
        [HEAD_CHANGED_CHANNEL]: (payload) => this.headChanged(parseChange<HeadChange>(payload)),
        [ACCESS_CHANGED_CHANNEL]: (payload) => this.revoked(parseChange<AccessChange>(payload)),
        [RELEASE_SIGNED_CHANNEL]: (payload) => this.signed(parseChange<ReleaseSigned>(payload)),
      },
      onLost: (error) => this.lost(session, error),
    });
    if (this.closed) return listener.close();
    this.listener = listener;
    this.invalidate();
    this.listening = true;
  }

  private headChanged(change: Partial<HeadChange> | undefined): void {
    this.invalidate(typeof change?.realm === 'string' ? change.realm : undefined);
  }

  private signed(change: Partial<ReleaseSigned> | undefined): void {
    if (typeof change?.realm !== 'string') {
      this.invalidate();
      return;
    }
    this.generation += 1;
    this.statements.delete(change.realm);
  }

  private revoked(change: Partial<AccessChange> | undefined): void {
    const id = change === undefined ? undefined : canonicalId(String(change.id));
    this.generation += 1;
    this.views.clear();
    if (id === undefined) this.invalidate();
    else if (change?.kind === 'token') this.tokens.delete(id);
    else this.grants.delete(id);
  }

  private lost(session: number, error: Error): void {
    if (session !== this.session || this.closed) return;
    this.listener = undefined;
    this.listening = false;
    this.invalidate();
    this.emit('listener', { listening: false, error });
    this.scheduleRelisten();
  }

  private scheduleRelisten(): void {
    if (this.closed) return;
    this.relistenTimer = setTimeout(() => {
      this.listen().then(
        () => {
          if (!this.closed) this.emit('listener', { listening: true });
        },
        () => this.scheduleRelisten(),
      );
    }, this.options.relistenDelayMs ?? 1000);
  }
}

/** A notification's JSON payload; undefined when it is not JSON (then everything is invalidated). */
function parseChange<T>(payload: string): Partial<T> | undefined {
  try {
    const value: unknown = JSON.parse(payload);
    return typeof value === 'object' && value !== null ? (value as Partial<T>) : undefined;
  } catch {
    return undefined;
  }
}

/** A player whose JWT names another realm hears it in its own code; a realm token, FORBIDDEN. */
function assertRealm(principal: Principal, realm: string, what: string): void {
  if (principal.realm === realm) return;
  if (principal.player !== undefined) {
    throw new SplinterError(
      'TOKEN_REALM_MISMATCH',
      `this player token is for realm ${principal.realm}; ${what} is not in it`,
    );
  }
  throw new SplinterError(
    'FORBIDDEN',
    `this token is scoped to realm ${principal.realm}; ${what} is not in it`,
  );
}
