import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { type FreshDatabase, freshDatabase } from '@splintertree/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const TSX = join(import.meta.dirname, '..', '..', '..', 'node_modules', '.bin', 'tsx');
const FIXTURE = join(import.meta.dirname, 'fixtures', 'terminated-transaction.ts');

describe('a transaction whose backend is killed, on the real PostgreSQL', () => {
  let database: FreshDatabase;
  let admin: pg.Client;
  beforeAll(async () => {
    database = await freshDatabase('connection_loss');
    admin = new pg.Client({ connectionString: database.url });
    await admin.connect();
  });
  afterAll(async () => {
    await admin?.end();
    await database?.drop();
  });

  it('fails with DATABASE_ERROR instead of crashing the process on an unhandled error event', async () => {
    const child = spawn(TSX, ['--conditions=source', FIXTURE, database.url], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    const exited = once(child, 'exit') as Promise<[number | null]>;
    const output = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const first = await output.next();
    expect(first.done, stderr).toBe(false);
    const { pid } = JSON.parse(first.value as string) as { pid: number };
    await admin.query('SELECT pg_terminate_backend($1)', [pid]);
    // The backend is gone (its socket closed) before the process is told to go on.
    for (;;) {
      const { rows } = await admin.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
      if (rows.length === 0) break;
    }
    child.stdin.write('go\n');
    const [exitCode] = await exited;
    const last = await output.next();
    expect(exitCode, stderr).toBe(0);
    expect(JSON.parse(last.value as string)).toEqual({ code: 'DATABASE_ERROR', after: 1 });
  });
});
