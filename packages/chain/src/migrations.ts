import { SplinterError } from '@splintertree/errors';
import { type Queryable, rfc3339, type SqlClient } from './sql.js';

/** Numbered, append-only migrations of the `cluster` schema. Never edit one that has shipped. */
export const MIGRATIONS: ReadonlyArray<{ version: number; name: string; sql: string }> = [
  {
    version: 1,
    name: 'patch chains, realm heads, release log',
    sql: `
      CREATE TABLE cluster.realms (
        realm       text PRIMARY KEY,
        head        bigint,
        head_seq    bigint NOT NULL DEFAULT 0,
        updated_at  timestamptz NOT NULL DEFAULT now()
      );
      CREATE TABLE cluster.patches (
        id            bigserial PRIMARY KEY,
        realm         text NOT NULL REFERENCES cluster.realms (realm),
        version       text NOT NULL,
        parent        bigint REFERENCES cluster.patches (id),
        -- every ancestor, root first, ending with the patch itself: chain[depth + 1] = id
        chain         bigint[] NOT NULL,
        depth         integer NOT NULL,
        reference     text NOT NULL,
        digest        text NOT NULL,
        status        text NOT NULL CHECK (status IN ('draft', 'preload', 'active', 'superseded', 'revoked')),
        mods          jsonb NOT NULL DEFAULT '[]'::jsonb,
        created_at    timestamptz NOT NULL DEFAULT now(),
        activated_at  timestamptz,
        CONSTRAINT patches_realm_version_key UNIQUE (realm, version),
        CONSTRAINT patches_chain_ends_with_self CHECK (chain[depth + 1] = id AND cardinality(chain) = depth + 1)
      );
      ALTER TABLE cluster.realms ADD CONSTRAINT realms_head_fkey FOREIGN KEY (head) REFERENCES cluster.patches (id);
      CREATE TABLE cluster.releases (
        seq        bigserial PRIMARY KEY,
        realm      text NOT NULL REFERENCES cluster.realms (realm),
        action     text NOT NULL CHECK (action IN ('activate', 'rollback')),
        from_head  bigint REFERENCES cluster.patches (id),
        to_head    bigint NOT NULL REFERENCES cluster.patches (id),
        actor      text NOT NULL,
        forced     boolean NOT NULL DEFAULT false,
        at         timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX releases_realm_seq ON cluster.releases (realm, seq);
      -- Chains are read by subscript; stored uncompressed, a subscript skips decompressing the array.
      ALTER TABLE cluster.patches ALTER COLUMN chain SET STORAGE EXTERNAL;
      CREATE FUNCTION cluster.refuse_release_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'cluster.releases is append-only';
      END $$;
      CREATE TRIGGER releases_append_only BEFORE UPDATE OR DELETE ON cluster.releases
        FOR EACH ROW EXECUTE FUNCTION cluster.refuse_release_rewrite();
    `,
  },
  {
    version: 2,
    name: 'preload keys and launcher tokens',
    sql: `
      CREATE TABLE cluster.patch_keys (
        patch_id      bigint PRIMARY KEY REFERENCES cluster.patches (id),
        key_id        text NOT NULL,
        wrapped_key   bytea,
        kek_id        text NOT NULL,
        created_at    timestamptz NOT NULL DEFAULT now(),
        destroyed_at  timestamptz,
        CHECK ((wrapped_key IS NULL) = (destroyed_at IS NOT NULL))
      );
      CREATE TABLE cluster.api_tokens (
        id          bigserial PRIMARY KEY,
        realm       text NOT NULL,
        token_hash  bytea NOT NULL UNIQUE,
        label       text,
        created_at  timestamptz NOT NULL DEFAULT now(),
        revoked_at  timestamptz
      );
    `,
  },
  {
    version: 3,
    name: 'preloads found by index',
    sql: `
      -- The realm view lists a realm's preloads: without this index, every patch the realm ever had is read.
      CREATE INDEX patches_preload ON cluster.patches (realm, id) WHERE status = 'preload';
    `,
  },
  {
    version: 4,
    name: 'the current KEK, locked by rotation and by key insertion',
    sql: `
      -- The KEK every live patch key is wrapped with. kek rotate changes it holding the row FOR UPDATE;
      -- a key is inserted holding it FOR SHARE and only if it names the same KEK: neither can miss the other.
      CREATE TABLE cluster.key_encryption (
        singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        kek_id      text NOT NULL,
        changed_at  timestamptz NOT NULL DEFAULT now()
      );
      INSERT INTO cluster.key_encryption (kek_id)
        SELECT kek_id FROM cluster.patch_keys WHERE wrapped_key IS NOT NULL ORDER BY created_at DESC LIMIT 1;
    `,
  },
  {
    version: 5,
    name: 'release log refuses truncation and forged rows',
    sql: `
      CREATE TRIGGER releases_no_truncate BEFORE TRUNCATE ON cluster.releases
        FOR EACH STATEMENT EXECUTE FUNCTION cluster.refuse_release_rewrite();
      -- A release row records the head move made in its own transaction: its seq comes from the
      -- sequence in this session, it starts where the realm's previous release ended and it ends at
      -- the realm's head. A row that records no move, or any other seq, is refused.
      CREATE FUNCTION cluster.check_release_append() RETURNS trigger LANGUAGE plpgsql AS $$
      DECLARE
        assigned bigint;
        current_head bigint;
        previous_seq bigint;
        previous_head bigint;
      BEGIN
        BEGIN
          assigned := currval(pg_get_serial_sequence('cluster.releases', 'seq'));
        EXCEPTION WHEN object_not_in_prerequisite_state THEN
          assigned := NULL;
        END;
        SELECT seq, to_head INTO previous_seq, previous_head
          FROM cluster.releases WHERE realm = NEW.realm ORDER BY seq DESC LIMIT 1;
        IF NEW.seq IS DISTINCT FROM assigned OR NEW.seq <= previous_seq THEN
          RAISE EXCEPTION 'cluster.releases is append-only: seq % was not assigned by the database', NEW.seq;
        END IF;
        SELECT head INTO current_head FROM cluster.realms WHERE realm = NEW.realm;
        IF NEW.to_head IS DISTINCT FROM current_head OR NEW.from_head IS DISTINCT FROM previous_head
           OR NEW.from_head = NEW.to_head THEN
          RAISE EXCEPTION 'cluster.releases is append-only: a release from % to % is not the head move of realm % (from %, now %)',
            coalesce(NEW.from_head::text, 'none'), NEW.to_head, NEW.realm,
            coalesce(previous_head::text, 'none'), coalesce(current_head::text, 'none');
        END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER releases_record_head_moves BEFORE INSERT ON cluster.releases
        FOR EACH ROW EXECUTE FUNCTION cluster.check_release_append();
    `,
  },
  {
    version: 6,
    name: 'signed release statements',
    sql: `
      -- Every activation, rollback and refresh signed with a release key leaves its DSSE envelope here,
      -- in the transaction that moved the head (refresh: that re-signed it). sequence is the statement's
      -- own number: it rises with every statement, also when a refresh re-signs an unchanged head.
      CREATE TABLE cluster.release_statements (
        sequence     bigserial PRIMARY KEY,
        realm        text NOT NULL REFERENCES cluster.realms (realm),
        -- Checked by the insert trigger, not by a foreign key: one would turn the release log's own
        -- refusal of TRUNCATE into PostgreSQL's complaint about a referenced table.
        release_seq  bigint NOT NULL,
        head         bigint NOT NULL REFERENCES cluster.patches (id),
        key_id       text NOT NULL,
        envelope     text NOT NULL,
        issued_at    timestamptz NOT NULL,
        expires_at   timestamptz NOT NULL,
        created_at   timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT release_statements_expire_after_issue CHECK (expires_at > issued_at)
      );
      CREATE INDEX release_statements_realm ON cluster.release_statements (realm, sequence);
      CREATE FUNCTION cluster.refuse_statement_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'cluster.release_statements is append-only';
      END $$;
      CREATE TRIGGER release_statements_append_only BEFORE UPDATE OR DELETE ON cluster.release_statements
        FOR EACH ROW EXECUTE FUNCTION cluster.refuse_statement_rewrite();
      CREATE TRIGGER release_statements_no_truncate BEFORE TRUNCATE ON cluster.release_statements
        FOR EACH STATEMENT EXECUTE FUNCTION cluster.refuse_statement_rewrite();
      -- A statement names the realm's head and its latest release, and comes after every earlier one.
      CREATE FUNCTION cluster.check_statement_append() RETURNS trigger LANGUAGE plpgsql AS $$
      DECLARE
        current_head bigint;
        latest_release bigint;
        previous bigint;
      BEGIN
        SELECT head INTO current_head FROM cluster.realms WHERE realm = NEW.realm;
        SELECT max(seq) INTO latest_release FROM cluster.releases WHERE realm = NEW.realm;
        SELECT max(sequence) INTO previous FROM cluster.release_statements WHERE realm = NEW.realm;
        IF NEW.head IS DISTINCT FROM current_head OR NEW.release_seq IS DISTINCT FROM latest_release
           OR NEW.sequence <= previous THEN
          RAISE EXCEPTION 'cluster.release_statements: statement % of realm % does not describe its head % at release %',
            NEW.sequence, NEW.realm, coalesce(current_head::text, 'none'), coalesce(latest_release::text, 'none');
        END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER release_statements_describe_head BEFORE INSERT ON cluster.release_statements
        FOR EACH ROW EXECUTE FUNCTION cluster.check_statement_append();
      `,
  },
  {
    version: 7,
    name: 'trusted mod keys per realm',
    sql: `
      -- The keys a realm trusts to sign the mods its patches bundle: PEM public keys, as a trust file.
      CREATE TABLE cluster.realm_mod_trust (
        realm   text PRIMARY KEY REFERENCES cluster.realms (realm),
        keys    text NOT NULL CHECK (keys LIKE '-----BEGIN PUBLIC KEY-----%'),
        set_by  text NOT NULL,
        set_at  timestamptz NOT NULL DEFAULT now()
      );
    `,
  },
];

