import { SplinterError } from '@splintertree/errors';
import { listenJson, notifyJson, type Queryable, rfc3339, type SqlClient } from './sql.js';
import type { PatchStatus } from './store.js';

/**
 * Revocations of patches and launcher tokens are announced on this channel, in the transaction that
 * makes them, with a JSON payload `{"kind":"patch"|"token","id","realm"}` (ids as strings).
 */
export const ACCESS_CHANGED_CHANNEL = 'splinter_access_changed';

export interface AccessChange {
  kind: 'patch' | 'token';
  id: string;
  realm: string;
}

/** What deciding an unlock needs, in one read: the patch, whether it is live, and its wrapped key. */
export interface UnlockState {
  patchId: string;
  realm: string;
  status: PatchStatus;
  /** The patch is its realm's head or in the head's chain. */
  live: boolean;
  key: { keyId: string; kekId: string; wrappedKey: Uint8Array | null } | null;
}

export interface PreloadRow {
  id: string;
  version: string;
  parent: string | null;
  reference: string;
  digest: string;
  keyId: string | null;
}

export interface TokenRow {
  id: string;
  realm: string;
  label: string | null;
  createdAt: string;
  revokedAt: string | null;
}

export interface WrappedKeyRow {
  patchId: string;
  keyId: string;
  kekId: string;
  wrappedKey: Uint8Array;
}

const TOKEN_COLUMNS = `id::text AS id, realm, label, ${rfc3339('created_at')} AS "createdAt", ${rfc3339('revoked_at')} AS "revokedAt"`;

/**
 * Preload keys (stored only wrapped; no crypto happens here) and launcher tokens (stored only hashed).
 */
export class AccessStore {
  constructor(private readonly db: SqlClient) {}

  async unlockState(patchId: string): Promise<UnlockState | undefined> {
    if (!/^\d{1,18}$/.test(patchId)) return undefined;
    const { rows } = await this.db.query<{
      realm: string;
      status: PatchStatus;
      live: boolean | null;
      keyId: string | null;
      kekId: string | null;
      wrappedKey: Uint8Array | null;
    }>(
      `SELECT p.realm, p.status, (h.chain[p.depth + 1] = p.id) AS live,
              k.key_id AS "keyId", k.kek_id AS "kekId", k.wrapped_key AS "wrappedKey"
         FROM cluster.patches p
         JOIN cluster.realms r ON r.realm = p.realm
         LEFT JOIN cluster.patches h ON h.id = r.head
         LEFT JOIN cluster.patch_keys k ON k.patch_id = p.id
        WHERE p.id = $1`,
      [patchId],
    );
    const row = rows[0];
    if (!row) return undefined;
    return {
      patchId,
      realm: row.realm,
      status: row.status,
      live: row.live === true,
      key:
        row.keyId === null
          ? null
          : {
              keyId: row.keyId,
              kekId: row.kekId!,
              wrappedKey: row.wrappedKey === null ? null : new Uint8Array(row.wrappedKey),
            },
    };
  }

  /**
   * The keys of a patch's sealed ancestors (not its own), oldest first: a version reuses records its
   * ancestors sealed, so a client needs them all once the patch is live.
   */
  async ancestorKeys(
    patchId: string,
  ): Promise<Array<{ patchId: string; keyId: string; kekId: string; wrappedKey: Uint8Array }>> {
    if (!/^\d{1,18}$/.test(patchId)) return [];
    const { rows } = await this.db.query<{
      patchId: string;
      keyId: string;
      kekId: string;
      wrappedKey: Uint8Array;
    }>(
      `SELECT k.patch_id::text AS "patchId", k.key_id AS "keyId", k.kek_id AS "kekId", k.wrapped_key AS "wrappedKey"
         FROM cluster.patches p
         JOIN cluster.patch_keys k ON k.patch_id = ANY(p.chain) AND k.patch_id <> p.id
        WHERE p.id = $1 AND k.wrapped_key IS NOT NULL
        ORDER BY k.patch_id`,
      [patchId],
    );
    return rows.map((row) => ({ ...row, wrappedKey: new Uint8Array(row.wrappedKey) }));
  }

