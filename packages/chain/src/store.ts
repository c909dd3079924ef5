import { SplinterError } from '@splintertree/errors';
import { ACCESS_CHANGED_CHANNEL, type AccessChange, assertKeyWrappedByCurrentKek } from './access.js';
import { listenJson, notifyJson, type Queryable, rfc3339, type SqlClient } from './sql.js';

export type PatchStatus = 'draft' | 'preload' | 'active' | 'superseded' | 'revoked';

export interface ModPin {
  reference: string;
  digest: string;
}

export interface PatchRow {
  id: string;
  realm: string;
  version: string;
  parent: string | null;
  /** Every ancestor, root first, ending with this patch. */
  chain: string[];
  depth: number;
  reference: string;
  digest: string;
  status: PatchStatus;
  mods: ModPin[];
  createdAt: string;
  activatedAt: string | null;
}

export interface ReleaseRow {
  seq: string;
  realm: string;
  action: 'activate' | 'rollback';
  fromHead: string | null;
  toHead: string;
  actor: string;
  forced: boolean;
  at: string;
}

export interface HeadChange {
  realm: string;
  seq: string;
  action: 'activate' | 'rollback';
  fromHead: string | null;
  toHead: string;
  forced: boolean;
}

/** What a release statement says, as the database knows it when the statement is made. */
export interface ReleaseFacts {
  realm: string;
  /** The statement's own number, assigned by the database; rises with every statement of the realm. */
  sequence: string;
  /** The release-log entry whose head the statement names. */
  release: string;
  action: 'activate' | 'rollback' | 'refresh';
  head: { id: string; version: string; digest: string; reference: string };
  mods: ModPin[];
}

/** Signs a statement of `facts` (in the transaction that makes them true): the envelope and its times. */
export type StatementSigner = (
  facts: ReleaseFacts,
) => Promise<{ envelope: string; keyId: string; issuedAt: string; expiresAt: string }>;

export interface StoredStatement {
  sequence: string;
  realm: string;
  release: string;
  head: string;
  keyId: string;
  /** The DSSE envelope, JSON, exactly as signed. */
  envelope: string;
  issuedAt: string;
  expiresAt: string;
}

/**
 * Every head change is announced on this channel, in the same transaction that makes it, with a JSON
 * payload `{"realm","seq","action","fromHead","toHead","forced"}` (ids and seq as strings).
 */
export const HEAD_CHANGED_CHANNEL = 'splinter_head_changed';

/**
 * Every stored release statement is announced on this channel, in the transaction that stores it, with
 * a JSON payload `{"realm","sequence","head"}`: a refresh re-signs a head without moving it.
 */
export const RELEASE_SIGNED_CHANNEL = 'splinter_release_signed';

export interface ReleaseSigned {
  realm: string;
  sequence: string;
  head: string;
}

export interface RegisterPatchInput {
  realm: string;
  version: string;
  /** Parent id or version in the same realm; default: the realm's head (none: a new root). */
  parent?: string | undefined;
  reference: string;
  digest: string;
  status: 'draft' | 'preload';
  mods?: ModPin[];
  /** The preload key, wrapped by the KEK (no crypto happens here). */
  key?: { keyId: string; wrappedKey: Uint8Array; kekId: string };
}

/** The keys a realm trusts to sign its patches' mods (a trust file's PEM keys), and who set them when. */
export interface ModTrust {
  realm: string;
  keys: string;
  setBy: string;
  setAt: string;
}

const MOD_TRUST_COLUMNS = `realm, keys, set_by AS "setBy", ${rfc3339('set_at')} AS "setAt"`;

/** A patch as a realm view lists it: everything but its chain (the view's order is the chain). */
export type ChainEntry = Omit<PatchRow, 'chain'>;

/** A realm's head and the end of its chain: the same size whatever the chain's depth. */
export interface ShownRealm {
  realm: string;
  head: ChainEntry | null;
  /** The head's nearest ancestors (at most `ancestors` of them), root-most first, ending with the head. */
  chain: ChainEntry[];
  /** Older ancestors left out of `chain` (0 when it starts at the root). */
  omitted: number;
}

/** How many ancestors of the head a realm view lists by default. */
export const REALM_VIEW_ANCESTORS = 5;

