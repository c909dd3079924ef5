import { DEFAULT_DATABASE_TIMEOUTS, openPostgres, type SqlClient } from '@splintertree/chain';
import { isSplinterError } from '@splintertree/errors';
import {
  errorCodeOf,
  type FreshDatabase,
  freshDatabase,
  type StallingProxy,
  startStallingProxy,
} from '@splintertree/testkit';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

/** The same database, reached through `proxy`. */
function through(url: string, proxy: StallingProxy): string {
  const proxied = new URL(url);
  proxied.host = proxy.host;
  return proxied.toString();
}

async function timed<T>(work: Promise<T>): Promise<{ code: string; ms: number }> {
  const started = performance.now();
  const code = await errorCodeOf(work);
  return { code, ms: performance.now() - started };
}

describe('database timeouts on the real PostgreSQL', () => {
  let database: FreshDatabase;
  let admin: pg.Client;
  const open: Array<{ close(): Promise<void> }> = [];
  beforeAll(async () => {
    database = await freshDatabase('timeouts');
    admin = new pg.Client({ connectionString: database.url });
    await admin.connect();
  });
  afterEach(async () => {
    for (const each of open.splice(0).reverse()) await each.close();
  });
  afterAll(async () => {
    await admin?.end();
    await database?.drop();
  });

  async function proxy(): Promise<StallingProxy> {
    const started = await startStallingProxy(new URL(database.url).host);
    open.push({ close: () => started.stop() });
    return started;
  }

  async function client(url: string, timeouts: Parameters<typeof openPostgres>[1]): Promise<SqlClient> {
    const opened = await openPostgres(url, timeouts);
    open.push(opened);
    return opened;
  }

  it('applies the documented defaults on every connection', async () => {
    const db = await client(database.url, {});
    const show = async (name: string) =>
      (await db.query<Record<string, string>>(`SHOW ${name}`)).rows[0]![name];
    expect(DEFAULT_DATABASE_TIMEOUTS).toEqual({
      connectMs: 10_000,
      statementMs: 30_000,
      idleInTransactionMs: 60_000,
    });
    expect(await show('statement_timeout')).toBe('30s');
    expect(await show('idle_in_transaction_session_timeout')).toBe('1min');
  });

  it('gives up connecting to a server that accepts and never answers', { timeout: 15_000 }, async () => {
    const silent = await proxy();
    silent.stall();
    const result = await timed(openPostgres(through(database.url, silent), { timeouts: { connectMs: 300 } }));
    expect(result.code).toBe('DATABASE_ERROR');
    expect(result.ms).toBeLessThan(5_000);
  });

  it('ends a statement that runs too long, with the server saying so', { timeout: 15_000 }, async () => {
    const db = await client(database.url, { timeouts: { statementMs: 300 } });
    const failure = await db.query('SELECT pg_sleep(10)').catch((error: unknown) => error);
    expect(isSplinterError(failure) && failure.code).toBe('DATABASE_ERROR');
    expect((failure as { details?: { sqlState?: string } }).details?.sqlState).toBe('57014');
    expect((await db.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  });

  it('gives up on a server that stops answering, in a query and in a transaction', {
    timeout: 20_000,
  }, async () => {
    const frozen = await proxy();
    const db = await client(through(database.url, frozen), {
      max: 2,
      timeouts: { statementMs: 300, connectMs: 300 },
    });
    await db.query('SELECT 1');
    const inTransaction = timed(
      db.transaction(async (tx) => {
        await tx.query('SELECT 1');
        frozen.stall();
        await tx.query('SELECT 1');
      }),
    );
    const result = await inTransaction;
    expect(result.code).toBe('DATABASE_ERROR');
    // one client-side timeout (300 ms + 1 s of grace), not a second one waiting for a ROLLBACK
    expect(result.ms).toBeLessThan(2_500);
    // the dead client was dropped: the next query needs a new connection, which never opens
    const query = await timed(db.query('SELECT 1'));
    expect(query.code).toBe('DATABASE_ERROR');
    expect(query.ms).toBeLessThan(2_500);
  });

  it('has the server end a transaction its client left idle', { timeout: 20_000 }, async () => {
    const db = await client(database.url, { timeouts: { idleInTransactionMs: 300 } });
    const code = await errorCodeOf(
      db.transaction(async (tx) => {
        const { rows } = await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        const deadline = Date.now() + 10_000;
        for (;;) {
          const alive = await admin.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [rows[0]!.pid]);
          if (alive.rows.length === 0) break;
          if (Date.now() > deadline) throw new Error('the idle transaction was never ended');
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        await tx.query('SELECT 1');
      }),
    );
    expect(code).toBe('DATABASE_ERROR');
    expect((await db.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  });
});
