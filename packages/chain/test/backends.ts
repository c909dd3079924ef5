import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChainStore, migrate, openPglite, openPostgres, type SqlClient } from '@splinter/chain';
import { freshDatabase } from '@splinter/testkit';

export interface Backend {
  client: SqlClient;
  chain: ChainStore;
  url?: string;
  close(): Promise<void>;
}

export type BackendName = 'postgres' | 'pglite';

export async function openBackend(name: BackendName, label: string): Promise<Backend> {
  if (name === 'postgres') {
    const database = await freshDatabase(label);
    const client = await openPostgres(database.url);
    await migrate(client);
    return {
      client,
      chain: new ChainStore(client),
      url: database.url,
      close: async () => {
        await client.close();
        await database.drop();
      },
    };
  }
  const dir = await mkdtemp(join(tmpdir(), 'splinter-pglite-'));
  const client = await openPglite(dir);
  await migrate(client);
  return {
    client,
    chain: new ChainStore(client),
    close: async () => {
      await client.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Every row of the cluster tables, to prove that a refused operation changed nothing. */
export async function dumpTables(client: SqlClient): Promise<string> {
  const parts: string[] = [];
  for (const table of ['realms', 'patches', 'releases', 'patch_keys', 'api_tokens']) {
    const { rows } = await client.query(`SELECT * FROM cluster.${table} ORDER BY 1`);
    parts.push(JSON.stringify(rows, (_key, value) => (typeof value === 'bigint' ? value.toString() : value)));
  }
  return parts.join('\n');
}

export function patchInput(realm: string, version: string, parent?: string) {
  return {
    realm,
    version,
    parent,
    reference: `localhost:5000/patches/${realm}@sha256:${'a'.repeat(64)}`,
    digest: `sha256:${'a'.repeat(64)}`,
    status: 'draft' as const,
  };
}
