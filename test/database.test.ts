import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ADMIN_DATABASE_URL, type FreshDatabase, freshDatabase, requireTool } from '@splintertree/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveApi } from './serve.js';
import { CLI, run, SAMPLE, scrubbedEnv, splinterCli, tempDir } from './support.js';

const GRANTS = join(import.meta.dirname, '..', 'deploy', 'postgres', 'grants.sql');
const SCHEMA_BEHIND_EXIT = 10;
const DATABASE_EXIT = 9;

/** The database's URL for another role (trust authentication on the test server). */
function urlAs(database: FreshDatabase, role: string): string {
  const url = new URL(database.url);
  url.username = role;
  return url.toString();
}

async function adminQuery<T>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text, params)).rows as T[];
  } finally {
    await client.end();
  }
}

function exited(child: ChildProcess): Promise<{ code: number | null; output: string }> {
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk;
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk;
  });
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, output })));
}

/**
 * `splinter db migrate` is the only step that changes the schema on PostgreSQL: every other command
 * checks the version and refuses SCHEMA_BEHIND, so the roles of deploy/postgres/grants.sql suffice —
 * one that may only read and write rows (the API, the activator, the release tools) and one that may
 * only read. The roles are created by that file, run by psql as an operator would.
 */
describe('database operations with the roles of deploy/postgres/grants.sql', () => {
  let work: string;
  let database: FreshDatabase;
  const suffix = randomBytes(3).toString('hex');
  const roles = {
    owner: `splinter_owner_${suffix}`,
    app: `splinter_app_${suffix}`,
    reader: `splinter_reader_${suffix}`,
  };
  const kek = randomBytes(32).toString('base64');
  let as: Record<'superuser' | keyof typeof roles, Record<string, string>>;

  beforeAll(async () => {
    work = await tempDir('database');
    database = await freshDatabase('db_roles');
    const psql = requireTool('psql', 'postgresql-client');
    const variables = Object.entries(roles).flatMap(([name, role]) => ['-v', `${name}=${role}`]);
    await run(psql, [database.url, '-v', 'ON_ERROR_STOP=1', '-q', ...variables, '-f', GRANTS]);
    // A second run changes nothing and fails on nothing.
    await run(psql, [database.url, '-v', 'ON_ERROR_STOP=1', '-q', ...variables, '-f', GRANTS]);
    const env = (url: string, home: string) => ({
      DATABASE_URL: url,
      SPLINTER_HOME: join(work, home),
      SPLINTER_KEK: kek,
      USER: 'ci-operator',
    });
    as = {
      superuser: env(database.url, 'superuser'),
      owner: env(urlAs(database, roles.owner), 'owner'),
      app: env(urlAs(database, roles.app), 'app'),
      reader: env(urlAs(database, roles.reader), 'reader'),
    };
  });
  afterAll(async () => {
    await database?.drop();
    for (const role of Object.values(roles)) {
      await adminQuery(ADMIN_DATABASE_URL, `DROP ROLE IF EXISTS ${pg.escapeIdentifier(role)}`);
    }
    await rm(work, { recursive: true, force: true });
  });

  it('refuses every command on a schema behind, with SCHEMA_BEHIND and no DDL, even as superuser', async () => {
    for (const args of [
      ['realm', 'show', 'eu-1'],
      ['patch', 'list', '--realm', 'eu-1'],
      ['token', 'create', '--realm', 'eu-1'],
    ]) {
      const refused = await splinterCli(args, as.superuser);
      expect(refused.code, refused.stderr).toBe(SCHEMA_BEHIND_EXIT);
      expect(refused.stderr).toMatch(
        /^splinter: SCHEMA_BEHIND: the release database schema is at version 0 and this splinter needs \d+ \(pending 1, 2, .*\)\nsplinter: hint: run `splinter db migrate` as the schema owner first\n$/,
      );
    }
    // The launcher API does not start on it either.
    const serve = await splinterCli(['serve', '--port', '0'], as.superuser);
    expect(serve.code, serve.stderr).toBe(SCHEMA_BEHIND_EXIT);
    expect(serve.stderr).toMatch(/SCHEMA_BEHIND/);
    // Nothing was created: the schema grants.sql made is still empty.
    const tables = await adminQuery<{ count: string }>(
      database.url,
      `SELECT count(*)::text AS count FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'cluster'`,
    );
    expect(tables[0]!.count).toBe('0');

    const status = await splinterCli(['db', 'status', '--json'], as.reader);
    expect(status.code, status.stderr).toBe(0);
    const shown = JSON.parse(status.stdout) as { version: number; current: boolean; pending: unknown[] };
    expect(shown).toMatchObject({ backend: 'postgres', version: 0, current: false, applied: [] });
    expect(shown.pending.length).toBeGreaterThanOrEqual(5);
    const check = await splinterCli(['db', 'status', '--check'], as.reader);
    expect(check.code).toBe(SCHEMA_BEHIND_EXIT);
    expect(check.stdout).toBe('');
    expect(check.stderr).toMatch(/^splinter: SCHEMA_BEHIND: the postgres schema is at version 0 .*\n$/);
  });

  it('migrates only as the owner; db status --check --wait returns once it has', async () => {
    const waiting = spawn(process.execPath, [CLI, 'db', 'status', '--check', '--wait', '50'], {
      env: scrubbedEnv(as.reader),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const waited = exited(waiting);
    const asApp = await splinterCli(['db', 'migrate'], as.app);
    expect(asApp.code).toBe(DATABASE_EXIT);
    expect(asApp.stderr).toMatch(/^splinter: MIGRATION_FAILED: .*permission denied for schema cluster\n$/);

    const migrated = await splinterCli(['db', 'migrate', '--json'], as.owner);
    expect(migrated.code, migrated.stderr).toBe(0);
    const result = JSON.parse(migrated.stdout) as { migrated: number[]; version: number; latest: number };
    expect(result.migrated.slice(0, 5)).toEqual([1, 2, 3, 4, 5]);
    expect(result.version).toBe(result.latest);
    const { code, output } = await waited;
    expect(code, output).toBe(0);
    expect(output).toMatch(/^postgres schema version \d+ of \d+: current\n/);

    const again = await splinterCli(['db', 'migrate'], as.owner);
    expect(again.stdout).toMatch(/^the postgres schema is at version \d+: nothing to migrate\n$/);
    const owners = await adminQuery<{ owner: string }>(
      database.url,
      `SELECT DISTINCT tableowner AS owner FROM pg_tables WHERE schemaname = 'cluster'`,
    );
    expect(owners).toEqual([{ owner: roles.owner }]);
  });

  it('the app role (rows only) pushes, activates, makes tokens, runs the activator and serves the API', async () => {
    const push = await splinterCli(
      ['patch', 'push', SAMPLE, '--realm', 'eu-1', '--version', '1.0.0', '--json'],
      as.app,
    );
    expect(push.code, push.stderr).toBe(0);
    const id = String((JSON.parse(push.stdout) as { id: string }).id);
    const activated = await splinterCli(['patch', 'activate', id], as.app);
    expect(activated.code, activated.stderr).toBe(0);
    const preload = await splinterCli(
      ['patch', 'push', SAMPLE, '--realm', 'eu-1', '--version', '1.1.0', '--preload'],
      as.app,
    );
    expect(preload.code, preload.stderr).toBe(0);
    const token = await splinterCli(['token', 'create', '--realm', 'eu-1', '--json'], as.app);
    expect(token.code, token.stderr).toBe(0);
    const secret = (JSON.parse(token.stdout) as { token: string }).token;

    const activator = await splinterCli(
      ['activator', 'run', '--realm', 'eu-1', '--output', join(work, 'mods'), '--insecure-skip-verify'],
      as.app,
    );
    expect(activator.code, activator.stderr).toBe(0);

    const applicationName = `splinter-api-${suffix}`;
    const api = await serveApi({
      ...as.app,
      SPLINTER_DB_APPLICATION_NAME: applicationName,
      SPLINTER_DB_POOL_SIZE: '3',
      SPLINTER_DB_STATEMENT_TIMEOUT_MS: '500',
      // Every view read goes to the database, so the one below meets the lock instead of the cache.
      SPLINTER_API_VIEW_MAX_AGE: '0',
    });
    try {
      const view = await fetch(`${api.url}/launcher/realms/eu-1`, {
        headers: { authorization: `Bearer ${secret}` },
      });
      expect(view.status).toBe(200);
      expect(((await view.json()) as { head: { id: string } }).head.id).toBe(id);
      const connections = await adminQuery<{ name: string; role: string }>(
        ADMIN_DATABASE_URL,
        `SELECT DISTINCT application_name AS name, usename AS role FROM pg_stat_activity
          WHERE datname = $1 AND application_name LIKE $2 ORDER BY 1`,
        [database.name, `${applicationName}%`],
      );
      expect(connections).toEqual([
        { name: applicationName, role: roles.app },
        { name: `${applicationName}-listener`, role: roles.app },
      ]);

      // The API's pool takes the statement timeout: a realm view blocked by a lock ends after 500 ms
      // with 503, not after the 30 s default.
      const locker = new pg.Client({ connectionString: database.url });
      await locker.connect();
      try {
        await locker.query('BEGIN');
        await locker.query('LOCK TABLE cluster.patches IN ACCESS EXCLUSIVE MODE');
        const started = performance.now();
        const blocked = await fetch(`${api.url}/launcher/realms/eu-1`, {
          headers: { authorization: `Bearer ${secret}` },
        });
        const elapsed = performance.now() - started;
        expect(blocked.status).toBe(503);
        expect(((await blocked.json()) as { code: string }).code).toBe('DATABASE_ERROR');
        expect(elapsed).toBeGreaterThanOrEqual(450);
        expect(elapsed).toBeLessThan(10_000);
      } finally {
        await locker.query('ROLLBACK');
        await locker.end();
      }
    } finally {
      await api.stop();
    }
  });

  it('the reader role shows realms and lists patches, and is refused every write', async () => {
    const show = await splinterCli(['realm', 'show', 'eu-1', '--json'], as.reader);
    expect(show.code, show.stderr).toBe(0);
    expect(JSON.parse(show.stdout)).toMatchObject({ realm: 'eu-1', head: { version: '1.0.0' } });
    const list = await splinterCli(['patch', 'list', '--realm', 'eu-1', '--json'], as.reader);
    expect(list.code, list.stderr).toBe(0);
    expect((JSON.parse(list.stdout) as { patches: unknown[] }).patches.length).toBe(2);
    expect((await splinterCli(['patch', 'history', '--realm', 'eu-1'], as.reader)).code).toBe(0);
    expect((await splinterCli(['db', 'status', '--check'], as.reader)).code).toBe(0);

    for (const args of [
      ['patch', 'rollback', '--realm', 'eu-1'],
      ['token', 'create', '--realm', 'eu-1'],
      ['patch', 'revoke', '1.1.0', '--realm', 'eu-1'],
    ]) {
      const refused = await splinterCli(args, as.reader);
      expect(refused.code, `${args.join(' ')}: ${refused.stderr}`).toBe(DATABASE_EXIT);
      expect(refused.stderr).toMatch(
        /^splinter: DATABASE_ERROR: database: permission denied for table \w+\n$/,
      );
    }
  });
});

describe('database operations on the embedded PGlite database', () => {
  it('db status and db migrate work on it (other commands migrate it themselves: release.test.ts)', async () => {
    const work = await tempDir('database-pglite');
    try {
      const env = { SPLINTER_HOME: join(work, 'home'), DATABASE_URL: '' };
      const before = await splinterCli(['db', 'status', '--json'], env);
      expect(JSON.parse(before.stdout)).toMatchObject({ backend: 'pglite', version: 0, current: false });
      const migrated = await splinterCli(['db', 'migrate', '--json'], env);
      expect(migrated.code, migrated.stderr).toBe(0);
      expect((JSON.parse(migrated.stdout) as { migrated: number[] }).migrated.slice(0, 5)).toEqual([
        1, 2, 3, 4, 5,
      ]);
      const after = await splinterCli(['db', 'status', '--check', '--json'], env);
      expect(after.code, after.stderr).toBe(0);
      expect(JSON.parse(after.stdout)).toMatchObject({ backend: 'pglite', current: true });
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});

describe('database settings', () => {
  it('refuses a pool size or application_name it cannot use, in one line', async () => {
    for (const [variable, value, problem] of [
      ['SPLINTER_DB_POOL_SIZE', '0', 'must be a whole number of connections from 1 to 1000'],
      ['SPLINTER_DB_POOL_SIZE', 'ten', 'must be a whole number of connections from 1 to 1000'],
      ['SPLINTER_DB_APPLICATION_NAME', 'caf\u00e9', 'must be 1 to 54 printable ASCII characters'],
    ] as const) {
      const refused = await splinterCli(['realm', 'show', 'eu-1'], { [variable]: value });
      expect(refused.code).toBe(2);
      expect(refused.stderr).toBe(`splinter: INVALID_CONFIG: invalid environment: ${variable} ${problem}\n`);
    }
  });
});