  /** The KEK fingerprints that wrap keys not yet destroyed. */
  async kekIds(): Promise<string[]> {
    const { rows } = await this.db.query<{ kekId: string }>(
      'SELECT DISTINCT kek_id AS "kekId" FROM cluster.patch_keys WHERE wrapped_key IS NOT NULL ORDER BY 1',
    );
    return rows.map((row) => row.kekId);
  }

  /** The KEK the release database's live keys are wrapped with; undefined before the first key. */
  async currentKekId(): Promise<string | undefined> {
    const { rows } = await this.db.query<{ kekId: string }>(
      'SELECT kek_id AS "kekId" FROM cluster.key_encryption',
    );
    return rows[0]?.kekId;
  }

  /**
   * Moves the database from KEK `from` to KEK `to` in one transaction: the current KEK is locked (a
   * key inserted meanwhile waits, then finds `to` current and is refused), every live key is
   * re-wrapped by `rewrap` (which may throw, and then nothing changes), and `to` becomes current.
   * Returns how many keys were re-wrapped.
   */
  async rotateKek(input: {
    from: string;
    to: string;
    rewrap: (row: WrappedKeyRow) => { wrappedKey: Uint8Array; kekId: string };
  }): Promise<number> {
    return this.db.transaction(async (tx) => {
      const current = await lockCurrentKek(tx, input.from, 'UPDATE');
      if (current !== input.from && current !== input.to) {
        throw new SplinterError(
          'KEK_MISMATCH',
          `the configured KEK (${input.from}) is not the current KEK of the release database (${current})`,
          { details: { kekId: input.from, currentKekId: current } },
        );
      }
      // Read after the lock: every key committed before it is here, none can be added until commit.
      const { rows } = await tx.query<{
        patchId: string;
        keyId: string;
        kekId: string;
        wrappedKey: Uint8Array;
      }>(
        `SELECT patch_id::text AS "patchId", key_id AS "keyId", kek_id AS "kekId", wrapped_key AS "wrappedKey"
           FROM cluster.patch_keys WHERE wrapped_key IS NOT NULL ORDER BY patch_id FOR UPDATE`,
      );
      for (const row of rows) {
        const next = input.rewrap({ ...row, wrappedKey: new Uint8Array(row.wrappedKey) });
        await tx.query('UPDATE cluster.patch_keys SET wrapped_key = $2, kek_id = $3 WHERE patch_id = $1', [
          row.patchId,
          Buffer.from(next.wrappedKey),
          next.kekId,
        ]);
      }
      await tx.query('UPDATE cluster.key_encryption SET kek_id = $1, changed_at = now()', [input.to]);
      return rows.length;
    });
  }

  /** Patches of `realm` published for preload and never activated, with the key id each needs. */
  async preloads(realm: string): Promise<PreloadRow[]> {
    const { rows } = await this.db.query<PreloadRow>(
      `SELECT p.id::text AS id, p.version, p.parent::text AS parent, p.reference, p.digest, k.key_id AS "keyId"
         FROM cluster.patches p LEFT JOIN cluster.patch_keys k ON k.patch_id = p.id
        WHERE p.realm = $1 AND p.status = 'preload' ORDER BY p.id`,
      [realm],
    );
    return rows;
  }

  async keyIdsOf(patchIds: string[]): Promise<Map<string, string>> {
    if (patchIds.length === 0) return new Map();
    const { rows } = await this.db.query<{ id: string; keyId: string }>(
      `SELECT patch_id::text AS id, key_id AS "keyId" FROM cluster.patch_keys WHERE patch_id = ANY($1::bigint[])`,
      [`{${patchIds.join(',')}}`],
    );
    return new Map(rows.map((row) => [row.id, row.keyId]));
  }

