import { openPostgres, type SqlClient } from '@splintertree/chain';
import { errorCodeOf, type FreshDatabase, freshDatabase } from '@splintertree/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** A lock key no other test takes. */
const LOCK = 0x5f11_9001;

describe('the PostgreSQL pool: size and application_name', () => {
  let database: FreshDatabase;
  let admin: pg.Client;
  let pool: SqlClient;
  beforeAll(async () => {
    database = await freshDatabase('pool');
    admin = new pg.Client({ connectionString: database.url });
    await admin.connect();
  });
  afterAll(async () => {
    await pool?.close();
    await admin?.end();
    await database?.drop();
  });

  it('opens at most `max` connections, names them, and a query beyond waits connectMs for one', async () => {
    pool = await openPostgres(database.url, {
      max: 2,
      applicationName: 'splinter-pool-test',
      timeouts: { connectMs: 500 },
    });
    await admin.query('SELECT pg_advisory_lock($1)', [LOCK]);
    // Two queries hold both connections, waiting on the lock the admin connection holds.
    const held = [0, 1].map(() => pool.query('SELECT pg_advisory_lock_shared($1)', [LOCK]));
    // Polling the server's view of the waiters: the event is "both are blocked", seen there.
    for (let seen = 0; seen < 2; ) {
      const { rows } = await admin.query<{ count: number }>(
        `SELECT count(*)::int AS count FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = 'splinter-pool-test'
            AND wait_event_type = 'Lock'`,
      );
      seen = rows[0]!.count;
    }
    const started = performance.now();
    expect(await errorCodeOf(pool.query('SELECT 1'))).toBe('DATABASE_ERROR');
    const waited = performance.now() - started;
    expect(waited).toBeGreaterThanOrEqual(450);
    expect(waited).toBeLessThan(5000);
    const { rows } = await admin.query<{ count: number }>(
      `SELECT count(*)::int AS count FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'splinter-pool-test'`,
    );
    expect(rows[0]!.count).toBe(2);
    await admin.query('SELECT pg_advisory_unlock($1)', [LOCK]);
    await Promise.all(held);
    expect(await pool.query<{ one: number }>('SELECT 1 AS one')).toEqual({ rows: [{ one: 1 }] });
  });
});
