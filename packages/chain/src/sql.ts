import { SplinterError } from '@splintertree/errors';
import type pg from 'pg';

export interface QueryResult<T> {
  rows: T[];
}

export interface Queryable {
  query<T = Record<string, unknown>>(text: string, params?: unknown[]): Promise<QueryResult<T>>;
  /** Several statements without parameters (migrations). */
  exec(text: string): Promise<void>;
}

/** The seam between the chain model and its two backends: PostgreSQL (pg, pooled) and PGlite. */
export interface SqlClient extends Queryable {
  readonly kind: 'postgres' | 'pglite';
  /** Runs `work` in one transaction (READ COMMITTED), committed if it returns, rolled back if it throws. */
  transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * LISTEN on a channel; returns the function that stops listening. `onError` hears of a lost
   * listening connection (notifications may have been missed; listen again).
   */
  listen(
    channel: string,
    onPayload: (payload: string) => void,
    onError?: (error: Error) => void,
  ): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

/** LISTEN for JSON payloads on `channel` (see SqlClient.listen). */
export function listenJson<T>(
  db: SqlClient,
  channel: string,
  onChange: (change: T) => void,
  onError?: (error: Error) => void,
): Promise<() => Promise<void>> {
  return db.listen(channel, (payload) => onChange(JSON.parse(payload) as T), onError);
}

/** NOTIFY inside `tx`: delivered when, and only if, the transaction commits. */
export async function notifyJson(tx: Queryable, channel: string, change: object): Promise<void> {
  await tx.query('SELECT pg_notify($1, $2)', [channel, JSON.stringify(change)]);
}

/** Driver errors become one-line DATABASE_ERRORs (constraint names kept for the callers that map them). */
export function databaseError(error: unknown): SplinterError {
  if (error instanceof SplinterError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: string }).code;
  const constraint = (error as { constraint?: string }).constraint;
  return new SplinterError('DATABASE_ERROR', `database: ${message.split('\n')[0]}`, {
    cause: error,
    details: { ...(code ? { sqlState: code } : {}), ...(constraint ? { constraint } : {}) },
  });
}

async function guarded<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw databaseError(error);
  }
}

/** How long PostgreSQL may take before splinter gives up, in milliseconds; 0 means no limit. */
export interface DatabaseTimeouts {
  /** Opening a connection, or waiting for a free one in the pool. */
  connectMs: number;
  /**
   * One statement, lock waits included (the server's statement_timeout). A server that does not answer
   * at all is given up by the client STATEMENT_TIMEOUT_GRACE_MS later, and the connection dropped.
   */
  statementMs: number;
  /** A transaction whose client went quiet is ended by the server (idle_in_transaction_session_timeout). */
  idleInTransactionMs: number;
}

export const DEFAULT_DATABASE_TIMEOUTS: Readonly<DatabaseTimeouts> = {
  connectMs: 10_000,
  statementMs: 30_000,
  idleInTransactionMs: 60_000,
};

/** What the client waits beyond statementMs for the server's own timeout error before it gives up. */
export const STATEMENT_TIMEOUT_GRACE_MS = 1_000;

/** Connections a process keeps open to PostgreSQL for queries, at most. */
export const DEFAULT_POOL_SIZE = 10;

/** How splinter's connections are named in pg_stat_activity and the server log. */
export const DEFAULT_APPLICATION_NAME = 'splinter';

export interface PostgresOptions {
  /** Pool size (default DEFAULT_POOL_SIZE). */
  max?: number | undefined;
  timeouts?: Partial<DatabaseTimeouts> | undefined;
  /** application_name of every connection (default DEFAULT_APPLICATION_NAME). */
  applicationName?: string | undefined;
}