const ENTRY_COLUMNS = `id::text AS id, realm, version, parent::text AS parent, depth, reference, digest, status,
  mods, ${rfc3339('created_at')} AS "createdAt", ${rfc3339('activated_at')} AS "activatedAt"`;

const PATCH_COLUMNS = `${ENTRY_COLUMNS}, chain::text[] AS chain`;

/** The columns of ENTRY_COLUMNS, of `cluster.patches p`, unconverted (for a CTE that ENTRY_COLUMNS reads). */
const LINE_COLUMNS = `p.id, p.realm, p.version, p.parent, p.depth, p.reference, p.digest, p.status, p.mods,
  p.created_at, p.activated_at`;

const RELEASE_COLUMNS = `seq::text AS seq, realm, action, from_head::text AS "fromHead", to_head::text AS "toHead",
  actor, forced, ${rfc3339('at')} AS at`;

const STATEMENT_COLUMNS = `sequence::text AS sequence, realm, release_seq::text AS release, head::text AS head,
  key_id AS "keyId", envelope, ${rfc3339('issued_at')} AS "issuedAt", ${rfc3339('expires_at')} AS "expiresAt"`;

/** A row as the driver returns it: pg and PGlite differ in how they hand over jsonb and integers. */
type Raw<T extends ChainEntry> = Omit<T, 'mods' | 'depth'> & {
  mods: ModPin[] | string;
  depth: number | string;
};
type RawPatch = Raw<PatchRow>;

function toPatch<R extends Raw<ChainEntry>>(
  raw: R,
): Omit<R, 'mods' | 'depth'> & Pick<PatchRow, 'mods' | 'depth'> {
  return {
    ...raw,
    depth: Number(raw.depth),
    mods: typeof raw.mods === 'string' ? (JSON.parse(raw.mods) as ModPin[]) : raw.mods,
  };
}

/**
 * Statuses: the realm's head is `active`; a patch that was the head and no longer is, is `superseded`;
 * one never activated is `draft` or `preload`; `revoked` is final. Whether a patch is live (its key may
 * be released) is decided by membership of the head's chain, not by status.
 */
export class ChainStore {
  constructor(private readonly db: SqlClient) {}

  async registerPatch(input: RegisterPatchInput): Promise<PatchRow> {
    return this.db.transaction(async (tx) => {
      // First, so that the KEK stays locked until the key row is committed (lock order: KEK, realm).
      if (input.key) await assertKeyWrappedByCurrentKek(tx, input.key.kekId);
      await tx.query('INSERT INTO cluster.realms (realm) VALUES ($1) ON CONFLICT (realm) DO NOTHING', [
        input.realm,
      ]);
      const realm = await lockRealm(tx, input.realm);
      const parent =
        input.parent === undefined
          ? realm.head === null
            ? undefined
            : await patchSummary(tx, realm.head)
          : await resolveInRealm(tx, input.realm, input.parent);
      if (parent?.status === 'revoked') {
        throw new SplinterError('INVALID_TRANSITION', `parent ${parent.id} (${parent.version}) is revoked`);
      }
      const taken = await tx.query('SELECT 1 FROM cluster.patches WHERE realm = $1 AND version = $2', [
        input.realm,
        input.version,
      ]);
      if (taken.rows.length > 0) {
        throw new SplinterError(
          'PATCH_EXISTS',
          `realm ${input.realm} already has a patch version ${input.version}`,
        );
      }
      const { rows: ids } = await tx.query<{ id: string }>(
        `SELECT nextval(pg_get_serial_sequence('cluster.patches', 'id'))::text AS id`,
      );
      const id = ids[0]!.id;
      // The chain is copied from the parent inside the database: deep chains never cross the wire.
      const { rows } = await tx.query<RawPatch>(
        `INSERT INTO cluster.patches (id, realm, version, parent, chain, depth, reference, digest, status, mods)
         SELECT $1, $2, $3, $4::bigint, coalesce(p.chain, '{}') || $1::bigint, coalesce(p.depth + 1, 0), $5, $6, $7, $8::jsonb
           FROM (SELECT 1) AS one LEFT JOIN cluster.patches p ON p.id = $4::bigint
         RETURNING ${PATCH_COLUMNS}`,
        [
          id,
          input.realm,
          input.version,
          parent?.id ?? null,
          input.reference,
          input.digest,
          input.status,
          JSON.stringify(input.mods ?? []),
        ],
      );
      if (input.key) {
        await tx.query(
          'INSERT INTO cluster.patch_keys (patch_id, key_id, wrapped_key, kek_id) VALUES ($1, $2, $3, $4)',
          [id, input.key.keyId, Buffer.from(input.key.wrappedKey), input.key.kekId],
        );
      }
      return toPatch(rows[0]!);
    });
  }