// An arbitrary constant naming "splinter migrations" for pg_advisory_xact_lock.
const MIGRATION_LOCK = 0x5f11_7e12;

/** Where the release database's schema stands against the migrations this build of splinter knows. */
export interface SchemaStatus {
  /** The newest migration this build knows. */
  latest: number;
  /** The highest version applied to the database (0 for none). */
  version: number;
  applied: Array<{ version: number; name: string; appliedAt: string }>;
  /** Migrations this build knows and the database lacks, oldest first: `splinter db migrate` applies them. */
  pending: Array<{ version: number; name: string }>;
  /**
   * Versions the database has and this build does not know: a newer splinter migrated it. Migrations
   * only add, so an older build keeps working beside it (a rolling update) and is not refused.
   */
  unknown: number[];
  /** Nothing is pending. */
  current: boolean;
}

/** Reads the schema's version without changing anything: a read-only role may call it. */
export async function schemaStatus(db: Queryable): Promise<SchemaStatus> {
  const latest = Math.max(0, ...MIGRATIONS.map((migration) => migration.version));
  const { rows: present } = await db.query<{ present: boolean }>(
    `SELECT to_regclass('cluster.schema_migrations') IS NOT NULL AS present`,
  );
  const applied = present[0]?.present
    ? (
        await db.query<{ version: number; name: string; appliedAt: string }>(
          `SELECT version, name, ${rfc3339('applied_at')} AS "appliedAt" FROM cluster.schema_migrations ORDER BY version`,
        )
      ).rows.map((row) => ({ ...row, version: Number(row.version) }))
    : [];
  const done = new Set(applied.map((row) => row.version));
  const known = new Set(MIGRATIONS.map((migration) => migration.version));
  const pending = MIGRATIONS.filter((migration) => !done.has(migration.version)).map(({ version, name }) => ({
    version,
    name,
  }));
  return {
    latest,
    version: Math.max(0, ...done),
    applied,
    pending,
    unknown: [...done].filter((version) => !known.has(version)),
    current: pending.length === 0,
  };
}

