import { createLauncherToken, listLauncherTokens, revokeLauncherToken } from '@splintertree/core';
import type { Command } from 'commander';
import { globalOptions, withSplinter } from '../context.js';
import { printResult } from '../output.js';

export function registerTokenCommands(program: Command): void {
  const token = program.command('token').description('launcher API tokens, scoped to a realm');
  token
    .command('create')
    .description('create a launcher token for a realm and print it (shown once; stored hashed)')
    .requiredOption('--realm <realm>', 'the realm the token may read and unlock')
    .option('--label <text>', 'a note for token list (who or what uses it)')
    .action(async function (this: Command, flags: { realm: string; label?: string }) {
      const output = globalOptions(this);
      const created = await withSplinter(this, {}, (splinter) =>
        createLauncherToken(splinter, { realm: flags.realm, label: flags.label }),
      );
      printResult(output, { token: created.token, id: created.id, realm: created.realm }, [created.token]);
    });
  token
    .command('list')
    .description('list launcher tokens (never the tokens themselves)')
    .option('--realm <realm>', 'only this realm')
    .action(async function (this: Command, flags: { realm?: string }) {
      const output = globalOptions(this);
      const tokens = await withSplinter(this, {}, (splinter) => listLauncherTokens(splinter, flags.realm));
      printResult(
        output,
        { tokens },
        tokens.map(
          (t) =>
            `${t.id}\t${t.realm}\t${t.revokedAt ? `revoked ${t.revokedAt}` : 'active'}\t${t.label ?? ''}`,
        ),
      );
    });
  token
    .command('revoke <id>')
    .description('revoke a launcher token (the API refuses it from the moment this commits)')
    .action(async function (this: Command, id: string) {
      const output = globalOptions(this);
      const row = await withSplinter(this, {}, (splinter) => revokeLauncherToken(splinter, id));
      printResult(output, row, [`revoked token ${row.id} (${row.realm})`]);
    });
}