  async createToken(input: {
    realm: string;
    tokenHash: Uint8Array;
    label?: string | undefined;
  }): Promise<TokenRow> {
    const { rows } = await this.db.query<TokenRow>(
      `INSERT INTO cluster.api_tokens (realm, token_hash, label) VALUES ($1, $2, $3) RETURNING ${TOKEN_COLUMNS}`,
      [input.realm, Buffer.from(input.tokenHash), input.label ?? null],
    );
    return rows[0]!;
  }

  /** A token that is not revoked, with its hash; undefined otherwise. */
  async activeToken(id: string): Promise<{ id: string; realm: string; tokenHash: Uint8Array } | undefined> {
    if (!/^\d{1,18}$/.test(id)) return undefined;
    const { rows } = await this.db.query<{ id: string; realm: string; tokenHash: Uint8Array }>(
      `SELECT id::text AS id, realm, token_hash AS "tokenHash" FROM cluster.api_tokens
        WHERE id = $1 AND revoked_at IS NULL`,
      [id],
    );
    const row = rows[0];
    return row ? { ...row, tokenHash: new Uint8Array(row.tokenHash) } : undefined;
  }

  async listTokens(realm?: string): Promise<TokenRow[]> {
    const { rows } = await this.db.query<TokenRow>(
      `SELECT ${TOKEN_COLUMNS} FROM cluster.api_tokens WHERE $1::text IS NULL OR realm = $1 ORDER BY id`,
      [realm ?? null],
    );
    return rows;
  }

  /** Calls `onChange` for every revocation committed from now on (LISTEN). */
  async listenAccessChanges(
    onChange: (change: AccessChange) => void,
    onError?: (error: Error) => void,
  ): Promise<() => Promise<void>> {
    return listenJson(this.db, ACCESS_CHANGED_CHANNEL, onChange, onError);
  }

  async revokeToken(id: string): Promise<TokenRow> {
    return this.db.transaction(async (tx) => {
      const { rows } = await tx.query<TokenRow>(
        `UPDATE cluster.api_tokens SET revoked_at = coalesce(revoked_at, now())
          WHERE id = $1 RETURNING ${TOKEN_COLUMNS}`,
        [/^\d{1,18}$/.test(id) ? id : '0'],
      );
      const row = rows[0];
      if (!row) throw new SplinterError('NOT_FOUND', `no launcher token ${JSON.stringify(id)}`);
      const change: AccessChange = { kind: 'token', id: row.id, realm: row.realm };
      await notifyJson(tx, ACCESS_CHANGED_CHANNEL, change);
      return row;
    });
  }
}

/**
 * Locks the current KEK row (FOR SHARE to insert a key, FOR UPDATE to rotate) and returns its KEK id;
 * a database without one takes `proposed` (the first key, or a rotation before any key).
 */
async function lockCurrentKek(tx: Queryable, proposed: string, mode: 'SHARE' | 'UPDATE'): Promise<string> {
  await tx.query(
    'INSERT INTO cluster.key_encryption (kek_id) VALUES ($1) ON CONFLICT (singleton) DO NOTHING',
    [proposed],
  );
  const { rows } = await tx.query<{ kekId: string }>(
    `SELECT kek_id AS "kekId" FROM cluster.key_encryption FOR ${mode}`,
  );
  return rows[0]!.kekId;
}

/**
 * Inside the transaction that inserts a patch key wrapped by `kekId`: holds the current KEK until
 * commit (a rotation waits) and refuses a key wrapped by any other KEK (a rotation committed since the
 * key was made: it would be left behind, wrapped by a retired KEK).
 */
export async function assertKeyWrappedByCurrentKek(tx: Queryable, kekId: string): Promise<void> {
  const current = await lockCurrentKek(tx, kekId, 'SHARE');
  if (current !== kekId) {
    throw new SplinterError(
      'KEK_MISMATCH',
      `the patch key is wrapped with KEK ${kekId}, but the current KEK is ${current} (kek rotate ran since this push began): push again with the current KEK`,
      { details: { kekId, currentKekId: current } },
    );
  }
}
