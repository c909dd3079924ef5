import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  AccessStore,
  assertSchemaCurrent,
  ChainStore,
  type DatabaseTimeouts,
  migrate,
  openPglite,
  openPostgres,
  type SchemaStatus,
  type SqlClient,
  schemaStatus,
} from '@splintertree/chain';

export interface ChainDatabase {
  client: SqlClient;
  chain: ChainStore;
  access: AccessStore;
}

/** What opening the release database reads from the settings. */
export interface DatabaseSettings {
  databaseUrl: string | undefined;
  home: string;
  databaseTimeouts?: DatabaseTimeouts | undefined;
  databasePoolSize?: number | undefined;
  databaseApplicationName?: string | undefined;
}

/**
 * A connection to the release database, not checked: PostgreSQL (pooled, with the settings' timeouts,
 * pool size and application_name) when DATABASE_URL is set, else PGlite — PostgreSQL compiled to WASM —
 * under SPLINTER_HOME/db.
 */
export async function openSqlClient(settings: DatabaseSettings): Promise<SqlClient> {
  if (settings.databaseUrl !== undefined) {
    return openPostgres(settings.databaseUrl, {
      timeouts: settings.databaseTimeouts,
      max: settings.databasePoolSize,
      applicationName: settings.databaseApplicationName,
    });
  }
  const dataDir = join(settings.home, 'db');
  await mkdir(dataDir, { recursive: true });
  return openPglite(dataDir);
}

/**
 * The release database, ready for queries. PostgreSQL is only checked: a schema behind this build is
 * refused with SCHEMA_BEHIND, and no DDL is ever run, so a role that may only read and write rows (or
 * only read) works. The embedded PGlite database belongs to this process alone and is migrated.
 */
export async function openChainDatabase(settings: DatabaseSettings): Promise<ChainDatabase> {
  return chainDatabaseOver(await openSqlClient(settings));
}

/** The release database over an open client, checked or migrated as openChainDatabase says; closed if refused. */
export async function chainDatabaseOver(client: SqlClient): Promise<ChainDatabase> {
  try {
    if (client.kind === 'pglite') await migrate(client);
    else await assertSchemaCurrent(client);
  } catch (error) {
    await client.close();
    throw error;
  }
  return { client, chain: new ChainStore(client), access: new AccessStore(client) };
}

export interface MigrationResult extends SchemaStatus {
  backend: 'postgres' | 'pglite';
  /** The versions this run applied, oldest first (empty when the schema was already current). */
  migrated: number[];
}

/** `splinter db migrate`: brings the schema up to date (see migrate) and reports where it stands. */
export async function migrateChainDatabase(settings: DatabaseSettings): Promise<MigrationResult> {
  const client = await openSqlClient(settings);
  try {
    const { applied } = await migrate(client);
    return { backend: client.kind, migrated: applied, ...(await schemaStatus(client)) };
  } finally {
    await client.close();
  }
}

/** `splinter db status`: the schema's applied and pending versions, read without changing anything. */
export async function chainDatabaseStatus(
  settings: DatabaseSettings,
): Promise<SchemaStatus & { backend: 'postgres' | 'pglite' }> {
  const client = await openSqlClient(settings);
  try {
    return { backend: client.kind, ...(await schemaStatus(client)) };
  } finally {
    await client.close();
  }
}
