import { EventEmitter } from 'node:events';
import {
  ACCESS_CHANGED_CHANNEL,
  type AccessChange,
  AccessStore,
  assertSchemaCurrent,
  ChainStore,
  HEAD_CHANGED_CHANNEL,
  type HeadChange,
  openPostgres,
  type SqlClient,
  type UnlockState,
} from '@splintertree/chain';
import { SplinterError } from '@splintertree/errors';
import { kekIdOf, unwrapKey } from '@splintertree/seal';
import { type ChangeListener, openChangeListener } from './change-listener.js';
import { type CanonicalId, canonicalId } from './ids.js';
import { validateName } from './names.js';
import { assertKekMatches, parseToken, resolveKek, secretMatches } from './preload.js';
import type { Settings } from './settings.js';

/** Who is calling: a launcher token, or a player's JWT, and the realm it is scoped to. */
export interface Principal {
  /** The launcher (realm) token's id; absent for a player authenticated by a JWT. */
  tokenId?: CanonicalId;
  /** A player authenticated by a JWT: its issuer and subject (`iss#sub`). */
  player?: string;
  realm: string;
}

export interface UnlockGrant {
  patchId: string;
  keyId: string;
  /** The 32-byte patch key, base64. */
  key: string;
  /** The keys of the patch's sealed ancestors, whose records its version reuses (all live with it). */
  ancestors: Array<{ patchId: string; keyId: string; key: string }>;
}

export interface RealmPatch {
  id: string;
  version: string;
  parent: string | null;
  reference: string;
  digest: string;
  status: string;
  /** Set when the patch was pushed with --preload: the key its layers need. */
  keyId: string | null;
}

export interface RealmView {
  realm: string;
  head: RealmPatch | null;
  /** Root first, ending with the head. */
  chain: RealmPatch[];
  /** Published for preload, not yet activated: launchers may download these now. */
  preload: RealmPatch[];
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

/** Emitted as `listener` when the LISTEN connection is lost and when it is back. */
export type ListenerState = { listening: false; error: Error } | { listening: true };

/** Start-up checks of what the launcher API needs, one message per problem (empty when all is well). */
export async function launcherConfigProblems(settings: Settings): Promise<string[]> {
  const problems: string[] = [];
  if (settings.databaseUrl === undefined) {
    problems.push(
      'DATABASE_URL is not set: the launcher API needs PostgreSQL (the embedded PGlite database cannot be shared with the CLI that activates patches)',
    );
  }
  try {
    await resolveKek(settings, 'the launcher API');
  } catch (error) {
    problems.push((error as Error).message);
  }
  return problems;
}

/**
 * What the launcher API serves, over the release database. Decisions that release keys are cached in
 * memory and dropped by the NOTIFY of every head change and revocation; a locked answer is always
 * re-read from the database, so an unlock succeeds as soon as the activation has committed, even
 * before its notification arrives. While the LISTEN connection is lost or silent (see
 * LauncherOptions.heartbeatMs), nothing is cached: every answer is read from the database.
 */
export class LauncherService extends EventEmitter<{ listener: [ListenerState] }> {
  private readonly grants = new Map<CanonicalId, UnlockGrant & { realm: string }>();
  private readonly tokens = new Map<CanonicalId, { realm: string; tokenHash: Uint8Array }>();
  private readonly reads = new Map<
    CanonicalId,
    { running?: Promise<UnlockState | undefined>; queued?: Promise<UnlockState | undefined> }
  >();
  private readonly views = new Map<string, { view: RealmView; expires: number }>();
  private readonly viewReads = new Map<string, { generation: number; read: Promise<RealmView> }>();
  /** Bumped by every invalidation: a read that started before one must not fill the cache after it. */
  private generation = 0;
  private listening = false;
  private listener: ChangeListener | undefined;
  /** Numbers each listener opened, so that a late loss of an old one changes nothing. */
  private session = 0;
  private relistenTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly kekId: string;
  private readonly heartbeatMs: number;

  private constructor(
    private readonly client: SqlClient,
    private readonly chain: ChainStore,
    private readonly access: AccessStore,
    private readonly kek: Uint8Array,
    private readonly options: LauncherOptions,
    private readonly counter: { queries: number } = { queries: 0 },
  ) {
    super();
    this.kekId = kekIdOf(kek);
    this.heartbeatMs = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
  }

  static async open(options: LauncherOptions): Promise<LauncherService> {
    const problems = await launcherConfigProblems(options.settings);
    if (problems.length > 0) {
      throw new SplinterError('INVALID_CONFIG', problems.join('; '), { details: { problems } });
    }
    const kek = await resolveKek(options.settings, 'the launcher API');
    const pool = await openPostgres(options.settings.databaseUrl!, {
      max: options.poolSize ?? options.settings.databasePoolSize,
      timeouts: options.settings.databaseTimeouts,
      applicationName: options.settings.databaseApplicationName,
    });
    // Every statement this service sends is counted (queries()): release-day capacity is planned on it.
    const counter = { queries: 0 };
    const client: SqlClient = {
      ...pool,
      query: (text, params) => {
        counter.queries += 1;
        return pool.query(text, params);
      },
    };
    try {
      // Never migrates: the API runs as a role that may only read and write rows (`splinter db migrate`).
      await assertSchemaCurrent(client);
      const access = new AccessStore(client);
      await assertKekMatches(access, kek);
      const launcher = new LauncherService(client, new ChainStore(client), access, kek, options, counter);
      await launcher.listen();
      return launcher;
    } catch (error) {
      await client.close();
      throw error;
    }
  }