  /**
   * Makes `patchId` its realm's head in one transaction: the realm row is locked, the head compared
   * with what the caller saw, statuses changed, a release row appended and the change announced.
   */
  async activate(input: {
    patchId: string;
    realm?: string | undefined;
    expectedHead?: string | null | undefined;
    actor: string;
    force?: boolean;
    /** Sign a release statement in the same transaction: no head move without its statement. */
    statement?: StatementSigner | undefined;
  }): Promise<ReleaseRow & { statement?: StoredStatement }> {
    return this.db.transaction(async (tx) => {
      const patch = await patchSummary(tx, input.patchId);
      if (input.realm !== undefined && patch.realm !== input.realm) {
        throw new SplinterError(
          'REALM_MISMATCH',
          `patch ${patch.id} belongs to realm ${patch.realm}, not ${input.realm}`,
        );
      }
      const realm = await lockRealm(tx, patch.realm);
      // The status is read under the realm lock, which revokePatch holds too: a revocation that
      // committed while this transaction waited for the lock is seen here, not after the head moved.
      if ((await patchSummary(tx, patch.id)).status === 'revoked')
        throw new SplinterError('INVALID_TRANSITION', `patch ${patch.id} is revoked`);
      checkExpected(realm.head, input.expectedHead, patch.realm);
      if (realm.head === patch.id) {
        throw new SplinterError(
          'HEAD_CONFLICT',
          `patch ${patch.id} (${patch.version}) is already the head of ${patch.realm}`,
        );
      }
      const forced = realm.head !== null && !(await isAncestor(tx, realm.head, patch.id));
      if (forced && !input.force) {
        throw new SplinterError(
          'HEAD_CONFLICT',
          `patch ${patch.id} (${patch.version}) does not descend from the head ${realm.head} of ${patch.realm}`,
          { details: { reason: 'not-descendant', patch: patch.id, head: realm.head, realm: patch.realm } },
        );
      }
      const release = await moveHead(tx, patch.realm, realm.head, patch.id, 'activate', input.actor, forced);
      return withStatement(tx, release, 'activate', input.statement);
    });
  }

  /** Moves the head back to its parent, or to `to`, which must be in the head's chain. Constant time. */
  async rollback(input: {
    realm: string;
    /** An id or a version of the realm (a version wins when both could match). */
    to?: string | undefined;
    /** An id, taken as one even where a version has the same spelling. */
    toId?: string | undefined;
    expectedHead?: string | null | undefined;
    actor: string;
    statement?: StatementSigner | undefined;
  }): Promise<ReleaseRow & { statement?: StoredStatement }> {
    return this.db.transaction(async (tx) => {
      const realm = await lockRealm(tx, input.realm);
      checkExpected(realm.head, input.expectedHead, input.realm);
      if (realm.head === null)
        throw new SplinterError('INVALID_TRANSITION', `realm ${input.realm} has no head to roll back`);
      const head = await patchSummary(tx, realm.head);
      const target =
        input.toId ??
        (input.to === undefined ? head.parent : (await resolveInRealm(tx, input.realm, input.to)).id);
      if (target === null) {
        throw new SplinterError(
          'INVALID_TRANSITION',
          `the head ${head.id} (${head.version}) of ${input.realm} is a root: nothing to roll back to`,
        );
      }
      // The parent is an ancestor by construction: the usual rollback touches no chain at all.
      if (target === head.id || (target !== head.parent && !(await isAncestor(tx, target, head.id)))) {
        throw new SplinterError(
          'INVALID_TRANSITION',
          `patch ${target} is not an ancestor of the head ${head.id} of ${input.realm}`,
        );
      }
      if ((await patchSummary(tx, target)).status === 'revoked') {
        throw new SplinterError('INVALID_TRANSITION', `patch ${target} is revoked`);
      }
      const release = await moveHead(tx, input.realm, head.id, target, 'rollback', input.actor, false);
      return withStatement(tx, release, 'rollback', input.statement);
    });
  }

