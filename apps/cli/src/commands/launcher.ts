import { join } from 'node:path';
import { SplinterError } from '@splintertree/errors';
import { type Command, Option } from 'commander';
import { globalOptions, withSplinter } from '../context.js';
import { addTokenOptions, launcherToken, type TokenFlags } from '../launcher-token.js';
import { printResult, transferLine } from '../output.js';
import { addReleaseTrustOptions, type ReleaseTrustFlags, releaseTrustFromFlags } from '../release-flags.js';
import { addTrustOptions, type TrustFlags, trustFromFlags } from '../signing-flags.js';
import { addTransferOptions, parseConcurrency } from './artifact.js';
import { parseKeep } from './cache.js';

export function registerLauncherCommands(program: Command): void {
  const launcher = program
    .command('launcher')
    .description("a player's launcher: keep a folder at a realm's head");
  addReleaseTrustOptions(
    addTrustOptions(
      addTransferOptions(
        addTokenOptions(
          launcher
            .command('sync')
            .description(
              "stage the realm's preloads in the cache, then install its head into --output (atomic swap)",
            )
            .requiredOption('--api <url>', 'launcher API base URL, e.g. https://launcher.example'),
          'the realm',
        )
          .requiredOption('--realm <realm>', 'the realm to follow')
          .requiredOption(
            '--output <dir>',
            'the game folder (its files replaced when the head changes; files it did not install are kept)',
          )
          .option('--locale <locale>', "install untagged files and this locale's only, e.g. deDE")
          .option(
            '--keep-versions <n>',
            'installed versions whose cached bytes stay, for rollback (default 3)',
          )
          .addOption(
            new Option(
              '--release-from <source>',
              'where release statements come from (with --release-key-file)',
            )
              .choices(['api', 'registry'])
              .default('api'),
          ),
      ),
      true,
    ),
  ).action(async function (
    this: Command,
    flags: TrustFlags &
      ReleaseTrustFlags &
      TokenFlags & {
        api: string;
        realm: string;
        output: string;
        plainHttp?: boolean;
        concurrency?: string;
        locale?: string;
        keepVersions?: string;
        releaseFrom: 'api' | 'registry';
      },
  ) {
    const keepVersions = parseKeep(flags.keepVersions, 3);
    const concurrency = parseConcurrency(flags.concurrency);
    const trust = await trustFromFlags(flags);
    const release = await releaseTrustFromFlags(flags);
    if (!release && flags.releaseFrom !== 'api') {
      throw new SplinterError(
        'INVALID_ARGUMENT',
        '--release-from needs --release-key-file: nothing would check the statement',
      );
    }
    const { syncRealm } = await import('@splintertree/launcher');
    const result = await withSplinter(
      this,
      { ...flags, interruptible: true },
      async (splinter, settings, signal) =>
        syncRealm(splinter, {
          api: flags.api,
          token: await launcherToken(flags, settings),
          realm: flags.realm,
          output: flags.output,
          trust,
          stateDir: join(settings.home, 'launcher'),
          concurrency,
          locale: flags.locale,
          keepVersions,
          release,
          releaseFrom: flags.releaseFrom,
          signal,
        }),
    );
    const lines = result.staged.map((p) => `staged ${p.version} (${p.digest}): ${transferLine(p.transfer)}`);
    if (result.head === null) lines.push(`realm ${result.realm} has no active patch`);
    else if (result.action === 'up-to-date') lines.push(`${flags.output} is at ${result.head.version}`);
    else
      lines.push(
        `installed ${result.head.version} (${result.head.digest}) into ${flags.output}${result.transfer ? `: ${transferLine(result.transfer)}` : ''}`,
      );
    printResult(globalOptions(this), result, lines);
  });
}
