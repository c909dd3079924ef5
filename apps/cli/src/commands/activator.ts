import { join } from 'node:path';
import type { ModSyncResult } from '@splintertree/activator';
import type { Command } from 'commander';
import { globalOptions, withSplinter } from '../context.js';
import { addReleaseTrustOptions, type ReleaseTrustFlags, releaseTrustFromFlags } from '../release-flags.js';
import { addTrustOptions, type TrustFlags, trustFromFlags } from '../signing-flags.js';
import { addTransferOptions, parseConcurrency } from './artifact.js';

export function registerActivatorCommands(program: Command): void {
  const activator = program
    .command('activator')
    .description("keep a folder at the mods pinned by a realm's active patch");
  addReleaseTrustOptions(
    addTrustOptions(
      addTransferOptions(
        activator
          .command('run')
          .description(
            "install the active patch's mods into --output/<name>; with --watch, again on every head change",
          )
          .requiredOption('--realm <realm>', 'the realm to follow')
          .requiredOption('--output <dir>', 'mods folder: each mod in a subfolder named after it')
          .option(
            '--watch',
            'keep running: re-sync when an activation or rollback commits (PostgreSQL NOTIFY)',
          ),
      ),
      true,
    ),
  ).action(async function (
    this: Command,
    flags: TrustFlags &
      ReleaseTrustFlags & {
        realm: string;
        output: string;
        watch?: boolean;
        plainHttp?: boolean;
        concurrency?: string;
      },
  ) {
    const concurrency = parseConcurrency(flags.concurrency);
    const trust = await trustFromFlags(flags);
    const release = await releaseTrustFromFlags(flags);
    const output = globalOptions(this);
    // One JSON document per round, one per line, so --watch output can be read as a stream.
    const report = (result: ModSyncResult) =>
      process.stdout.write(`${output.json ? JSON.stringify(result) : summary(result)}\n`);
    const { syncMods, watchMods } = await import('@splintertree/activator');
    await withSplinter(this, flags, async (splinter, settings) => {
      const options = {
        realm: flags.realm,
        output: flags.output,
        trust,
        stateDir: join(settings.home, 'activator'),
        concurrency,
        release,
      };
      if (!flags.watch) {
        report(await syncMods(splinter, options));
        return;
      }
      const stop = new AbortController();
      const abort = () => stop.abort();
      try {
        // A lost LISTEN connection rejects with DATABASE_ERROR (exit 9).
        await watchMods(splinter, {
          ...options,
          onRound: report,
          onRoundError: (error) =>
            process.stderr.write(`splinter: warning: activator round failed: ${error.message}\n`),
          // Until then a signal ends the process as usual, a first round cut short included.
          onWatching: () => {
            process.once('SIGINT', abort);
            process.once('SIGTERM', abort);
          },
          signal: stop.signal,
        });
      } finally {
        process.off('SIGINT', abort);
        process.off('SIGTERM', abort);
      }
    });
  });
}

function summary(result: ModSyncResult): string {
  const installed = result.installed.map((m) => m.name).join(', ') || 'nothing';
  const removed = result.removed.join(', ') || 'nothing';
  const head = result.head?.version ?? 'no active patch';
  return `${result.realm} at ${head}: installed ${installed}; kept ${result.kept.length}; removed ${removed}`;
}