  /**
   * Signs the realm's unchanged head again under a higher sequence number and a new expiry (run
   * before the last statement expires, so launchers can tell a frozen view from a quiet realm).
   */
  async refreshStatement(input: { realm: string; statement: StatementSigner }): Promise<StoredStatement> {
    return this.db.transaction(async (tx) => {
      const realm = await lockRealm(tx, input.realm);
      if (realm.head === null)
        throw new SplinterError('INVALID_TRANSITION', `realm ${input.realm} has no head to sign`);
      const { rows } = await tx.query<{ seq: string }>(
        'SELECT r.seq::text AS seq FROM cluster.releases r WHERE realm = $1 ORDER BY r.seq DESC LIMIT 1',
        [input.realm],
      );
      if (!rows[0])
        throw new SplinterError('INVALID_TRANSITION', `realm ${input.realm} has no release to sign`);
      return recordStatement(tx, input.realm, rows[0].seq, realm.head, 'refresh', input.statement);
    });
  }

  /** The realm's newest release statement, if one was ever signed. */
  async latestStatement(realm: string): Promise<StoredStatement | undefined> {
    const { rows } = await this.db.query<StoredStatement>(
      `SELECT ${STATEMENT_COLUMNS} FROM cluster.release_statements s WHERE realm = $1 ORDER BY s.sequence DESC LIMIT 1`,
      [realm],
    );
    return rows[0];
  }

  async revokePatch(patchId: string): Promise<PatchRow> {
    return this.db.transaction(async (tx) => {
      const patch = await patchById(tx, patchId);
      const realm = await lockRealm(tx, patch.realm);
      if (realm.head === patch.id) {
        throw new SplinterError(
          'INVALID_TRANSITION',
          `patch ${patch.id} is the head of ${patch.realm}: roll back before revoking it`,
        );
      }
      const { rows } = await tx.query<RawPatch>(
        `UPDATE cluster.patches SET status = 'revoked' WHERE id = $1 RETURNING ${PATCH_COLUMNS}`,
        [patch.id],
      );
      await tx.query(
        'UPDATE cluster.patch_keys SET wrapped_key = NULL, destroyed_at = now() WHERE patch_id = $1 AND destroyed_at IS NULL',
        [patch.id],
      );
      const change: AccessChange = { kind: 'patch', id: patch.id, realm: patch.realm };
      await notifyJson(tx, ACCESS_CHANGED_CHANNEL, change);
      return toPatch(rows[0]!);
    });
  }

  async getPatch(id: string): Promise<PatchRow> {
    return patchById(this.db, id);
  }

  /** A patch by id, or by version within `realm`. */
  async findPatch(idOrVersion: string, realm?: string): Promise<PatchRow> {
    if (realm !== undefined) return resolveInRealm(this.db, realm, idOrVersion);
    if (!/^\d+$/.test(idOrVersion)) {
      throw new SplinterError(
        'INVALID_ARGUMENT',
        `${JSON.stringify(idOrVersion)} is not a patch id, and a version needs its realm`,
        { details: { reason: 'version-without-realm', patch: idOrVersion } },
      );
    }
    return patchById(this.db, idOrVersion);
  }

  async findVersion(realm: string, version: string): Promise<PatchRow | undefined> {
    const { rows } = await this.db.query<RawPatch>(
      `SELECT ${PATCH_COLUMNS} FROM cluster.patches WHERE realm = $1 AND version = $2`,
      [realm, version],
    );
    return rows[0] ? toPatch(rows[0]) : undefined;
  }

  /** Every patch of the realm, oldest first; REALM_UNKNOWN for a realm never pushed to (as showRealm). */
  async listPatches(realm: string): Promise<PatchRow[]> {
    const { rows } = await this.db.query<RawPatch>(
      `SELECT ${PATCH_COLUMNS} FROM cluster.patches WHERE realm = $1 ORDER BY id`,
      [realm],
    );
    if (rows.length === 0) await this.assertRealmExists(realm);
    return rows.map(toPatch);
  }