/**
 * Refuses, with SCHEMA_BEHIND, a database that lacks a migration this build needs. Commands on
 * PostgreSQL call this instead of migrating: schema changes are one deliberate step (`splinter db
 * migrate`, run by the schema's owner), and the roles the API and the tools run as need no DDL rights.
 */
export async function assertSchemaCurrent(db: Queryable): Promise<SchemaStatus> {
  const status = await schemaStatus(db);
  if (!status.current) {
    const pending = status.pending.map((migration) => migration.version);
    throw new SplinterError(
      'SCHEMA_BEHIND',
      `the release database schema is at version ${status.version} and this splinter needs ${status.latest} (pending ${pending.join(', ')})`,
      { details: { reason: 'schema-behind', version: status.version, latest: status.latest, pending } },
    );
  }
  return status;
}

/**
 * Brings the `cluster` schema up to date in one transaction, under a transaction-scoped advisory lock:
 * processes that start together migrate once; the others wait, then find nothing to do. The schema and
 * its version table are created only when missing, so an owner without CREATE on the database may
 * migrate a schema made for it beforehand (deploy/postgres/grants.sql).
 */
export async function migrate(client: SqlClient): Promise<{ applied: number[] }> {
  try {
    return await client.transaction(async (tx) => {
      if (client.kind === 'postgres') await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      const { rows: existing } = await tx.query<{ schema: boolean; table: boolean }>(
        `SELECT to_regnamespace('cluster') IS NOT NULL AS schema,
                to_regclass('cluster.schema_migrations') IS NOT NULL AS table`,
      );
      if (!existing[0]?.schema) await tx.query('CREATE SCHEMA cluster');
      if (!existing[0]?.table) {
        await tx.query(
          `CREATE TABLE cluster.schema_migrations (
             version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
        );
      }
      const { rows } = await tx.query<{ version: number }>('SELECT version FROM cluster.schema_migrations');
      const done = new Set(rows.map((row) => Number(row.version)));
      const applied: number[] = [];
      for (const migration of MIGRATIONS) {
        if (done.has(migration.version)) continue;
        await tx.exec(migration.sql);
        await tx.query('INSERT INTO cluster.schema_migrations (version, name) VALUES ($1, $2)', [
          migration.version,
          migration.name,
        ]);
        applied.push(migration.version);
      }
      return { applied };
    });
  } catch (error) {
    throw new SplinterError(
      'MIGRATION_FAILED',
      `migrating schema cluster failed: ${(error as Error).message}`,
      { cause: error },
    );
  }
}