  /**
   * The principal of a bearer token; UNAUTHENTICATED for a missing, malformed, unknown or revoked one
   * (with `details.tokenId` when the token named a canonical id, for limits on failures per token).
   */
  async authenticate(token: string | undefined): Promise<Principal> {
    const parsed = token === undefined ? undefined : parseToken(token);
    if (!parsed)
      throw new SplinterError('UNAUTHENTICATED', 'a launcher token is required (Authorization: Bearer ...)');
    const id = canonicalId(parsed.id);
    if (id === undefined) throw new SplinterError('UNAUTHENTICATED', 'unknown or revoked launcher token');
    let known = this.listening ? this.tokens.get(id) : undefined;
    if (!known) {
      const generation = this.generation;
      known = await this.access.activeToken(id);
      if (known && this.listening && generation === this.generation) this.tokens.set(id, known);
    }
    if (!known || !secretMatches(parsed.secret, known.tokenHash)) {
      throw new SplinterError('UNAUTHENTICATED', 'unknown or revoked launcher token', {
        details: { tokenId: id },
      });
    }
    return { tokenId: id, realm: known.realm };
  }

  /**
   * The realm's head, chain and preloads. With `viewTtlMs`, one read serves every caller of the realm
   * until it expires or a head change drops it, and callers that arrive while it runs share it.
   */
  async realm(realm: string, principal: Principal): Promise<RealmView> {
    validateName('realm', realm);
    assertRealm(principal, realm, `realm ${realm}`);
    const ttl = this.options.viewTtlMs ?? 0;
    if (!this.listening || ttl <= 0) return this.readView(realm);
    const cached = this.views.get(realm);
    if (cached && cached.expires > performance.now()) return cached.view;
    const generation = this.generation;
    let pending = this.viewReads.get(realm);
    if (!pending || pending.generation !== generation) {
      const read = this.readView(realm);
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

  private async readView(realm: string): Promise<RealmView> {
    const shown = await this.chain.showRealm(realm);
    const keyIds = await this.access.keyIdsOf(shown.chain.map((p) => p.id));
    const view = (p: (typeof shown.chain)[number]): RealmPatch => ({
      id: p.id,
      version: p.version,
      parent: p.parent,
      reference: p.reference,
      digest: p.digest,
      status: p.status,
      keyId: keyIds.get(p.id) ?? null,
    });
    const chain = shown.chain.map(view);
    const preload = (await this.access.preloads(realm)).map((p) => ({ ...p, status: 'preload' }));
    return { realm, head: chain.at(-1) ?? null, chain, preload };
  }

  /**
   * The realm's newest signed release statement (a DSSE envelope, JSON, exactly as signed at
   * activation or refresh: nothing is signed per request). RELEASE_MISSING when there is none.
   */
  async releaseStatement(
    realm: string,
    principal: Principal,
  ): Promise<{ sequence: string; envelope: string }> {
    validateName('realm', realm);
    assertRealm(principal, realm, `realm ${realm}`);
    const statement = await this.chain.latestStatement(realm);
    if (!statement) {
      throw new SplinterError('RELEASE_MISSING', `realm ${realm} has no signed release statement`);
    }
    return { sequence: statement.sequence, envelope: statement.envelope };
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
    if (state.status === 'revoked' || state.key?.wrappedKey === null) {
      throw new SplinterError('KEY_REVOKED', `patch ${patchId} is revoked: its key is destroyed`);
    }
    if (!state.key) {
      throw new SplinterError('NOT_FOUND', `patch ${patchId} was not pushed with --preload: it has no key`);
    }
    if (!state.live) {
      throw new SplinterError(
        'KEY_LOCKED',
        state.status === 'preload'
          ? `patch ${patchId} is in preload: its key is released when it is activated`
          : `patch ${patchId} is not in the chain of the head of ${state.realm}: its key is locked`,
        { details: { patchId, status: state.status } },
      );
    }
    if (state.key.kekId !== this.kekId) {
      throw new SplinterError(
        'KEK_MISMATCH',
        `the key of patch ${patchId} is wrapped with ${state.key.kekId}, not with this server's KEK ${this.kekId}`,
      );
    }
    const key = Buffer.from(unwrapKey(this.kek, state.key.wrappedKey, state.key.keyId)).toString('base64');
    const ancestors = (await this.access.ancestorKeys(patchId)).map((row) => {
      if (row.kekId !== this.kekId) {
        throw new SplinterError(
          'KEK_MISMATCH',
          `the key of patch ${row.patchId} is wrapped with ${row.kekId}, not with this server's KEK ${this.kekId}`,
        );
      }
      return {
        patchId: row.patchId,
        keyId: row.keyId,
        key: Buffer.from(unwrapKey(this.kek, row.wrappedKey, row.keyId)).toString('base64'),
      };
    });
    const grant = { patchId, keyId: state.key.keyId, key, ancestors };
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
      this.client.query('SELECT 1').then(
        () => true,
        () => false,
      ),
      new Promise<false>((resolve) => {
        deadline = setTimeout(() => resolve(false), this.heartbeatMs);
      }),
    ]);
    clearTimeout(deadline);
    return { ready: database && this.listening, database, listening: this.listening };
  }

  /** Statements sent to the database so far (the LISTEN connection's heartbeats aside). */
  queries(): number {
    return this.counter.queries;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.relistenTimer);
    await this.listener?.close();
    await this.client.close();
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
