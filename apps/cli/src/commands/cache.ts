import { SplinterError } from '@splintertree/errors';
import type { Command } from 'commander';
import { globalOptions, withSplinter } from '../context.js';
import { printResult } from '../output.js';
import { formatBytes } from '../progress.js';

export function parseKeep(value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const keep = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(keep) || keep < 1) {
    throw new SplinterError(
      'INVALID_ARGUMENT',
      `--keep must be a whole number >= 1, not ${JSON.stringify(value)}`,
    );
  }
  return keep;
}

export function registerCacheCommands(program: Command): void {
  const cache = program.command('cache').description('the client cache under SPLINTER_HOME (packs, indexes)');
  cache
    .command('prune')
    .description(
      'keep only what the versions installed now, the last N installed and the staged preloads need',
    )
    .option('--keep <n>', 'installed versions to keep the bytes of, newest first (rollback targets)', '3')
    .action(async function (this: Command, flags: { keep: string }) {
      const keep = parseKeep(flags.keep, 3);
      const result = await withSplinter(this, {}, (splinter) => splinter.pruneCache({ keep }));
      printResult(globalOptions(this), result, [
        `cache: ${formatBytes(result.before)} -> ${formatBytes(result.after)} (${result.removedPacks} packs removed, ${result.rewrittenPacks} rewritten, ${result.removedIndexes} indexes removed)`,
        ...result.kept.map((v) => `kept ${v.kind} ${v.manifestDigest}`),
      ]);
    });
}