export async function openPostgres(
  connectionString: string,
  options: PostgresOptions = {},
): Promise<SqlClient> {
  const timeouts = { ...DEFAULT_DATABASE_TIMEOUTS, ...options.timeouts };
  // The drivers load on first use: most CLI commands (push, pull) never open the database.
  const { default: driver } = await import('pg');
  const pool = new driver.Pool({
    connectionString,
    max: options.max ?? DEFAULT_POOL_SIZE,
    application_name: options.applicationName ?? DEFAULT_APPLICATION_NAME,
    connectionTimeoutMillis: timeouts.connectMs,
    // Sent at connection start: enforced by the server.
    ...(timeouts.statementMs > 0 ? { statement_timeout: timeouts.statementMs } : {}),
    ...(timeouts.idleInTransactionMs > 0
      ? { idle_in_transaction_session_timeout: timeouts.idleInTransactionMs }
      : {}),
    // Enforced by the client, for a server or a network that stopped answering.
    ...(timeouts.statementMs > 0 ? { query_timeout: timeouts.statementMs + STATEMENT_TIMEOUT_GRACE_MS } : {}),
    keepAlive: true,
  });
  pool.on('error', () => {
    // An idle client died (server restart); the pool replaces it on the next query.
  });
  // A client checked out of the pool has no 'error' listener of the pool's: a backend killed while a
  // transaction holds its client (pg_terminate_backend, a restart) would crash the process. Every
  // client gets one for life; the transaction that holds it hears of the loss from its next query.
  const lost = new WeakSet<pg.PoolClient>();
  pool.on('connect', (client) => {
    client.on('error', () => lost.add(client));
  });
  /** The client can take no more statements (killed backend, broken socket, driver timeout). */
  const isConnectionFailure = (error: unknown) =>
    !(error instanceof driver.DatabaseError) || error.severity === 'FATAL' || error.severity === 'PANIC';
  await guarded(() => pool.query('SELECT 1'));
  const listeners: pg.PoolClient[] = [];
  return {
    kind: 'postgres',
    query: <T>(text: string, params?: unknown[]) =>
      guarded(async () => ({ rows: (await pool.query(text, params)).rows as T[] })),
    exec: (text: string) => guarded(async () => void (await pool.query(text))),
    async transaction(work) {
      const client = await guarded(() => pool.connect());
      let usable = true;
      const run = async (text: string, params?: unknown[]) => {
        try {
          return await client.query(text, params);
        } catch (error) {
          if (isConnectionFailure(error)) usable = false;
          throw error;
        }
      };
      try {
        await run('BEGIN');
        const result = await work({
          query: async <T>(text: string, params?: unknown[]) => ({
            rows: (await run(text, params)).rows as T[],
          }),
          exec: async (text: string) => {
            await run(text);
          },
        });
        await run('COMMIT');
        return result;
      } catch (error) {
        // A dead connection is not asked to roll back: its transaction ended with its backend.
        if (usable && !lost.has(client)) await run('ROLLBACK').catch(() => undefined);
        throw databaseError(error);
      } finally {
        client.release(!usable || lost.has(client));
      }
    },
    async listen(channel, onPayload, onError) {
      const client = await guarded(() => pool.connect());
      listeners.push(client);
      let lost = false;
      client.on('notification', (message) => {
        if (message.channel === channel) onPayload(message.payload ?? '');
      });
      client.on('error', (error) => {
        if (lost) return;
        lost = true;
        onError?.(databaseError(error));
      });
      try {
        await client.query(`LISTEN ${driver.escapeIdentifier(channel)}`);
      } catch (error) {
        listeners.splice(listeners.indexOf(client), 1);
        client.release(true);
        throw databaseError(error);
      }
      return async () => {
        const index = listeners.indexOf(client);
        if (index < 0) return;
        listeners.splice(index, 1);
        // A client whose UNLISTEN fails is dead too (its backend may be gone before its 'error' event
        // arrives): destroyed, never handed back to the pool for the next query to fail on.
        const healthy =
          !lost &&
          (await client.query(`UNLISTEN ${driver.escapeIdentifier(channel)}`).then(
            () => true,
            () => false,
          ));
        client.release(!healthy);
      };
    },
    async close() {
      for (const client of listeners.splice(0)) client.release();
      await pool.end();
    },
  };
}

export async function openPglite(dataDir: string): Promise<SqlClient> {
  const { PGlite } = await import('@electric-sql/pglite');
  const db = await guarded(() => PGlite.create(dataDir));
  return {
    kind: 'pglite',
    query: <T>(text: string, params?: unknown[]) =>
      guarded(async () => ({ rows: (await db.query(text, params)).rows as T[] })),
    exec: (text: string) => guarded(async () => void (await db.exec(text))),
    transaction: (work) =>
      guarded(() =>
        db.transaction((tx) =>
          work({
            query: async <T>(text: string, params?: unknown[]) => ({
              rows: (await tx.query(text, params)).rows as T[],
            }),
            exec: async (text: string) => {
              await tx.exec(text);
            },
          }),
        ),
      ),
    async listen(channel, onPayload) {
      const stop = await db.listen(channel, onPayload);
      return stop;
    },
    close: () => db.close(),
  };
}

/**
 * A timestamptz as RFC 3339 in UTC with milliseconds (`2026-12-04T18:39:14.123Z`, what JavaScript's
 * toISOString() prints), whatever the session's TimeZone and DateStyle: `::text` would give
 * PostgreSQL's `2026-12-04 18:39:14.123456+00`. NULL stays NULL.
 */
export function rfc3339(column: string): string {
  return `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
}