  /** The realm's release log, oldest first; REALM_UNKNOWN for a realm never pushed to. */
  async history(realm: string): Promise<ReleaseRow[]> {
    const { rows } = await this.db.query<ReleaseRow>(
      // By the table's column: a bare `seq` would name the text output column ('10' before '9').
      `SELECT ${RELEASE_COLUMNS} FROM cluster.releases r WHERE realm = $1 ORDER BY r.seq`,
      [realm],
    );
    if (rows.length === 0) await this.assertRealmExists(realm);
    return rows;
  }

  /** Stores the PEM public keys realm `realm` trusts for mods (replacing any), creating the realm. */
  async setModTrust(realm: string, keysPem: string, actor: string): Promise<ModTrust> {
    return this.db.transaction(async (tx) => {
      await tx.query('INSERT INTO cluster.realms (realm) VALUES ($1) ON CONFLICT (realm) DO NOTHING', [
        realm,
      ]);
      const { rows } = await tx.query<ModTrust>(
        `INSERT INTO cluster.realm_mod_trust (realm, keys, set_by) VALUES ($1, $2, $3)
           ON CONFLICT (realm) DO UPDATE SET keys = EXCLUDED.keys, set_by = EXCLUDED.set_by, set_at = now()
         RETURNING ${MOD_TRUST_COLUMNS}`,
        [realm, keysPem, actor],
      );
      return rows[0]!;
    });
  }

  /** The realm's mod trust policy; null when none is set (REALM_UNKNOWN for no such realm). */
  async modTrust(realm: string): Promise<ModTrust | null> {
    const { rows } = await this.db.query<ModTrust>(
      `SELECT ${MOD_TRUST_COLUMNS} FROM cluster.realm_mod_trust WHERE realm = $1`,
      [realm],
    );
    if (rows[0]) return rows[0];
    await this.assertRealmExists(realm);
    return null;
  }

  /** Removes the realm's mod trust policy; true if there was one. */
  async clearModTrust(realm: string): Promise<boolean> {
    await this.assertRealmExists(realm);
    const { rows } = await this.db.query(
      'DELETE FROM cluster.realm_mod_trust WHERE realm = $1 RETURNING realm',
      [realm],
    );
    return rows.length > 0;
  }

  private async assertRealmExists(realm: string): Promise<void> {
    const { rows } = await this.db.query('SELECT 1 FROM cluster.realms WHERE realm = $1', [realm]);
    if (rows.length === 0) throw new SplinterError('REALM_UNKNOWN', `no realm ${realm}`);
  }

  /**
   * The realm's head and its `ancestors` nearest ancestors (default REALM_VIEW_ANCESTORS), in one
   * query that follows parent links from the head by primary key: neither the time nor the size grows
   * with the chain's depth (no stored chain is read, not even the head's).
   */
  async showRealm(realm: string, options: { ancestors?: number } = {}): Promise<ShownRealm> {
    const ancestors = options.ancestors ?? REALM_VIEW_ANCESTORS;
    if (!Number.isSafeInteger(ancestors) || ancestors < 0) {
      throw new SplinterError('INVALID_ARGUMENT', `ancestors must be a whole number >= 0, not ${ancestors}`);
    }
    const { rows } = await this.db.query<Raw<ChainEntry> | { id: null }>(
      `WITH RECURSIVE line AS (
         SELECT ${LINE_COLUMNS}, 0 AS up
           FROM cluster.realms r LEFT JOIN cluster.patches p ON p.id = r.head WHERE r.realm = $1
         UNION ALL
         SELECT ${LINE_COLUMNS}, line.up + 1
           FROM line JOIN cluster.patches p ON p.id = line.parent WHERE line.up < $2::integer
       )
       SELECT ${ENTRY_COLUMNS} FROM line ORDER BY up DESC`,
      [realm, ancestors],
    );
    if (rows.length === 0) throw new SplinterError('REALM_UNKNOWN', `no realm ${realm}`);
    if (rows[0]!.id === null) return { realm, head: null, chain: [], omitted: 0 };
    const chain = (rows as Raw<ChainEntry>[]).map((row) => toPatch(row));
    return { realm, head: chain.at(-1)!, chain, omitted: chain[0]!.depth };
  }

