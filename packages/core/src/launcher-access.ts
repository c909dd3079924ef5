import type { AccessStore, ChainStore, SqlClient, StoredStatement, UnlockState } from '@splintertree/chain';
import { SplinterError } from '@splintertree/errors';
import { kekIdOf, unwrapKey } from '@splintertree/seal';
import { chainDatabaseOver, openSqlClient } from './database.js';
import { type CanonicalId, canonicalId } from './ids.js';
import type { RealmPatch, RealmView, UnlockGrant } from './launcher-types.js';
import { validateName } from './names.js';
import { assertKekMatches, parseToken, resolveKek, secretMatches } from './preload.js';
import type { Settings } from './settings.js';

/** A launcher token's row as the API keeps it: its realm and the hash its secret must match. */
export interface LauncherTokenRecord {
  realm: string;
  tokenHash: Uint8Array;
}

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
 * The reads and rules behind the launcher API, with no state of their own: which token is whose,
 * what a realm view holds, and when a patch key may be released (unwrapped with the KEK). The
 * server that answers with them (apps/api) decides what to cache and for how long.
 */
export class LauncherAccess {
  private readonly kekId: string;

  private constructor(
    private readonly client: SqlClient,
    private readonly chain: ChainStore,
    private readonly access: AccessStore,
    private readonly kek: Uint8Array,
    private readonly counter: { queries: number },
  ) {
    this.kekId = kekIdOf(kek);
  }

  /**
   * Opens the release database (PostgreSQL only; its schema checked, never migrated: the API runs
   * as a role that may only read and write rows) and checks the KEK against the stored keys.
   */
  static async open(
    settings: Settings,
    options: { poolSize?: number | undefined } = {},
  ): Promise<LauncherAccess> {
    const problems = await launcherConfigProblems(settings);
    if (problems.length > 0) {
      throw new SplinterError('INVALID_CONFIG', problems.join('; '), { details: { problems } });
    }
    const kek = await resolveKek(settings, 'the launcher API');
    const pool = await openSqlClient({
      ...settings,
      databasePoolSize: options.poolSize ?? settings.databasePoolSize,
    });
    // Every statement sent is counted (queries()): release-day capacity is planned on it.
    const counter = { queries: 0 };
    const client: SqlClient = {
      ...pool,
      query: (text, params) => {
        counter.queries += 1;
        return pool.query(text, params);
      },
    };
    const database = await chainDatabaseOver(client);
    try {
      await assertKekMatches(database.access, kek);
    } catch (error) {
      await client.close();
      throw error;
    }
    return new LauncherAccess(client, database.chain, database.access, kek, counter);
  }

  /**
   * The id and realm of a bearer token whose secret matches its record; UNAUTHENTICATED for a
   * missing, malformed, unknown or revoked one (with `details.tokenId` when it named a canonical id,
   * for limits on failures per token). `lookup` finds records: tokenRecord by default, or a cache.
   */
  async authenticate(
    token: string | undefined,
    lookup: (id: CanonicalId) => Promise<LauncherTokenRecord | undefined> = (id) => this.tokenRecord(id),
  ): Promise<{ tokenId: CanonicalId; realm: string }> {
    const parsed = token === undefined ? undefined : parseToken(token);
    if (!parsed)
      throw new SplinterError('UNAUTHENTICATED', 'a launcher token is required (Authorization: Bearer ...)');
    const id = canonicalId(parsed.id);
    if (id === undefined) throw new SplinterError('UNAUTHENTICATED', 'unknown or revoked launcher token');
    const known = await lookup(id);
    if (!known || !secretMatches(parsed.secret, known.tokenHash)) {
      throw new SplinterError('UNAUTHENTICATED', 'unknown or revoked launcher token', {
        details: { tokenId: id },
      });
    }
    return { tokenId: id, realm: known.realm };
  }

  /** The active (not revoked) token `id`, read from the database. */
  async tokenRecord(id: CanonicalId): Promise<LauncherTokenRecord | undefined> {
    const row = await this.access.activeToken(id);
    return row && { realm: row.realm, tokenHash: row.tokenHash };
  }

  /** INVALID_ARGUMENT unless `realm` is a realm name. */
  checkRealm(realm: string): string {
    return validateName('realm', realm);
  }

  /** The realm's head, chain and preloads, read from the database. */
  async realmView(realm: string): Promise<RealmView> {
    this.checkRealm(realm);
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
  async releaseStatement(realm: string): Promise<Pick<StoredStatement, 'sequence' | 'envelope'>> {
    this.checkRealm(realm);
    const statement = await this.chain.latestStatement(realm);
    if (!statement) {
      throw new SplinterError('RELEASE_MISSING', `realm ${realm} has no signed release statement`);
    }
    return { sequence: statement.sequence, envelope: statement.envelope };
  }

  /** Where patch `patchId` stands for unlocking (undefined: no such patch), read from the database. */
  unlockState(patchId: CanonicalId): Promise<UnlockState | undefined> {
    return this.access.unlockState(patchId);
  }

  /**
   * The key of a patch in `state`, unwrapped with the KEK, with its sealed ancestors' keys: only for
   * a live patch (in the chain of its realm's head). KEY_REVOKED, NOT_FOUND (a patch with no key),
   * KEY_LOCKED (preload, or not in the head's chain) or KEK_MISMATCH otherwise.
   */
  async grant(state: UnlockState): Promise<UnlockGrant> {
    const { patchId } = state;
    const stored = state.key;
    if (state.status === 'revoked' || stored?.wrappedKey === null) {
      throw new SplinterError('KEY_REVOKED', `patch ${patchId} is revoked: its key is destroyed`);
    }
    if (!stored) {
      throw new SplinterError('NOT_FOUND', `patch ${patchId} has no key: it was published unsealed`, {
        details: { patchId },
      });
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
    const key = this.unwrap(patchId, { ...stored, wrappedKey: stored.wrappedKey });
    const ancestors = (await this.access.ancestorKeys(patchId)).map((row) => ({
      patchId: row.patchId,
      keyId: row.keyId,
      key: this.unwrap(row.patchId, row),
    }));
    return { patchId, keyId: stored.keyId, key, ancestors };
  }

  /** True when the database answers a query. */
  async ping(): Promise<boolean> {
    return this.client.query('SELECT 1').then(
      () => true,
      () => false,
    );
  }

  /** Statements sent to the database so far. */
  queries(): number {
    return this.counter.queries;
  }

  close(): Promise<void> {
    return this.client.close();
  }

  private unwrap(patchId: string, key: { keyId: string; kekId: string; wrappedKey: Uint8Array }): string {
    if (key.kekId !== this.kekId) {
      throw new SplinterError(
        'KEK_MISMATCH',
        `the key of patch ${patchId} is wrapped with ${key.kekId}, not with this server's KEK ${this.kekId}`,
      );
    }
    return Buffer.from(unwrapKey(this.kek, key.wrappedKey, key.keyId)).toString('base64');
  }
}
