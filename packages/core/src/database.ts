import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  AccessStore,
  ChainStore,
  type DatabaseTimeouts,
  migrate,
  openPglite,
  openPostgres,
  type SqlClient,
} from '@splintertree/chain';

export interface ChainDatabase {
  client: SqlClient;
  chain: ChainStore;
  access: AccessStore;
}

/**
 * The release database: PostgreSQL (pooled, with `databaseTimeouts`) when DATABASE_URL is set, else
 * PGlite — PostgreSQL compiled to WASM — under SPLINTER_HOME/db, with the same migrations and queries.
 */
export async function openChainDatabase(settings: {
  databaseUrl: string | undefined;
  home: string;
  databaseTimeouts?: DatabaseTimeouts | undefined;
}): Promise<ChainDatabase> {
  let client: SqlClient;
  if (settings.databaseUrl !== undefined) {
    client = await openPostgres(settings.databaseUrl, { timeouts: settings.databaseTimeouts });
  } else {
    const dataDir = join(settings.home, 'db');
    await mkdir(dataDir, { recursive: true });
    client = await openPglite(dataDir);
  }
  try {
    await migrate(client);
  } catch (error) {
    await client.close();
    throw error;
  }
  return { client, chain: new ChainStore(client), access: new AccessStore(client) };
}