  /** The mods of the realm's head: mods follow the head through activations and rollbacks. */
  async activeMods(realm: string): Promise<ModPin[]> {
    const shown = await this.showRealm(realm, { ancestors: 0 });
    return shown.head?.mods ?? [];
  }

  /** True iff the patch is its realm's head or in the head's chain: the rule for releasing its key. */
  async isInActiveChain(patchId: string): Promise<boolean> {
    const { rows } = await this.db.query<{ live: boolean }>(
      `SELECT (h.chain[p.depth + 1] = p.id) AS live
         FROM cluster.patches p JOIN cluster.realms r ON r.realm = p.realm JOIN cluster.patches h ON h.id = r.head
        WHERE p.id = $1`,
      [patchId],
    );
    return rows[0]?.live === true;
  }

  /** Calls `onSigned` for every release statement committed from now on (LISTEN). */
  async listenReleaseStatements(
    onSigned: (signed: ReleaseSigned) => void,
    onError?: (error: Error) => void,
  ): Promise<() => Promise<void>> {
    return listenJson(this.db, RELEASE_SIGNED_CHANNEL, onSigned, onError);
  }

  /** Calls `onChange` for every head change committed from now on (LISTEN). */
  async listenHeadChanges(
    onChange: (change: HeadChange) => void,
    onError?: (error: Error) => void,
  ): Promise<() => Promise<void>> {
    return listenJson(this.db, HEAD_CHANGED_CHANNEL, onChange, onError);
  }
}

async function lockRealm(tx: Queryable, realm: string): Promise<{ head: string | null; headSeq: string }> {
  const { rows } = await tx.query<{ head: string | null; headSeq: string }>(
    'SELECT head::text AS head, head_seq::text AS "headSeq" FROM cluster.realms WHERE realm = $1 FOR UPDATE',
    [realm],
  );
  if (rows.length === 0) throw new SplinterError('REALM_UNKNOWN', `no realm ${realm}`);
  return rows[0]!;
}

function checkExpected(head: string | null, expected: string | null | undefined, realm: string): void {
  if (expected !== undefined && expected !== head) {
    throw new SplinterError(
      'HEAD_CONFLICT',
      `the head of ${realm} moved: expected ${expected ?? '(none)'}, found ${head ?? '(none)'}; look again and retry`,
    );
  }
}

async function patchById(db: Queryable, id: string): Promise<PatchRow> {
  if (!/^\d+$/.test(id)) throw new SplinterError('PATCH_UNKNOWN', `no patch ${JSON.stringify(id)}`);
  const { rows } = await db.query<RawPatch>(`SELECT ${PATCH_COLUMNS} FROM cluster.patches WHERE id = $1`, [
    id,
  ]);
  if (!rows[0]) throw new SplinterError('PATCH_UNKNOWN', `no patch ${id}`);
  return toPatch(rows[0]);
}

interface PatchSummary {
  id: string;
  realm: string;
  version: string;
  parent: string | null;
  status: PatchStatus;
}

/** A patch without its chain: what the hot paths need, in constant time. */
async function patchSummary(db: Queryable, id: string): Promise<PatchSummary> {
  if (!/^\d+$/.test(id)) throw new SplinterError('PATCH_UNKNOWN', `no patch ${JSON.stringify(id)}`);
  const { rows } = await db.query<PatchSummary>(
    'SELECT id::text AS id, realm, version, parent::text AS parent, status FROM cluster.patches WHERE id = $1',
    [id],
  );
  if (!rows[0]) throw new SplinterError('PATCH_UNKNOWN', `no patch ${id}`);
  return rows[0];
}

/** `chain[depth + 1] = id` makes ancestry one array subscript in the database, whatever the chain length. */
async function isAncestor(db: Queryable, ancestor: string, descendant: string): Promise<boolean> {
  const { rows } = await db.query<{ yes: boolean }>(
    `SELECT coalesce(d.chain[a.depth + 1] = a.id, false) AS yes
       FROM cluster.patches a, cluster.patches d WHERE a.id = $1 AND d.id = $2`,
    [ancestor, descendant],
  );
  return rows[0]?.yes === true;
}

