import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { ChainStore, migrate, openPglite, openPostgres, type SqlClient } from '@splintertree/chain';
import { freshDatabase } from '@splintertree/testkit';
import pg from 'pg';

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

/**
 * A connection of its own that holds locks in an open transaction, so that a test can stop another
 * transaction at a chosen statement and let it go on again.
 */
export async function lockHolder(url: string): Promise<{
  lock(sql: string, params?: unknown[]): Promise<void>;
  release(): Promise<void>;
  close(): Promise<void>;
}> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  let open = false;
  return {
    async lock(sql, params) {
      if (!open) await client.query('BEGIN');
      open = true;
      await client.query(sql, params);
    },
    async release() {
      await client.query('ROLLBACK');
      open = false;
    },
    close: () => client.end(),
  };
}

/**
 * Resolves once `count` sessions of the database are waiting for a lock: the observable moment at
 * which the transactions a test started are parked where it wants them.
 */
export async function waitForLockWaiters(url: string, count: number): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const { rows } = await client.query<{ waiting: number }>(
        `SELECT count(*)::int AS waiting FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock'`,
      );
      if (rows[0]!.waiting >= count) return;
      if (Date.now() > deadline) throw new Error(`fewer than ${count} sessions ever waited for a lock`);
      await delay(5); // polled: a lock wait announces itself to no one
    }
  } finally {
    await client.end();
  }
}
