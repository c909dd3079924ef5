import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const ADMIN_DATABASE_URL =
  process.env.SPLINTER_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface FreshDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

export interface FreshDatabaseOptions {
  /**
   * Apply the release schema's migrations (as `splinter db migrate` would, as user postgres): commands
   * on PostgreSQL never migrate, they refuse a schema behind with SCHEMA_BEHIND.
   */
  migrate?: boolean;
}

/**
 * Creates an empty database with a unique name on the test PostgreSQL server (127.0.0.1:5432, user
 * postgres, trust auth). An unreachable server fails the test: tests of PostgreSQL behaviour never skip.
 */
export async function freshDatabase(
  prefix: string,
  options: FreshDatabaseOptions = {},
): Promise<FreshDatabase> {
  const name = `splinter_${prefix.replace(/[^a-z0-9_]/gi, '_').toLowerCase()}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  try {
    await admin.connect();
  } catch (error) {
    throw new Error(
      `PostgreSQL is required at ${ADMIN_DATABASE_URL} for this test (${(error as Error).message}); start it, e.g. pg_ctlcluster 15 main start`,
    );
  }
  try {
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  } finally {
    await admin.end();
  }
  const url = new URL(ADMIN_DATABASE_URL);
  url.pathname = `/${name}`;
  if (options.migrate) {
    const { migrate, openPostgres } = await import('@splintertree/chain');
    const client = await openPostgres(url.toString(), { max: 1, applicationName: 'splinter-testkit' });
    try {
      await migrate(client);
    } finally {
      await client.close();
    }
  }
  return {
    url: url.toString(),
    name,
    async drop() {
      const client = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}