/** An id or a version of `realm`; an id of another realm is REALM_MISMATCH. */
async function resolveInRealm(db: Queryable, realm: string, idOrVersion: string): Promise<PatchRow> {
  const byVersion = await db.query<RawPatch>(
    `SELECT ${PATCH_COLUMNS} FROM cluster.patches WHERE realm = $1 AND version = $2`,
    [realm, idOrVersion],
  );
  if (byVersion.rows[0]) return toPatch(byVersion.rows[0]);
  if (/^\d+$/.test(idOrVersion)) {
    const patch = await patchById(db, idOrVersion);
    if (patch.realm !== realm) {
      throw new SplinterError(
        'REALM_MISMATCH',
        `patch ${patch.id} belongs to realm ${patch.realm}, not ${realm}`,
      );
    }
    return patch;
  }
  throw new SplinterError('PATCH_UNKNOWN', `realm ${realm} has no patch ${idOrVersion}`);
}

async function moveHead(
  tx: Queryable,
  realm: string,
  from: string | null,
  to: string,
  action: 'activate' | 'rollback',
  actor: string,
  forced: boolean,
): Promise<ReleaseRow> {
  // Compare-and-set: the row lock makes it certain, the WHERE clause makes it explicit.
  const moved = await tx.query(
    `UPDATE cluster.realms SET head = $2, head_seq = head_seq + 1, updated_at = now()
      WHERE realm = $1 AND head IS NOT DISTINCT FROM $3::bigint RETURNING realm`,
    [realm, to, from],
  );
  if (moved.rows.length !== 1)
    throw new SplinterError('HEAD_CONFLICT', `the head of ${realm} moved during the update`);
  if (from !== null) await tx.query(`UPDATE cluster.patches SET status = 'superseded' WHERE id = $1`, [from]);
  await tx.query(`UPDATE cluster.patches SET status = 'active', activated_at = now() WHERE id = $1`, [to]);
  const { rows } = await tx.query<ReleaseRow>(
    `INSERT INTO cluster.releases (realm, action, from_head, to_head, actor, forced)
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${RELEASE_COLUMNS}`,
    [realm, action, from, to, actor, forced],
  );
  const release = rows[0]!;
  const change: HeadChange = { realm, seq: release.seq, action, fromHead: from, toHead: to, forced };
  await notifyJson(tx, HEAD_CHANGED_CHANNEL, change);
  return release;
}

async function withStatement(
  tx: Queryable,
  release: ReleaseRow,
  action: 'activate' | 'rollback',
  sign: StatementSigner | undefined,
): Promise<ReleaseRow & { statement?: StoredStatement }> {
  if (!sign) return release;
  return {
    ...release,
    statement: await recordStatement(tx, release.realm, release.seq, release.toHead, action, sign),
  };
}

/** Numbers, signs and stores a statement of the realm's head, inside the caller's transaction. */
async function recordStatement(
  tx: Queryable,
  realm: string,
  release: string,
  headId: string,
  action: ReleaseFacts['action'],
  sign: StatementSigner,
): Promise<StoredStatement> {
  const { rows: numbered } = await tx.query<{ sequence: string }>(
    `SELECT nextval(pg_get_serial_sequence('cluster.release_statements', 'sequence'))::text AS sequence`,
  );
  const { rows: heads } = await tx.query<Raw<ChainEntry>>(
    `SELECT ${ENTRY_COLUMNS} FROM cluster.patches WHERE id = $1`,
    [headId],
  );
  const head = toPatch(heads[0]!);
  const signed = await sign({
    realm,
    sequence: numbered[0]!.sequence,
    release,
    action,
    head: { id: head.id, version: head.version, digest: head.digest, reference: head.reference },
    mods: head.mods,
  });
  const { rows } = await tx.query<StoredStatement>(
    `INSERT INTO cluster.release_statements (sequence, realm, release_seq, head, key_id, envelope, issued_at, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ${STATEMENT_COLUMNS}`,
    [
      numbered[0]!.sequence,
      realm,
      release,
      headId,
      signed.keyId,
      signed.envelope,
      signed.issuedAt,
      signed.expiresAt,
    ],
  );
  const announced: ReleaseSigned = { realm, sequence: rows[0]!.sequence, head: headId };
  await notifyJson(tx, RELEASE_SIGNED_CHANNEL, announced);
  return rows[0]!;
}
