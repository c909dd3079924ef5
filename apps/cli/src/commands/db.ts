import { setTimeout as delay } from 'node:timers/promises';
import { chainDatabaseStatus, migrateChainDatabase, type SchemaStatus } from '@splintertree/core';
import { SplinterError } from '@splintertree/errors';
import type { Command } from 'commander';
import { globalOptions, loadSettings } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { printResult } from '../output.js';

/** How often `db status --wait` reads the schema version again. */
const WAIT_POLL_MS = 1000;

export function registerDbCommands(program: Command): void {
  const db = program.command('db').description('the release database: schema migrations');
  db.command('migrate')
    .description(
      'apply pending schema migrations (one transaction, under an advisory lock); run it as the schema owner before the API and tools roll',
    )
    .action(async function (this: Command) {
      const output = globalOptions(this);
      const result = await migrateChainDatabase(loadSettings());
      printResult(output, result, [
        result.migrated.length > 0
          ? `migrated the ${result.backend} schema to version ${result.version} (applied ${result.migrated.join(', ')})`
          : `the ${result.backend} schema is at version ${result.version}: nothing to migrate`,
      ]);
    });
  db.command('status')
    .description('the schema version: applied and pending migrations (reads only)')
    .option('--check', `exit ${ExitCode.SchemaBehind} with SCHEMA_BEHIND when a migration is pending`)
    .option(
      '--wait <seconds>',
      'with --check: read the version again every second until nothing is pending, for at most this long',
    )
    .action(async function (this: Command, flags: { check?: boolean; wait?: string }) {
      const output = globalOptions(this);
      if (flags.wait !== undefined && !/^\d{1,6}$/.test(flags.wait)) {
        throw new SplinterError('INVALID_ARGUMENT', '--wait must be a whole number of seconds');
      }
      if (flags.wait !== undefined && flags.check !== true) {
        throw new SplinterError('INVALID_ARGUMENT', '--wait applies with --check only');
      }
      const settings = loadSettings();
      const deadline = performance.now() + Number(flags.wait ?? 0) * 1000;
      let status = await chainDatabaseStatus(settings);
      while (flags.check && !status.current && performance.now() + WAIT_POLL_MS <= deadline) {
        await delay(WAIT_POLL_MS);
        status = await chainDatabaseStatus(settings);
      }
      // A failed check prints only its error (one line; with --json, one document).
      if (!flags.check || status.current) printResult(output, status, describe(status));
      if (flags.check && !status.current) {
        throw new SplinterError(
          'SCHEMA_BEHIND',
          `the ${status.backend} schema is at version ${status.version} and this splinter needs ${status.latest} (pending ${status.pending.map((m) => m.version).join(', ')})${flags.wait === undefined ? '' : ` after waiting ${flags.wait} s`}: run \`splinter db migrate\``,
          { details: { version: status.version, latest: status.latest } },
        );
      }
    });
}

function describe(status: SchemaStatus & { backend: string }): string[] {
  return [
    `${status.backend} schema version ${status.version} of ${status.latest}: ${status.current ? 'current' : `${status.pending.length} pending`}`,
    ...status.applied.map((m) => `  applied ${m.version}\t${m.name}\t${m.appliedAt}`),
    ...status.pending.map((m) => `  pending ${m.version}\t${m.name}`),
    ...status.unknown.map((version) => `  unknown ${version}\t(applied by a newer splinter)`),
  ];
}
